package resolver

import (
	mdns "github.com/miekg/dns"
)

// rrset is one RRset taken from a reply: copies with lowercased owners, one
// TTL (the set's minimum), and the RRSIGs that cover it.
type rrset struct {
	name  string
	rtype uint16
	rrs   []mdns.RR
	sigs  []mdns.RR
	synth bool     // a CNAME we synthesised from the DNAME before it
	sec   secState // set by validation
	// wildcard: the answer was expanded from a wildcard whose closest
	// encloser has this many labels (RRSIG Labels field).
	wildcard int
}

// step is what one iteration produced for name/qtype.
type step struct {
	zone    string // the zone cut whose servers answered ("." when forwarding)
	qtype   uint16
	rcode   int
	sets    []*rrset  // the chain found in the reply, in order
	next    string    // where the chain goes on outside this reply ("" if done)
	negName string    // for a negative answer: the name it is about
	neg     []mdns.RR // negative answer: SOA and NSEC/NSEC3 with RRSIGs
	negTTL  uint32
	proofs  []mdns.RR // NSEC/NSEC3 with RRSIGs from the authority of a positive reply
}

// referral is a delegation to a zone below the one asked.
type referral struct {
	zone string
	ns   []mdns.RR
	glue map[string][]mdns.RR // in-bailiwick glue by lowercased name
	ttl  uint32
}

// outcome of one reply: a step, a referral, or lame (the reason).
type outcome struct {
	step *step
	ref  *referral
	lame string
}

type setKey struct {
	name  string
	rtype uint16
}

// group collects the RRsets in rrs whose owners are at or below zone (the
// bailiwick of the servers asked), attaching RRSIGs to what they cover.
// Everything else is dropped. It copies, so the reply stays unmodified.
func group(rrs []mdns.RR, zone string) (map[setKey]*rrset, []setKey) {
	sets := map[setKey]*rrset{}
	var order []setKey
	var sigs []*mdns.RRSIG
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class != mdns.ClassINET || !isSub(zone, h.Name) {
			continue
		}
		switch h.Rrtype {
		case mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeSIG, mdns.TypeNone:
			continue
		}
		if sig, ok := rr.(*mdns.RRSIG); ok {
			sigs = append(sigs, sig)
			continue
		}
		k := setKey{lower(h.Name), h.Rrtype}
		s := sets[k]
		if s == nil {
			s = &rrset{name: k.name, rtype: k.rtype}
			sets[k] = s
			order = append(order, k)
		}
		c := mdns.Copy(rr)
		c.Header().Name = k.name
		s.rrs = append(s.rrs, c)
	}
	for _, sig := range sigs {
		k := setKey{lower(sig.Hdr.Name), sig.TypeCovered}
		if s := sets[k]; s != nil {
			c := mdns.Copy(sig).(*mdns.RRSIG)
			c.Hdr.Name = k.name
			s.sigs = append(s.sigs, c)
		}
	}
	for _, k := range order {
		s := sets[k]
		s.rrs = mdns.Dedup(s.rrs, nil)
		ttl := minTTL(s.rrs)
		for _, rr := range s.rrs {
			rr.Header().Ttl = ttl
		}
		for _, rr := range s.sigs {
			rr.Header().Ttl = ttl
		}
	}
	return sets, order
}

// flatten returns the records (and RRSIGs) of the sets of the given types.
func flatten(sets map[setKey]*rrset, order []setKey, types ...uint16) []mdns.RR {
	var out []mdns.RR
	for _, k := range order {
		for _, t := range types {
			if k.rtype == t {
				out = append(out, sets[k].rrs...)
				out = append(out, sets[k].sigs...)
			}
		}
	}
	return out
}

// classify decides what a reply from the servers of zone says about
// qname/qtype. Only records at or below zone are considered (a server may
// not speak for names outside its zone); a CNAME or DNAME target outside the
// zone is chased separately, never taken from the same reply.
func classify(zone, qname string, qtype uint16, m *mdns.Msg, forward bool) outcome {
	if m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError {
		return outcome{lame: "rcode " + mdns.RcodeToString[m.Rcode]}
	}
	if m.Truncated {
		return outcome{lame: "truncated"}
	}
	ans, _ := group(m.Answer, zone)
	auth, authOrder := group(m.Ns, zone)
	st := &step{zone: zone, qtype: qtype, rcode: mdns.RcodeSuccess}
	cur := lower(qname)
	seen := map[string]bool{}
	done := false
	for !done && len(st.sets) < maxChain {
		if seen[cur] {
			return outcome{lame: "CNAME loop"}
		}
		seen[cur] = true
		if s := ans[setKey{cur, qtype}]; s != nil {
			st.sets = append(st.sets, s)
			st.proofs = flatten(auth, authOrder, mdns.TypeNSEC, mdns.TypeNSEC3)
			return outcome{step: st}
		}
		if qtype == mdns.TypeCNAME {
			break
		}
		// A DNAME above cur wins over the (unsigned) CNAME a server
		// synthesises from it: we synthesise our own.
		if s, synth := findDNAME(ans, zone, cur, qtype); s != nil {
			if synth == nil {
				return outcome{lame: "DNAME substitution too long"}
			}
			st.sets = append(st.sets, s, synth)
			cur = lower(synth.rrs[0].(*mdns.CNAME).Target)
		} else if s := ans[setKey{cur, mdns.TypeCNAME}]; s != nil && len(s.rrs) == 1 {
			st.sets = append(st.sets, s)
			cur = lower(s.rrs[0].(*mdns.CNAME).Target)
		} else {
			break
		}
		if !isSub(zone, cur) {
			st.next = cur
			return outcome{step: st}
		}
	}
	var soa *mdns.SOA
	for _, k := range authOrder {
		if k.rtype == mdns.TypeSOA && isSub(k.name, cur) {
			if s, ok := auth[k].rrs[0].(*mdns.SOA); ok {
				soa = s
			}
		}
	}
	negative := func() outcome {
		st.negName = cur
		st.neg = flatten(auth, authOrder, mdns.TypeSOA, mdns.TypeNSEC, mdns.TypeNSEC3)
		if soa != nil {
			st.negTTL = min(soa.Hdr.Ttl, soa.Minttl)
		}
		return outcome{step: st}
	}
	if m.Rcode == mdns.RcodeNameError {
		if soa == nil && !m.Authoritative && !forward {
			return outcome{lame: "NXDOMAIN without SOA from a server that is not authoritative"}
		}
		st.rcode = mdns.RcodeNameError
		return negative()
	}
	if len(st.sets) > 0 && soa == nil {
		// The chain goes on inside this zone but the reply stops: ask again
		// where it stopped.
		st.next = cur
		return outcome{step: st}
	}
	if !forward && soa == nil && len(st.sets) == 0 {
		if ref := referralFrom(m, zone, cur, qtype); ref != nil {
			return outcome{ref: ref}
		}
	}
	if soa != nil || m.Authoritative || forward {
		return negative()
	}
	return outcome{lame: "neither answer, referral nor negative answer"}
}

// findDNAME looks for a DNAME at a proper ancestor of name (inside zone) and
// returns it with the CNAME it synthesises (nil if the result would be too
// long).
func findDNAME(ans map[setKey]*rrset, zone, name string, qtype uint16) (*rrset, *rrset) {
	if qtype == mdns.TypeDNAME {
		return nil, nil
	}
	for anc := parentOf(name); isSub(zone, anc); anc = parentOf(anc) {
		if s := ans[setKey{anc, mdns.TypeDNAME}]; s != nil && len(s.rrs) == 1 {
			dn := s.rrs[0].(*mdns.DNAME)
			prefix := name[:len(name)-len(anc)]
			target := prefix + dn.Target
			if dn.Target == "." {
				target = prefix
			}
			if _, ok := mdns.IsDomainName(target); !ok || len(target) > 254 {
				return s, nil
			}
			cname := &mdns.CNAME{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: dn.Hdr.Ttl}, Target: lower(target)}
			return s, &rrset{name: name, rtype: mdns.TypeCNAME, rrs: []mdns.RR{cname}, synth: true}
		}
		if anc == "." {
			break
		}
	}
	return nil, nil
}

// referralFrom extracts a delegation to a zone strictly below zone and at or
// above qname, with the glue that is in its bailiwick (owned at or below the
// delegated zone). Out-of-bailiwick glue is dropped: those name servers are
// looked up from the root like any other name.
func referralFrom(m *mdns.Msg, zone, qname string, qtype uint16) *referral {
	ref := &referral{glue: map[string][]mdns.RR{}}
	targets := map[string]bool{}
	for _, rr := range m.Ns {
		ns, ok := rr.(*mdns.NS)
		if !ok || ns.Hdr.Class != mdns.ClassINET {
			continue
		}
		owner := lower(ns.Hdr.Name)
		if owner == zone || !isSub(zone, owner) || !isSub(owner, qname) {
			continue
		}
		if qtype == mdns.TypeDS && owner == qname {
			continue // the DS of a zone lives on the parent's side
		}
		if ref.zone == "" {
			ref.zone = owner
		}
		if owner != ref.zone {
			continue
		}
		c := mdns.Copy(ns).(*mdns.NS)
		c.Hdr.Name = owner
		c.Ns = lower(c.Ns)
		ref.ns = append(ref.ns, c)
		targets[c.Ns] = true
	}
	if ref.zone == "" {
		return nil
	}
	ref.ns = mdns.Dedup(ref.ns, nil)
	ref.ttl = minTTL(ref.ns)
	for _, rr := range m.Extra {
		h := rr.Header()
		if h.Rrtype != mdns.TypeA && h.Rrtype != mdns.TypeAAAA || h.Class != mdns.ClassINET {
			continue
		}
		host := lower(h.Name)
		if !targets[host] || !isSub(ref.zone, host) {
			continue
		}
		c := mdns.Copy(rr)
		c.Header().Name = host
		ref.glue[host] = append(ref.glue[host], c)
	}
	return ref
}
