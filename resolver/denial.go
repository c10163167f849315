package resolver

import (
	mdns "github.com/miekg/dns"
)

func hasType(bitmap []uint16, t uint16) bool {
	for _, b := range bitmap {
		if b == t {
			return true
		}
	}
	return false
}

// nsecCovers reports whether name falls strictly between the owner and the
// next name of n in canonical order (the last NSEC of a zone wraps to the
// apex). An NSEC at a delegation point or a DNAME cannot deny names below
// it (RFC 6840 4.1).
func nsecCovers(n *mdns.NSEC, name string) bool {
	owner, next := n.Hdr.Name, n.NextDomain
	if canonicalCompare(owner, name) >= 0 {
		return false
	}
	if isSub(owner, name) {
		if hasType(n.TypeBitMap, mdns.TypeDNAME) || hasType(n.TypeBitMap, mdns.TypeNS) && !hasType(n.TypeBitMap, mdns.TypeSOA) {
			return false
		}
	}
	if canonicalCompare(owner, next) < 0 {
		return canonicalCompare(name, next) < 0
	}
	return isSub(next, name) // last NSEC: next is the apex
}

// closestEncloserNSEC is the closest encloser of name proven by a covering
// NSEC: the longer common ancestor of name with its owner or next name.
func closestEncloserNSEC(n *mdns.NSEC, name string) string {
	ce := commonAncestor(name, n.Hdr.Name)
	if c := commonAncestor(name, n.NextDomain); mdns.CountLabel(c) > mdns.CountLabel(ce) {
		ce = c
	}
	return ce
}

func wildcardOf(ce string) string {
	if ce == "." {
		return "*."
	}
	return "*." + ce
}

// nsecNXDomain: an NSEC covers name and one covers the wildcard at its
// closest encloser.
func nsecNXDomain(nsecs []*mdns.NSEC, name string) bool {
	for _, n := range nsecs {
		if !nsecCovers(n, name) {
			continue
		}
		wc := wildcardOf(closestEncloserNSEC(n, name))
		for _, m := range nsecs {
			if nsecCovers(m, wc) {
				return true
			}
		}
	}
	return false
}

// nsecNoData: an NSEC at name without the type (nor CNAME), an empty
// non-terminal, or a matching wildcard without the type.
func nsecNoData(nsecs []*mdns.NSEC, name string, qtype uint16) bool {
	for _, n := range nsecs {
		if !equalName(n.Hdr.Name, name) {
			continue
		}
		bm := n.TypeBitMap
		if hasType(bm, qtype) || hasType(bm, mdns.TypeCNAME) {
			return false
		}
		// The parent's NSEC at a delegation proves only the absence of DS;
		// the child's apex NSEC cannot prove it.
		if qtype != mdns.TypeDS && hasType(bm, mdns.TypeNS) && !hasType(bm, mdns.TypeSOA) {
			return false
		}
		if qtype == mdns.TypeDS && hasType(bm, mdns.TypeSOA) && name != "." {
			return false
		}
		return true
	}
	for _, n := range nsecs {
		if !nsecCovers(n, name) {
			continue
		}
		if isSub(name, n.NextDomain) && !equalName(n.NextDomain, name) {
			return true // empty non-terminal
		}
		wc := wildcardOf(closestEncloserNSEC(n, name))
		for _, m := range nsecs {
			if equalName(m.Hdr.Name, wc) && !hasType(m.TypeBitMap, qtype) && !hasType(m.TypeBitMap, mdns.TypeCNAME) {
				return true
			}
		}
	}
	return false
}

// nsec3Usable: SHA-1 hashes with a sane iteration count (else the answer is
// treated as insecure, RFC 9276).
func nsec3Usable(ns []*mdns.NSEC3) bool {
	for _, n := range ns {
		if n.Hash != mdns.SHA1 || n.Iterations > maxNSEC3Iterations {
			return false
		}
	}
	return true
}

func nsec3Match(ns []*mdns.NSEC3, name string) *mdns.NSEC3 {
	for _, n := range ns {
		if n.Match(name) {
			return n
		}
	}
	return nil
}

func nsec3Covering(ns []*mdns.NSEC3, name string) *mdns.NSEC3 {
	for _, n := range ns {
		if n.Cover(name) {
			return n
		}
	}
	return nil
}

// nsec3ClosestEncloser is the closest encloser proof (RFC 5155 7.2.1): an
// ancestor of name that matches and the next closer name that is covered.
func nsec3ClosestEncloser(ns []*mdns.NSEC3, name string) (string, *mdns.NSEC3, bool) {
	if name == "." {
		return "", nil, false
	}
	for anc := parentOf(name); ; anc = parentOf(anc) {
		if nsec3Match(ns, anc) != nil {
			if c := nsec3Covering(ns, childToward(anc, name)); c != nil {
				return anc, c, true
			}
			return "", nil, false
		}
		if anc == "." {
			return "", nil, false
		}
	}
}

// nsec3NXDomain proves name does not exist; optOut when the proof rests on
// an opt-out span (then the answer is only insecure).
func nsec3NXDomain(ns []*mdns.NSEC3, name string) (ok, optOut, usable bool) {
	if !nsec3Usable(ns) {
		return false, false, false
	}
	if nsec3Match(ns, name) != nil {
		return false, false, true
	}
	ce, cover, found := nsec3ClosestEncloser(ns, name)
	if !found {
		return false, false, true
	}
	if nsec3Covering(ns, wildcardOf(ce)) == nil {
		return false, false, true
	}
	return true, cover.Flags&1 == 1, true
}

// nsec3NoData proves name has no qtype.
func nsec3NoData(ns []*mdns.NSEC3, name string, qtype uint16) (ok, optOut, usable bool) {
	if !nsec3Usable(ns) {
		return false, false, false
	}
	if m := nsec3Match(ns, name); m != nil {
		bm := m.TypeBitMap
		if hasType(bm, qtype) || hasType(bm, mdns.TypeCNAME) {
			return false, false, true
		}
		if qtype != mdns.TypeDS && hasType(bm, mdns.TypeNS) && !hasType(bm, mdns.TypeSOA) {
			return false, false, true
		}
		return true, false, true
	}
	ce, cover, found := nsec3ClosestEncloser(ns, name)
	if !found {
		return false, false, true
	}
	if qtype == mdns.TypeDS && cover.Flags&1 == 1 {
		return true, true, true
	}
	if m := nsec3Match(ns, wildcardOf(ce)); m != nil && !hasType(m.TypeBitMap, qtype) && !hasType(m.TypeBitMap, mdns.TypeCNAME) {
		return true, cover.Flags&1 == 1, true
	}
	return false, false, true
}
