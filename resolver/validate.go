package resolver

import (
	"context"
	"fmt"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// zoneSec is the DNSSEC state of a zone apex: secure with its keys,
// insecure (proven unsigned, or not under any trust anchor) or bogus.
type zoneSec struct {
	name  string // lowercased apex ("." with no anchor)
	state secState
	keys  []*mdns.DNSKEY // secure: the zone's keys (ZONE bit, not revoked)
	why   string
}

// Algorithms and DS digests we can verify (RFC 8624 MUST/RECOMMENDED).
var (
	supportedAlg = map[uint8]bool{
		mdns.RSASHA1: true, mdns.RSASHA1NSEC3SHA1: true, mdns.RSASHA256: true, mdns.RSASHA512: true,
		mdns.ECDSAP256SHA256: true, mdns.ECDSAP384SHA384: true, mdns.ED25519: true,
	}
	supportedDigest = map[uint8]bool{mdns.SHA1: true, mdns.SHA256: true, mdns.SHA384: true}
)

// maxNSEC3Iterations: NSEC3 with more iterations are treated as insecure
// (RFC 9276 3.2).
const maxNSEC3Iterations = 150

// anchorFor is the trust anchor closest above name, or nil.
func (r *Resolver) anchorFor(name string) *anchor {
	for n := lower(name); ; n = parentOf(n) {
		if a := r.anchors[n]; a != nil {
			return a
		}
		if n == "." {
			return nil
		}
	}
}

// verify checks sig over rrs with key, turning a panic in the crypto on
// hostile input into a failure.
func verify(sig *mdns.RRSIG, key *mdns.DNSKEY, rrs []mdns.RR) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return sig.Verify(key, rrs) == nil
}

// validateStep validates everything a step is going to hand out or cache,
// and sets each RRset's state. It returns the state of the whole step and,
// when bogus, why.
func (w *work) validateStep(ctx context.Context, st *step) (secState, string) {
	if !w.r.validate {
		for _, s := range st.sets {
			s.sec = secUnchecked
		}
		return secUnchecked, ""
	}
	overall := secSecure
	for i, s := range st.sets {
		if s.synth {
			s.sec = st.sets[i-1].sec // the DNAME it came from
			continue
		}
		sec, why := w.validateSet(ctx, s)
		s.sec = sec
		if sec == secBogus {
			return secBogus, why
		}
		if sec == secSecure && s.wildcard > 0 {
			if !w.wildcardProven(ctx, st.proofs, s) {
				s.sec = secBogus
				return secBogus, fmt.Sprintf("%s %s expanded from a wildcard without proof that the name does not exist", s.name, mdns.TypeToString[s.rtype])
			}
		}
		overall = min(overall, sec)
	}
	if st.negName == "" {
		return overall, ""
	}
	sec, why := w.validateDenial(ctx, st)
	return min(overall, sec), why
}

// validateSet validates one RRset.
func (w *work) validateSet(ctx context.Context, s *rrset) (secState, string) {
	owner := s.name
	if len(s.sigs) == 0 {
		apex := owner
		if s.rtype == mdns.TypeDS {
			apex = parentOf(owner)
		}
		zs := w.secOf(ctx, apex)
		switch zs.state {
		case secSecure:
			return secBogus, fmt.Sprintf("%s %s has no RRSIG in signed zone %s", owner, mdns.TypeToString[s.rtype], zs.name)
		case secBogus:
			return secBogus, zs.why
		}
		return secInsecure, ""
	}
	a := w.r.anchorFor(owner)
	if a == nil {
		return secInsecure, ""
	}
	why := fmt.Sprintf("no valid RRSIG over %s %s", owner, mdns.TypeToString[s.rtype])
	now := w.r.now()
	for _, rr := range s.sigs {
		sig := rr.(*mdns.RRSIG)
		signer := lower(sig.SignerName)
		// The signer is the zone holding the data: at or above the owner
		// (strictly above for a DS), and never above the trust anchor.
		if !isSub(signer, owner) || !isSub(a.name, signer) || s.rtype == mdns.TypeDS && signer == owner {
			why = fmt.Sprintf("RRSIG over %s %s has signer %s", owner, mdns.TypeToString[s.rtype], signer)
			continue
		}
		zs := w.secOf(ctx, signer)
		switch {
		case zs.state == secInsecure:
			return secInsecure, ""
		case zs.state == secBogus:
			why = zs.why
			continue
		case zs.name != signer:
			why = fmt.Sprintf("signer %s is not a zone apex (zone is %s)", signer, zs.name)
			continue
		}
		if !sig.ValidityPeriod(now) {
			why = fmt.Sprintf("RRSIG over %s %s by %s outside its validity period", owner, mdns.TypeToString[s.rtype], signer)
			continue
		}
		for _, k := range zs.keys {
			if k.Algorithm == sig.Algorithm && k.KeyTag() == sig.KeyTag && verify(sig, k, s.rrs) {
				labels := mdns.CountLabel(owner)
				if strings.HasPrefix(owner, "*.") {
					labels--
				}
				if int(sig.Labels) < labels {
					s.wildcard = int(sig.Labels)
				}
				return secSecure, ""
			}
		}
		why = fmt.Sprintf("RRSIG over %s %s by %s (key tag %d) does not verify", owner, mdns.TypeToString[s.rtype], signer, sig.KeyTag)
	}
	return secBogus, why
}

// verifyWith validates s against the keys of the secure zone zs only.
func (w *work) verifyWith(zs *zoneSec, s *rrset) bool {
	now := w.r.now()
	for _, rr := range s.sigs {
		sig := rr.(*mdns.RRSIG)
		if lower(sig.SignerName) != zs.name || !sig.ValidityPeriod(now) {
			continue
		}
		for _, k := range zs.keys {
			if k.Algorithm == sig.Algorithm && k.KeyTag() == sig.KeyTag && verify(sig, k, s.rrs) {
				s.sec = secSecure
				return true
			}
		}
	}
	return false
}

// secOf returns the state of the zone that contains name (or has its apex
// at name): it walks from the nearest trust anchor (or the deepest zone
// state cached on the way) down to name one label at a time, asking for the
// DS of each name to find the zone cuts and proving each step with the keys
// of the zone above it.
func (w *work) secOf(ctx context.Context, name string) *zoneSec {
	name = lower(name)
	a := w.r.anchorFor(name)
	if a == nil {
		return &zoneSec{name: ".", state: secInsecure, why: "no trust anchor"}
	}
	now := w.r.now()
	var zs *zoneSec
	for n := name; ; n = parentOf(n) {
		if e := w.r.cache.get(cacheKey{n, mdns.TypeNone, kindZone}, now); e != nil {
			zs = e.zone
			break
		}
		if n == a.name || n == "." {
			break
		}
	}
	if zs == nil {
		zs = w.anchorZone(ctx, a)
	}
	cur := zs.name
	for zs.state == secSecure && cur != name {
		cur = childToward(cur, name)
		if w.r.cache.get(cacheKey{cur, mdns.TypeNone, kindNotCut}, now) != nil {
			continue
		}
		next, kind, ttl := w.probeCut(ctx, zs, cur)
		switch kind {
		case probeCut:
			zs = next
			if zs.state != secBogus {
				w.r.cache.put(&entry{key: cacheKey{cur, mdns.TypeNone, kindZone}, zone: zs, sec: zs.state, expire: now.Add(ttl)}, now)
			}
		case probeNotCut:
			w.r.cache.put(&entry{key: cacheKey{cur, mdns.TypeNone, kindNotCut}, sec: secSecure, expire: now.Add(ttl)}, now)
		case probeNoName:
			// Nothing exists at or below cur: whatever claims to be there
			// is in zs, and must be signed by it.
			return zs
		case probeBogus:
			return next
		}
	}
	return zs
}

type probeKind uint8

const (
	probeCut    probeKind = iota // a zone cut: secure, insecure or bogus zone
	probeNotCut                  // the name exists and is no zone cut
	probeNoName                  // the name does not exist
	probeBogus                   // no proof either way
)

// probeCut asks for the DS of name, which is directly below the secure zone
// zs, and proves what the answer says with zs's keys.
func (w *work) probeCut(ctx context.Context, zs *zoneSec, name string) (*zoneSec, probeKind, time.Duration) {
	bogus := func(format string, args ...any) (*zoneSec, probeKind, time.Duration) {
		return &zoneSec{name: name, state: secBogus, why: fmt.Sprintf(format, args...)}, probeBogus, 0
	}
	st, err := w.iterate(ctx, name, mdns.TypeDS)
	if err != nil {
		return bogus("DS lookup for %s failed: %v", name, err)
	}
	now := w.r.now()
	for _, s := range st.sets {
		if s.name != name {
			continue
		}
		if s.rtype != mdns.TypeDS {
			// A CNAME here: no zone cut. (Believing this wrongly can only
			// make data below bogus, never secure or insecure.)
			return nil, probeNotCut, time.Duration(minTTL(s.rrs)) * time.Second
		}
		if !w.verifyWith(zs, s) {
			return bogus("DS of %s not signed by %s", name, zs.name)
		}
		w.r.cacheStep(&step{sets: []*rrset{s}}, secSecure)
		var ds []*mdns.DS
		for _, rr := range s.rrs {
			if d, ok := rr.(*mdns.DS); ok && supportedAlg[d.Algorithm] && supportedDigest[d.DigestType] {
				ds = append(ds, d)
			}
		}
		ttl := w.r.capTTL(s.rrs, s.sigs, secSecure, w.r.cfg.MaxTTL, now)
		if len(ds) == 0 {
			return &zoneSec{name: name, state: secInsecure, why: "no DS with a supported algorithm"}, probeCut, ttl
		}
		keys, kttl, why := w.fetchKeys(ctx, name, func(k *mdns.DNSKEY) bool { return dsMatches(ds, k) })
		if keys == nil {
			return &zoneSec{name: name, state: secBogus, why: why}, probeCut, 0
		}
		return &zoneSec{name: name, state: secSecure, keys: keys}, probeCut, min(ttl, kttl)
	}
	if len(st.sets) > 0 {
		return nil, probeNotCut, 0
	}
	// A negative answer: the proof must come from zs.
	sets, order := group(st.neg, ".")
	var nsecs []*mdns.NSEC
	var nsec3s []*mdns.NSEC3
	for _, k := range order {
		s := sets[k]
		if k.rtype != mdns.TypeNSEC && k.rtype != mdns.TypeNSEC3 {
			continue
		}
		if !w.verifyWith(zs, s) {
			return bogus("denial for %s DS not signed by %s", name, zs.name)
		}
		for _, rr := range s.rrs {
			switch t := rr.(type) {
			case *mdns.NSEC:
				nsecs = append(nsecs, t)
			case *mdns.NSEC3:
				nsec3s = append(nsec3s, t)
			}
		}
	}
	ttl := time.Duration(st.negTTL) * time.Second
	if st.rcode == mdns.RcodeNameError {
		if nsecNXDomain(nsecs, name) {
			return nil, probeNoName, ttl
		}
		if ok, optOut, usable := nsec3NXDomain(nsec3s, name); usable && ok {
			if optOut {
				return &zoneSec{name: name, state: secInsecure, why: "NSEC3 opt-out"}, probeCut, ttl
			}
			return nil, probeNoName, ttl
		} else if !usable {
			return &zoneSec{name: name, state: secInsecure, why: "NSEC3 parameters not supported"}, probeCut, ttl
		}
		return bogus("NXDOMAIN for %s DS without proof", name)
	}
	for _, n := range nsecs {
		if !equalName(n.Hdr.Name, name) {
			continue
		}
		switch {
		case hasType(n.TypeBitMap, mdns.TypeDS):
			return bogus("NSEC at %s lists DS but no DS was given", name)
		case hasType(n.TypeBitMap, mdns.TypeSOA):
			return bogus("the child side answered the DS query for %s", name)
		case hasType(n.TypeBitMap, mdns.TypeNS):
			return &zoneSec{name: name, state: secInsecure, why: "delegation proven without DS"}, probeCut, ttl
		}
		return nil, probeNotCut, ttl
	}
	for _, n := range nsecs {
		if nsecCovers(n, name) && isSub(name, n.NextDomain) && !equalName(n.NextDomain, name) {
			return nil, probeNotCut, ttl // an empty non-terminal
		}
	}
	if len(nsec3s) > 0 {
		if !nsec3Usable(nsec3s) {
			return &zoneSec{name: name, state: secInsecure, why: "NSEC3 parameters not supported"}, probeCut, ttl
		}
		if m := nsec3Match(nsec3s, name); m != nil {
			switch {
			case hasType(m.TypeBitMap, mdns.TypeDS):
				return bogus("NSEC3 for %s lists DS but no DS was given", name)
			case hasType(m.TypeBitMap, mdns.TypeSOA):
				return bogus("the child side answered the DS query for %s", name)
			case hasType(m.TypeBitMap, mdns.TypeNS):
				return &zoneSec{name: name, state: secInsecure, why: "delegation proven without DS"}, probeCut, ttl
			}
			return nil, probeNotCut, ttl
		}
		if _, cover, ok := nsec3ClosestEncloser(nsec3s, name); ok && cover.Flags&1 == 1 {
			return &zoneSec{name: name, state: secInsecure, why: "NSEC3 opt-out"}, probeCut, ttl
		}
	}
	return bogus("no DS for %s and no proof of its absence from %s", name, zs.name)
}

// fetchKeys gets the DNSKEY RRset of zone and returns its zone keys if the
// set is signed by a key that trusted accepts; else nil and why.
func (w *work) fetchKeys(ctx context.Context, zone string, trusted func(*mdns.DNSKEY) bool) ([]*mdns.DNSKEY, time.Duration, string) {
	st, err := w.iterate(ctx, zone, mdns.TypeDNSKEY)
	if err != nil {
		return nil, 0, fmt.Sprintf("DNSKEY lookup for %s failed: %v", zone, err)
	}
	var set *rrset
	for _, s := range st.sets {
		if s.name == zone && s.rtype == mdns.TypeDNSKEY {
			set = s
		}
	}
	if set == nil {
		return nil, 0, fmt.Sprintf("no DNSKEY for %s", zone)
	}
	var all, keys []*mdns.DNSKEY
	for _, rr := range set.rrs {
		if k, ok := rr.(*mdns.DNSKEY); ok {
			all = append(all, k)
			if k.Flags&mdns.ZONE != 0 && k.Flags&mdns.REVOKE == 0 && k.Protocol == 3 {
				keys = append(keys, k)
			}
		}
	}
	now := w.r.now()
	for _, rr := range set.sigs {
		sig := rr.(*mdns.RRSIG)
		if lower(sig.SignerName) != zone || !sig.ValidityPeriod(now) {
			continue
		}
		for _, k := range all {
			if k.Flags&mdns.REVOKE == 0 && k.Algorithm == sig.Algorithm && k.KeyTag() == sig.KeyTag && trusted(k) && verify(sig, k, set.rrs) {
				set.sec = secSecure
				w.r.cacheStep(&step{sets: []*rrset{set}}, secSecure)
				return keys, w.r.capTTL(set.rrs, set.sigs, secSecure, w.r.cfg.MaxTTL, now), ""
			}
		}
	}
	return nil, 0, fmt.Sprintf("DNSKEY set of %s not signed by a key its DS or trust anchor vouches for", zone)
}

// anchorZone establishes the keys of a trust anchor's zone.
func (w *work) anchorZone(ctx context.Context, a *anchor) *zoneSec {
	now := w.r.now()
	if e := w.r.cache.get(cacheKey{a.name, mdns.TypeNone, kindZone}, now); e != nil {
		return e.zone
	}
	keys, ttl, why := w.fetchKeys(ctx, a.name, func(k *mdns.DNSKEY) bool {
		if dsMatches(a.ds, k) {
			return true
		}
		for _, t := range a.keys {
			if t.Algorithm == k.Algorithm && t.Protocol == k.Protocol && t.Flags&^mdns.REVOKE == k.Flags&^mdns.REVOKE &&
				strings.ReplaceAll(t.PublicKey, " ", "") == strings.ReplaceAll(k.PublicKey, " ", "") {
				return true
			}
		}
		return false
	})
	if keys == nil {
		return &zoneSec{name: a.name, state: secBogus, why: why}
	}
	zs := &zoneSec{name: a.name, state: secSecure, keys: keys}
	w.r.cache.put(&entry{key: cacheKey{a.name, mdns.TypeNone, kindZone}, zone: zs, sec: secSecure, expire: now.Add(ttl)}, now)
	return zs
}

// dsMatches reports whether k hashes to one of ds.
func dsMatches(ds []*mdns.DS, k *mdns.DNSKEY) bool {
	for _, d := range ds {
		if d.KeyTag != k.KeyTag() || d.Algorithm != k.Algorithm {
			continue
		}
		if h := k.ToDS(d.DigestType); h != nil && strings.EqualFold(h.Digest, d.Digest) {
			return true
		}
	}
	return false
}

// validateDenial validates the SOA and NSEC/NSEC3 of a negative answer and
// checks that they prove it (RFC 4035 5.4, RFC 5155 8).
func (w *work) validateDenial(ctx context.Context, st *step) (secState, string) {
	name := st.negName
	sets, order := group(st.neg, ".")
	if len(order) == 0 {
		zs := w.secOf(ctx, name)
		if zs.state == secSecure {
			return secBogus, fmt.Sprintf("negative answer for %s without SOA or NSEC from signed zone %s", name, zs.name)
		}
		if zs.state == secBogus {
			return secBogus, zs.why
		}
		return secInsecure, ""
	}
	overall := secSecure
	var nsecs []*mdns.NSEC
	var nsec3s []*mdns.NSEC3
	for _, k := range order {
		s := sets[k]
		sec, why := w.validateSet(ctx, s)
		s.sec = sec
		if sec == secBogus {
			return secBogus, why
		}
		overall = min(overall, sec)
		if sec != secSecure {
			continue
		}
		for _, rr := range s.rrs {
			switch t := rr.(type) {
			case *mdns.NSEC:
				nsecs = append(nsecs, t)
			case *mdns.NSEC3:
				nsec3s = append(nsec3s, t)
			}
		}
	}
	if overall != secSecure {
		return overall, ""
	}
	qt := mdns.TypeToString[st.qtype]
	if st.rcode == mdns.RcodeNameError {
		if nsecNXDomain(nsecs, name) {
			return secSecure, ""
		}
		if len(nsec3s) > 0 {
			ok, optOut, usable := nsec3NXDomain(nsec3s, name)
			switch {
			case !usable:
				return secInsecure, ""
			case ok && optOut:
				return secInsecure, ""
			case ok:
				return secSecure, ""
			}
		}
		return secBogus, fmt.Sprintf("NXDOMAIN for %s without a valid proof of non-existence", name)
	}
	if nsecNoData(nsecs, name, st.qtype) {
		return secSecure, ""
	}
	if len(nsec3s) > 0 {
		ok, optOut, usable := nsec3NoData(nsec3s, name, st.qtype)
		switch {
		case !usable:
			return secInsecure, ""
		case ok && optOut:
			return secInsecure, ""
		case ok:
			return secSecure, ""
		}
	}
	return secBogus, fmt.Sprintf("NODATA for %s %s without a valid proof", name, qt)
}

// wildcardProven checks that the name of a wildcard-expanded answer does
// not itself exist (RFC 4035 5.3.4, RFC 5155 8.8).
func (w *work) wildcardProven(ctx context.Context, proofs []mdns.RR, s *rrset) bool {
	sets, order := group(proofs, ".")
	var nsecs []*mdns.NSEC
	var nsec3s []*mdns.NSEC3
	for _, k := range order {
		ps := sets[k]
		if sec, _ := w.validateSet(ctx, ps); sec != secSecure {
			continue
		}
		for _, rr := range ps.rrs {
			switch t := rr.(type) {
			case *mdns.NSEC:
				nsecs = append(nsecs, t)
			case *mdns.NSEC3:
				nsec3s = append(nsec3s, t)
			}
		}
	}
	for _, n := range nsecs {
		if nsecCovers(n, s.name) {
			return true
		}
	}
	idx := mdns.Split(s.name)
	if s.wildcard >= len(idx) {
		return false
	}
	ce := s.name[idx[len(idx)-s.wildcard]:]
	if s.wildcard == 0 {
		ce = "."
	}
	nc := childToward(ce, s.name)
	for _, n := range nsec3s {
		if n.Cover(nc) {
			return true
		}
	}
	return false
}
