package netfab

import (
	"fmt"
	"net/netip"
	"slices"
)

// validName reports whether s may name an IMVU, workload or egress point:
// it ends up in namespace and nftables chain names, so it is kept short and
// free of the separators those names use.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

func validPrefix(s string) bool {
	if len(s) == 0 || len(s) > 12 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (o *Options) validate() error {
	if !validPrefix(o.Prefix) {
		return fmt.Errorf("prefix %q: want 1-12 of [a-z0-9]", o.Prefix)
	}
	seen := map[string]bool{}
	var subnets []netip.Prefix
	check := func(what string, e *EgressPoint) error {
		if e.NetNS == "" {
			return fmt.Errorf("%s: no namespace", what)
		}
		if e.Link == "" || len(e.Link) > 15 {
			return fmt.Errorf("%s: link name %q: want 1-15 bytes", what, e.Link)
		}
		if !e.Local.IsValid() || !e.Local.Addr().Is4() || !e.Remote.IsValid() || !e.Remote.Addr().Is4() {
			return fmt.Errorf("%s: local %v and remote %v must be IPv4 prefixes", what, e.Local, e.Remote)
		}
		if e.Local.Masked() != e.Remote.Masked() || e.Local.Addr() == e.Remote.Addr() {
			return fmt.Errorf("%s: local %v and remote %v must be distinct addresses on one subnet", what, e.Local, e.Remote)
		}
		for _, s := range subnets {
			if s.Overlaps(e.Local) {
				return fmt.Errorf("%s: subnet %v overlaps %v", what, e.Local.Masked(), s)
			}
		}
		subnets = append(subnets, e.Local.Masked())
		return nil
	}
	if o.Uplink != nil {
		if err := check("uplink", o.Uplink); err != nil {
			return err
		}
	}
	for i := range o.Egress {
		e := &o.Egress[i]
		if !validName(e.Name) {
			return fmt.Errorf("egress point %q: bad name", e.Name)
		}
		if seen[e.Name] {
			return fmt.Errorf("egress point %q: named twice", e.Name)
		}
		seen[e.Name] = true
		if err := check("egress point "+e.Name, e); err != nil {
			return err
		}
	}
	return nil
}

// validate checks d against itself and the plane's options. Sync refuses
// the whole state rather than half-apply an inconsistent one.
func (d *Desired) validate(o *Options) error {
	egress := map[string]bool{}
	var taken []netip.Prefix
	if o.Uplink != nil {
		taken = append(taken, o.Uplink.Local.Masked())
	}
	for _, e := range o.Egress {
		egress[e.Name] = true
		taken = append(taken, e.Local.Masked())
	}
	classes := map[Endpoint]Class{}
	imvus := map[string]bool{}
	for _, n := range d.Networks {
		if !validName(n.IMVU) {
			return fmt.Errorf("imvu %q: bad name", n.IMVU)
		}
		if imvus[n.IMVU] {
			return fmt.Errorf("imvu %q: listed twice", n.IMVU)
		}
		imvus[n.IMVU] = true
		if !n.Prefix.IsValid() || !n.Prefix.Addr().Is4() || n.Prefix.Bits() > 29 || n.Prefix.Masked() != n.Prefix {
			return fmt.Errorf("imvu %s: prefix %v: want a masked IPv4 prefix of at most /29", n.IMVU, n.Prefix)
		}
		for _, t := range taken {
			if t.Overlaps(n.Prefix) {
				return fmt.Errorf("imvu %s: prefix %v overlaps %v", n.IMVU, n.Prefix, t)
			}
		}
		taken = append(taken, n.Prefix)
		if n.RateBps > maxRateBps || n.RatePPS > maxRateBps {
			return fmt.Errorf("imvu %s: rate ceiling above %d per second", n.IMVU, uint64(maxRateBps))
		}
		for _, e := range n.Egress {
			if !egress[e] {
				return fmt.Errorf("imvu %s: egress point %q does not exist", n.IMVU, e)
			}
		}
		gw := gateway(n.Prefix)
		addrs := map[netip.Addr]bool{}
		for _, w := range n.Workloads {
			ep := Endpoint{n.IMVU, w.Name}
			if !validName(w.Name) {
				return fmt.Errorf("imvu %s: workload %q: bad name", n.IMVU, w.Name)
			}
			if _, dup := classes[ep]; dup {
				return fmt.Errorf("imvu %s: workload %s listed twice", n.IMVU, w.Name)
			}
			if !n.Prefix.Contains(w.Addr) || w.Addr == n.Prefix.Addr() || w.Addr == gw || w.Addr == broadcast(n.Prefix) {
				return fmt.Errorf("imvu %s: workload %s: address %v is not a host address of %v other than the gateway %v", n.IMVU, w.Name, w.Addr, n.Prefix, gw)
			}
			if addrs[w.Addr] {
				return fmt.Errorf("imvu %s: workload %s: address %v used twice", n.IMVU, w.Name, w.Addr)
			}
			addrs[w.Addr] = true
			switch w.Class {
			case Private, Restricted:
			case Public:
				if w.Egress != "" && !slices.Contains(n.Egress, w.Egress) {
					return fmt.Errorf("imvu %s: workload %s: egress point %q is not allowed for the imvu", n.IMVU, w.Name, w.Egress)
				}
			default:
				return fmt.Errorf("imvu %s: workload %s: unknown class %q", n.IMVU, w.Name, w.Class)
			}
			classes[ep] = w.Class
		}
	}
	ids := map[string]bool{}
	for _, g := range d.Grants {
		if g.ID == "" || ids[g.ID] {
			return fmt.Errorf("grant %q: empty or duplicate id", g.ID)
		}
		ids[g.ID] = true
		if g.Proto != "tcp" && g.Proto != "udp" {
			return fmt.Errorf("grant %s: protocol %q: want tcp or udp", g.ID, g.Proto)
		}
		if g.Port == 0 {
			return fmt.Errorf("grant %s: no port", g.ID)
		}
		for _, ep := range []Endpoint{g.From, g.To} {
			c, ok := classes[ep]
			if !ok {
				return fmt.Errorf("grant %s: workload %s/%s does not exist", g.ID, ep.IMVU, ep.Workload)
			}
			if c == Private {
				return fmt.Errorf("grant %s: workload %s/%s is private", g.ID, ep.IMVU, ep.Workload)
			}
		}
	}
	return nil
}

// maxRateBps bounds the ceilings: nft_limit multiplies rate plus burst by
// the nanoseconds in its unit in 64 bits.
const maxRateBps = 8 << 30

// gateway is the router's address in an IMVU's prefix: its first host.
func gateway(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}
