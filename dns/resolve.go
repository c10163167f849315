package dns

import (
	"slices"

	mdns "github.com/miekg/dns"
)

// entry is one record of an answer. atQ marks records whose owner is the
// query name: they are written with a pointer to the question, so the answer
// carries the query's own case and one template serves every case, and every
// name a wildcard expands to.
type entry struct {
	rr  mdns.RR
	atQ bool
}

// result is an answer before it is packed.
type result struct {
	rcode      int
	aa         bool
	an, ns, ar []entry
	refresh    int64 // earliest time (unix) a signature in it should be remade; 0 if none
}

// maxChain bounds CNAME chasing inside a zone.
const maxChain = 8

// resolve answers qtype at the wire name qw, which lies inside the zone.
// sign adds DNSSEC records (the zone has a key and the query set DO).
func (c *Compiled) resolve(qw string, qt uint16, sign bool) *result {
	r := &result{aa: true}
	if err := c.resolveInto(r, qw, qt, sign); err != nil {
		return &result{rcode: mdns.RcodeServerFailure}
	}
	return r
}

func (c *Compiled) resolveInto(r *result, qw string, qt uint16, sign bool) error {
	name := qw
	var seen []string
	for hop := 0; ; hop++ {
		atQ := hop == 0
		seen = append(seen, name)
		src, synth := c.nodes[name], false
		if src == nil {
			ce := c.closestEncloser(name)
			switch {
			case ce.deleg != nil:
				if atQ {
					return c.referral(r, name, ce.deleg, sign)
				}
				return nil
			case ce.wild != nil:
				src, synth = ce.wild, true
			default:
				return c.deny(r, name, nil, atQ, sign)
			}
		} else if src.deleg != nil {
			if !atQ {
				return nil
			}
			if src != src.deleg || qt != mdns.TypeDS {
				return c.referral(r, name, src.deleg, sign)
			}
			// DS at the cut is the parent's (ours) to deny.
			return c.deny(r, name, src, atQ, sign)
		}
		owner := src.name
		if synth {
			owner = presentation(name)
		}
		if src.cname != nil && qt != mdns.TypeCNAME {
			if err := c.addSet(r, &r.an, owner, atQ, src.cname, sign); err != nil {
				return err
			}
			tw, err := wireName(src.cname.rrs[0].(*mdns.CNAME).Target)
			if err != nil || !isSubWire(tw, c.owire) || hop+1 >= maxChain || slices.Contains(seen, tw) {
				return nil
			}
			name = tw
			continue
		}
		switch {
		case qt == mdns.TypeANY:
			// RFC 8482: one RRset is enough.
			if len(src.sets) > 0 {
				return c.addSet(r, &r.an, owner, atQ, src.sets[0], sign)
			}
		case qt == mdns.TypeNSEC && sign:
			nsec := c.nsecAt(owner, src)
			return c.addSigned(r, &r.an, atQ, []mdns.RR{nsec}, sign)
		default:
			if s := src.get(qt); s != nil {
				if err := c.addSet(r, &r.an, owner, atQ, s, sign); err != nil {
					return err
				}
				return c.additional(r, s, sign)
			}
		}
		return c.deny(r, name, src, atQ, sign)
	}
}

// closestEncloser returns the longest existing ancestor of a name that does
// not exist (RFC 4592; empty non-terminals exist, so they stop wildcards).
func (c *Compiled) closestEncloser(w string) *node {
	for p := parentWire(w); len(p) >= len(c.owire); p = parentWire(p) {
		if n := c.nodes[p]; n != nil {
			return n
		}
	}
	return c.apex
}

// addSet appends an RRset owned by owner (a copy when the set comes from a
// wildcard) and, when signing, its RRSIG.
func (c *Compiled) addSet(r *result, sec *[]entry, owner string, atQ bool, s *rrset, sign bool) error {
	rrs := s.rrs
	if rrs[0].Header().Name != owner {
		rrs = make([]mdns.RR, len(s.rrs))
		for i, rr := range s.rrs {
			rrs[i] = mdns.Copy(rr)
			rrs[i].Header().Name = owner
		}
	}
	return c.addSigned(r, sec, atQ, rrs, sign)
}

func (c *Compiled) addSigned(r *result, sec *[]entry, atQ bool, rrs []mdns.RR, sign bool) error {
	for _, rr := range rrs {
		*sec = append(*sec, entry{rr, atQ})
	}
	if !sign {
		return nil
	}
	sig, refresh, err := c.rrsig(rrs)
	if err != nil {
		return err
	}
	*sec = append(*sec, entry{sig, atQ})
	if r.refresh == 0 || refresh < r.refresh {
		r.refresh = refresh
	}
	return nil
}

// additional adds the addresses of in-zone MX, NS and SRV targets.
func (c *Compiled) additional(r *result, s *rrset, sign bool) error {
	var targets []string
	for _, rr := range s.rrs {
		switch v := rr.(type) {
		case *mdns.MX:
			targets = append(targets, v.Mx)
		case *mdns.NS:
			targets = append(targets, v.Ns)
		case *mdns.SRV:
			targets = append(targets, v.Target)
		}
	}
	return c.addAddresses(r, targets, sign)
}

func (c *Compiled) addAddresses(r *result, targets []string, sign bool) error {
	var done []*node
	for _, t := range targets {
		tw, err := wireName(t)
		if err != nil || !isSubWire(tw, c.owire) {
			continue
		}
		n := c.nodes[tw]
		if n == nil || slices.Contains(done, n) {
			continue
		}
		done = append(done, n)
		for _, typ := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			if s := n.get(typ); s != nil {
				// Glue below a cut is not ours to sign.
				if err := c.addSigned(r, &r.ar, false, s.rrs, sign && n.deleg == nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// referral answers a name at or below the cut: not authoritative, the cut's NS
// in authority with glue, and with DNSSEC the NSEC that proves there is no DS.
func (c *Compiled) referral(r *result, qw string, cut *node, sign bool) error {
	r.aa = false
	ns := cut.get(mdns.TypeNS)
	atQ := cut.wire == qw
	for _, rr := range ns.rrs {
		r.ns = append(r.ns, entry{rr, atQ})
	}
	if sign {
		if err := c.addSigned(r, &r.ns, atQ, []mdns.RR{c.nsecAt(cut.name, cut)}, true); err != nil {
			return err
		}
	}
	var targets []string
	for _, rr := range ns.rrs {
		targets = append(targets, rr.(*mdns.NS).Ns)
	}
	return c.addAddresses(r, targets, sign)
}

// deny answers a name that does not exist (src nil) or has no data of the
// type asked (NODATA): the SOA in authority, and with DNSSEC a compact denial
// (RFC 9824): NOERROR and an NSEC at the name itself, whose type bitmap lists
// what the name holds, or only RRSIG NSEC NXNAME when it does not exist.
func (c *Compiled) deny(r *result, w string, src *node, atQ, sign bool) error {
	if src == nil && !sign {
		r.rcode = mdns.RcodeNameError
	}
	r.ns = append(r.ns, entry{c.negSOA, false})
	if !sign {
		return nil
	}
	sig, refresh, err := c.rrsig([]mdns.RR{c.soa})
	if err != nil {
		return err
	}
	neg := mdns.Copy(sig).(*mdns.RRSIG)
	neg.Hdr.Ttl = c.negTTL
	r.ns = append(r.ns, entry{neg, false})
	if r.refresh == 0 || refresh < r.refresh {
		r.refresh = refresh
	}
	name := presentation(w)
	if src != nil {
		name = src.name
		if src.wire != w {
			name = presentation(w) // a wildcard's NODATA is denied at the query name
		}
	}
	return c.addSigned(r, &r.ns, atQ, []mdns.RR{c.nsecAt(name, src)}, true)
}
