package netfab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dump retries a netlink dump that the kernel interrupted because the
// table changed under it; a partial dump would look like drift.
func dump[T any](f func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := f()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < 10 {
			continue
		}
		return v, err
	}
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func fromIPNet(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func fromIP(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// linkIndex maps the links of one namespace by name and index.
type linkIndex struct {
	byName  map[string]netlink.Link
	byIndex map[int]string
}

func listLinks(h *nsHandle) (linkIndex, error) {
	ls, err := dump(h.nl.LinkList)
	if err != nil {
		return linkIndex{}, fmt.Errorf("list links in %s: %w", h.path, err)
	}
	li := linkIndex{byName: map[string]netlink.Link{}, byIndex: map[int]string{}}
	for _, l := range ls {
		li.byName[l.Attrs().Name] = l
		li.byIndex[l.Attrs().Index] = l.Attrs().Name
	}
	return li, nil
}

// links makes the links of s match: extra links go, missing veth pairs are
// made again whole, and each link's settings and addresses are corrected.
func (ps *pass) links(h *nsHandle, s *nsSpec) error {
	li, err := listLinks(h)
	if err != nil {
		return err
	}
	if lo := li.byName["lo"]; lo != nil && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up in %s: %w", s.name, err)
		}
		ps.note(s, s.imvu, "link lo", ChangeChanged, "was down")
	}
	for name, l := range li.byName {
		if name == "lo" || s.link(name) != nil {
			continue
		}
		if err := h.nl.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete link %s in %s: %w", name, s.name, err)
		}
		ps.note(s, ps.linkOwner(s), "link "+name, ChangeAdded, "type "+l.Type())
	}
	for _, ls := range s.links {
		l := li.byName[ls.name]
		if l != nil && l.Type() != ls.kind {
			if err := h.nl.LinkDel(l); err != nil {
				return fmt.Errorf("delete link %s in %s: %w", ls.name, s.name, err)
			}
			ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, "type "+l.Type())
			l = nil
		}
		if ls.kind == "bridge" {
			if l == nil {
				br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: ls.name, HardwareAddr: ls.mac, MTU: 1500}}
				if err := h.nl.LinkAdd(br); err != nil {
					return fmt.Errorf("create bridge %s in %s: %w", ls.name, s.name, err)
				}
				ps.note(s, ls.imvu, "link "+ls.name, ChangeRemoved, "bridge made again")
			}
			if err := ps.configure(h, s, ls); err != nil {
				return err
			}
			continue
		}
		if err := ps.veth(h, s, ls, l); err != nil {
			return err
		}
	}
	return nil
}

// veth checks that both ends of the pair exist and are each other's peer,
// making the pair again if not, then configures this end.
func (ps *pass) veth(h *nsHandle, s *nsSpec, ls *linkSpec, l netlink.Link) error {
	peerH, peerSpec, peerNS, err := ps.peer(s, ls)
	if err != nil {
		return err
	}
	pl, err := peerH.nl.LinkByName(ls.peerName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("look up %s in %s: %w", ls.peerName, peerH.path, err)
		}
		pl = nil
	}
	whole := l != nil && pl != nil && pl.Type() == "veth" &&
		l.Attrs().ParentIndex == pl.Attrs().Index && pl.Attrs().ParentIndex == l.Attrs().Index
	if !whole {
		for _, x := range []struct {
			h *nsHandle
			l netlink.Link
		}{{h, l}, {peerH, pl}} {
			if x.l != nil {
				if err := x.h.nl.LinkDel(x.l); err != nil && !errors.Is(err, unix.ENODEV) {
					return fmt.Errorf("delete link %s in %s: %w", x.l.Attrs().Name, x.h.path, err)
				}
			}
		}
		// The ends get different ifindexes: a veth whose index equals its
		// peer's has its carrier change handled by linkwatch as not urgent,
		// up to a second late, and a bridge leaves the port disabled (and
		// drops its frames) until then.
		v := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: ls.name, HardwareAddr: ls.mac, MTU: 1500, Namespace: netlink.NsFd(h.fd), Index: ls.index},
			PeerName:         ls.peerName,
			PeerHardwareAddr: peerSpec.mac,
			PeerNamespace:    netlink.NsFd(peerH.fd),
			PeerMTU:          1500,
		}
		err := h.nl.LinkAdd(v)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) {
			v.Index = 0 // the index is taken: correct, if slower to come up
			err = h.nl.LinkAdd(v)
		}
		if err != nil {
			return fmt.Errorf("create veth %s/%s (%s, %s): %w", ls.name, ls.peerName, s.name, peerH.path, err)
		}
		detail := "made again"
		if l == nil && pl == nil {
			detail = "both ends missing, made again"
		} else if l == nil || pl == nil {
			detail = "one end missing, pair made again"
		}
		ps.note(s, ls.imvu, "link "+ls.name, ChangeRemoved, detail)
		// The far end needs its settings: an owned peer namespace gets a
		// full look (again) in this pass.
		if peerNS != nil {
			ps.again(peerNS.name)
		} else if err := ps.configureForeign(peerH, peerSpec); err != nil {
			return err
		}
	} else if peerNS == nil {
		if err := ps.configureForeign(peerH, peerSpec); err != nil {
			return err
		}
	}
	return ps.configure(h, s, ls)
}

// peer returns the handle and spec of the other end of a veth.
func (ps *pass) peer(s *nsSpec, ls *linkSpec) (*nsHandle, *linkSpec, *nsSpec, error) {
	if ls.peerPath != "" {
		h, err := ps.p.foreignNS(ls.peerPath)
		return h, ls.far, nil, err
	}
	pn := ps.p.model.ns[ls.peerNS]
	if pn == nil {
		return nil, nil, nil, fmt.Errorf("link %s in %s: peer namespace %s not in the model", ls.name, s.name, ls.peerNS)
	}
	h, err := ps.ensureNS(pn)
	if err != nil {
		return nil, nil, nil, err
	}
	return h, pn.link(ls.peerName), pn, nil
}

// configure corrects one link's settings and addresses.
func (ps *pass) configure(h *nsHandle, s *nsSpec, ls *linkSpec) error {
	l, err := h.nl.LinkByName(ls.name)
	if err != nil {
		return fmt.Errorf("look up %s in %s: %w", ls.name, s.name, err)
	}
	a := l.Attrs()
	fix := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("set %s of %s in %s: %w", what, ls.name, s.name, err)
		}
		return nil
	}
	if !bytes.Equal(a.HardwareAddr, ls.mac) {
		if err := fix("address", h.nl.LinkSetHardwareAddr(l, ls.mac)); err != nil {
			return err
		}
		ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, fmt.Sprintf("mac was %s", a.HardwareAddr))
	}
	if a.MTU != 1500 {
		if err := fix("mtu", h.nl.LinkSetMTU(l, 1500)); err != nil {
			return err
		}
		ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, fmt.Sprintf("mtu was %d", a.MTU))
	}
	if ls.kind == "veth" {
		if err := ps.bigTCP(h, s, ls, l); err != nil {
			return err
		}
	}
	wantMaster := 0
	if ls.master != "" {
		m, err := h.nl.LinkByName(ls.master)
		if err != nil {
			return fmt.Errorf("look up %s in %s: %w", ls.master, s.name, err)
		}
		wantMaster = m.Attrs().Index
	}
	if a.MasterIndex != wantMaster {
		if wantMaster == 0 {
			err = h.nl.LinkSetNoMaster(l)
		} else {
			err = h.nl.LinkSetMasterByIndex(l, wantMaster)
		}
		if err := fix("master", err); err != nil {
			return err
		}
		ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, fmt.Sprintf("master was index %d", a.MasterIndex))
	}
	if a.Alias != ls.alias {
		if err := fix("alias", h.nl.LinkSetAlias(l, ls.alias)); err != nil {
			return err
		}
		if a.Alias != "" {
			ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, fmt.Sprintf("alias was %q", a.Alias))
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := fix("up", h.nl.LinkSetUp(l)); err != nil {
			return err
		}
		ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, "was down")
	}
	return ps.addrs(h, s, ls, l)
}

// gsoSize is the GSO/GRO size of the plane's veths (BIG TCP). Every hop
// then moves a quarter of the packets it would at the 64 KiB default: a
// TCP stream through the plane's four veth hops, bridge and router measured
// 14 Gbit/s at the default and 29 Gbit/s at 256 KiB here, against 21 Gbit/s
// for a bare veth pair. Bridges follow their ports by themselves.
const gsoSize = 256 << 10

func (ps *pass) bigTCP(h *nsHandle, s *nsSpec, ls *linkSpec, l netlink.Link) error {
	a := l.Attrs()
	type knob struct {
		name string
		have uint32
		set  func(netlink.Link, int) error
	}
	knobs := []knob{
		{"gso_max_size", a.GSOMaxSize, h.nl.LinkSetGSOMaxSize},
		{"gro_max_size", a.GROMaxSize, h.nl.LinkSetGROMaxSize},
	}
	// Kernels before 6.3 have no IPv4 BIG TCP and report no such size.
	if a.GSOIPv4MaxSize != 0 {
		knobs = append(knobs,
			knob{"gso_ipv4_max_size", a.GSOIPv4MaxSize, h.nl.LinkSetGSOIPv4MaxSize},
			knob{"gro_ipv4_max_size", a.GROIPv4MaxSize, h.nl.LinkSetGROIPv4MaxSize})
	}
	for _, k := range knobs {
		if k.have == gsoSize || k.have == 0 {
			continue
		}
		if err := k.set(l, gsoSize); err != nil {
			return fmt.Errorf("set %s of %s in %s: %w", k.name, ls.name, h.path, err)
		}
		if k.have != 65536 { // the default a new link starts with
			ps.note(s, ls.imvu, "link "+ls.name, ChangeChanged, fmt.Sprintf("%s was %d", k.name, k.have))
		}
	}
	return nil
}

func (ps *pass) addrs(h *nsHandle, s *nsSpec, ls *linkSpec, l netlink.Link) error {
	have, err := dump(func() ([]netlink.Addr, error) { return h.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses of %s in %s: %w", ls.name, h.path, err)
	}
	found := map[netip.Prefix]bool{}
	for _, a := range have {
		p := fromIPNet(a.IPNet)
		if slices.Contains(ls.addrs, p) {
			found[p] = true
			continue
		}
		if err := h.nl.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("delete address %v from %s in %s: %w", p, ls.name, h.path, err)
		}
		if s != nil {
			ps.note(s, ps.addrOwner(s, ls, p), "addr "+p.String()+" dev "+ls.name, ChangeAdded, "")
		}
	}
	for _, p := range ls.addrs {
		if found[p] {
			continue
		}
		if err := h.nl.AddrReplace(l, &netlink.Addr{IPNet: toIPNet(p)}); err != nil {
			return fmt.Errorf("add address %v to %s in %s: %w", p, ls.name, h.path, err)
		}
		if s != nil {
			ps.note(s, ls.imvu, "addr "+p.String()+" dev "+ls.name, ChangeRemoved, "")
		}
	}
	return nil
}

// configureForeign sets up the plane's end of an egress pair in a namespace
// the plane does not own: up, with its address. Nothing else there is
// touched.
func (ps *pass) configureForeign(h *nsHandle, ls *linkSpec) error {
	l, err := h.nl.LinkByName(ls.name)
	if err != nil {
		return fmt.Errorf("look up %s in %s: %w", ls.name, h.path, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up in %s: %w", ls.name, h.path, err)
		}
	}
	return ps.addrs(h, nil, ls, l)
}

// routes makes every routing table in the namespace match: the connected
// routes of the links' addresses plus the plane's own. The local table is
// the kernel's, except that a local route to an address the namespace does
// not own (a hijack) is removed.
func (ps *pass) routes(h *nsHandle, s *nsSpec) error {
	li, err := listLinks(h)
	if err != nil {
		return err
	}
	have, err := dump(func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list routes in %s: %w", s.name, err)
	}
	own := map[netip.Addr]bool{}
	want := map[routeKey]routeSpec{}
	for _, r := range s.routes {
		want[r.key()] = r
	}
	for _, l := range s.links {
		for _, a := range l.addrs {
			own[a.Addr()] = true
		}
	}
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	seen := map[routeKey]bool{}
	for _, r := range have {
		dst := fromIPNet(r.Dst)
		if !dst.IsValid() {
			dst = netip.MustParsePrefix("0.0.0.0/0")
		}
		if r.Table == unix.RT_TABLE_LOCAL {
			if r.Type == unix.RTN_BROADCAST || r.Type == unix.RTN_LOCAL && (loopback.Contains(dst.Addr()) || dst.Bits() == 32 && own[dst.Addr()]) {
				continue
			}
		}
		got := routeSpec{table: r.Table, dst: dst, gw: fromIP(r.Gw), dev: li.byIndex[r.LinkIndex], src: fromIP(r.Src), scope: r.Scope, proto: r.Protocol}
		k := got.key()
		w, ok := want[k]
		if ok && r.Type == unix.RTN_UNICAST && r.Priority == 0 && r.Tos == 0 && len(r.MultiPath) == 0 && sameRoute(got, w) && !seen[k] {
			seen[k] = true
			continue
		}
		if err := h.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %v in %s: %w", got, s.name, err)
		}
		change, owner := ChangeAdded, ps.routeOwner(s, dst, got.dev)
		if ok && !seen[k] {
			change = ChangeChanged
		}
		ps.note(s, owner, "route "+got.String(), change, "")
	}
	for _, w := range s.routes {
		if seen[w.key()] {
			continue
		}
		l := li.byName[w.dev]
		if l == nil {
			continue // the link is being made again; the next pass adds its routes
		}
		rt := &netlink.Route{Table: w.table, Dst: toIPNet(w.dst), LinkIndex: l.Attrs().Index, Scope: w.scope, Protocol: w.proto, Type: unix.RTN_UNICAST}
		if w.gw.IsValid() {
			rt.Gw = w.gw.AsSlice()
		}
		if w.src.IsValid() {
			rt.Src = w.src.AsSlice()
		}
		if err := h.nl.RouteReplace(rt); err != nil {
			return fmt.Errorf("add route %v in %s: %w", w, s.name, err)
		}
		ps.note(s, w.imvu, "route "+w.String(), ChangeRemoved, "")
	}
	return nil
}

func sameRoute(a, b routeSpec) bool {
	return a.gw == b.gw && a.dev == b.dev && a.src == b.src && a.scope == b.scope && a.proto == b.proto
}

func ruleKey(r *netlink.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %v %v %d %s %s %d %v %d %d %d %d %d %d %d", r.Priority, fromIPNet(r.Src), fromIPNet(r.Dst), r.Table,
		r.IifName, r.OifName, r.Mark, r.Invert, r.Goto, r.Tos, r.IPProto, r.SuppressPrefixlen, r.SuppressIfgroup, r.Flow, r.TunID)
	if r.Mask != nil {
		fmt.Fprintf(&b, " mask %d", *r.Mask)
	}
	if r.Dport != nil || r.Sport != nil || r.UIDRange != nil {
		fmt.Fprintf(&b, " ports %v %v uid %v", r.Sport, r.Dport, r.UIDRange)
	}
	return b.String()
}

func (r ipRuleSpec) netlink() *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Priority = r.prio
	nr.Table = r.table
	if r.src.IsValid() {
		nr.Src = toIPNet(r.src)
	}
	return nr
}

// rules makes the policy routing rules match exactly.
func (ps *pass) rules(h *nsHandle, s *nsSpec) error {
	have, err := dump(func() ([]netlink.Rule, error) { return h.nl.RuleListFiltered(netlink.FAMILY_V4, nil, 0) })
	if err != nil {
		return fmt.Errorf("list rules in %s: %w", s.name, err)
	}
	want := map[string]ipRuleSpec{}
	for _, r := range s.rules {
		want[ruleKey(r.netlink())] = r
	}
	seen := map[string]bool{}
	for _, r := range have {
		k := ruleKey(&r)
		if _, ok := want[k]; ok && !seen[k] {
			seen[k] = true
			continue
		}
		if err := h.nl.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete rule %q in %s: %w", k, s.name, err)
		}
		ps.note(s, ps.routeOwner(s, fromIPNet(r.Src), ""), "rule "+r.String(), ChangeAdded, "")
	}
	for k, r := range want {
		if seen[k] {
			continue
		}
		if err := h.nl.RuleAdd(r.netlink()); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add rule %v in %s: %w", r, s.name, err)
		}
		ps.note(s, r.imvu, "rule "+r.String(), ChangeRemoved, "")
	}
	return nil
}

// Attribution of objects in the shared router namespace.

func (ps *pass) linkOwner(s *nsSpec) string {
	if s.role != roleRouter {
		return s.imvu
	}
	return ""
}

func (ps *pass) addrOwner(s *nsSpec, ls *linkSpec, p netip.Prefix) string {
	if ls.imvu != "" {
		return ls.imvu
	}
	return ps.routeOwner(s, p, "")
}

// routeOwner names the IMVU whose prefix holds dst, or whose router port
// dev is.
func (ps *pass) routeOwner(s *nsSpec, dst netip.Prefix, dev string) string {
	if s.role != roleRouter {
		return s.imvu
	}
	if dst.IsValid() && dst.Bits() > 0 {
		for p, imvu := range ps.p.model.owners {
			if p.Overlaps(dst) {
				return imvu
			}
		}
	}
	if l := s.link(dev); l != nil {
		return l.imvu
	}
	return ""
}
