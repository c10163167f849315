package netfab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names inside the namespaces the plane owns. Link names are short hashes
// because they must fit IFNAMSIZ; the alias of every link carries its full
// identity.
const (
	bridgeLink   = "br0"
	imvuUplink   = "up0"
	workloadLink = "eth0"

	egressTableBase = 1000  // routing table of egress point i is egressTableBase+i
	egressRulePrio  = 40000 // after the main table, so IMVU prefixes route directly
	protoPlane      = unix.RTPROT_STATIC
)

type role uint8

const (
	roleRouter role = iota
	roleIMVU
	roleWorkload
)

// nsSpec is everything approved inside one namespace the plane owns.
type nsSpec struct {
	name   string
	imvu   string
	role   role
	links  []*linkSpec // bridges first
	routes []routeSpec // besides the connected routes of the links' addresses
	rules  []ipRuleSpec
	table  *tableSpec
	hash   string
}

type linkSpec struct {
	name   string
	kind   string // "bridge" or "veth"
	imvu   string
	mac    net.HardwareAddr
	master string
	addrs  []netip.Prefix
	alias  string
	// veth: the other end, in an owned namespace (peerNS) or in a foreign
	// one (peerPath, with far describing what the plane sets up there).
	peerNS, peerPath, peerName string
	far                        *linkSpec
	creator                    bool // this end's namespace creates the pair
	index                      int  // ifindex asked for when this end creates the pair
}

type routeSpec struct {
	table int
	dst   netip.Prefix
	gw    netip.Addr
	dev   string
	src   netip.Addr
	scope netlink.Scope
	proto netlink.RouteProtocol
	imvu  string
}

func (r routeSpec) key() routeKey { return routeKey{r.table, r.dst} }

func (r routeSpec) String() string {
	s := fmt.Sprintf("%v table %d dev %s", r.dst, r.table, r.dev)
	if r.gw.IsValid() {
		s += " via " + r.gw.String()
	}
	if r.src.IsValid() {
		s += " src " + r.src.String()
	}
	return s + fmt.Sprintf(" scope %d proto %d", r.scope, r.proto)
}

type routeKey struct {
	table int
	dst   netip.Prefix
}

type ipRuleSpec struct {
	prio  int
	src   netip.Prefix // invalid: from all
	table int
	imvu  string
}

func (r ipRuleSpec) String() string {
	from := "all"
	if r.src.IsValid() {
		from = r.src.String()
	}
	return fmt.Sprintf("%d: from %s lookup %d", r.prio, from, r.table)
}

// model is the compiled form of a Desired for one Plane.
type model struct {
	ns     map[string]*nsSpec
	order  []string                // router first, then IMVUs each followed by their workloads
	flows  map[string]flowSpec     // approved paths through the router, for conntrack flushing
	owners map[netip.Prefix]string // IMVU prefix -> IMVU, for attributing router objects
}

// flowSpec is one approved way through the router. When it disappears the
// conntrack entries it admitted are flushed so live flows stop too.
type flowSpec struct {
	src, dst netip.Prefix
	proto    uint8
	dport    uint16
}

func shortID(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

func hash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

// macFor derives a stable, locally administered unicast MAC for a link, so
// the anti-spoofing rules know it before the link exists.
func macFor(prefix, ns, link string) net.HardwareAddr {
	h := sha256.Sum256([]byte(prefix + "\x00" + ns + "\x00" + link))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
}

type namer struct{ prefix string }

func (n namer) router() string               { return n.prefix + "-r" }
func (n namer) imvu(i string) string         { return n.prefix + "-i-" + i }
func (n namer) workload(i, w string) string  { return n.prefix + "-w-" + i + "." + w }
func (n namer) owns(ns string) bool          { return strings.HasPrefix(ns, n.prefix+"-") }
func (namer) routerPort(imvu string) string  { return "i" + shortID("imvu\x00"+imvu) }
func (namer) bridgePort(wl string) string    { return "w" + shortID("workload\x00"+wl) }
func (namer) egressLink(point string) string { return "e" + shortID("egress\x00"+point) }
func (namer) outChain(imvu string) string    { return "out_" + imvu }
func (namer) portChain(wl string) string     { return "port_" + wl }
func counterName(dir string, c Class) string { return dir + "_" + string(c) }

// egressPoints returns the uplink (named "") and the named points, with the
// routing table each uses.
func egressPoints(o *Options) ([]EgressPoint, []int) {
	var eps []EgressPoint
	var tables []int
	if o.Uplink != nil {
		u := *o.Uplink
		u.Name = ""
		eps = append(eps, u)
		tables = append(tables, egressTableBase)
	}
	for i, e := range o.Egress {
		eps = append(eps, e)
		tables = append(tables, egressTableBase+1+i)
	}
	return eps, tables
}

// compile turns a validated Desired into the kernel objects the plane owns.
func compile(o *Options, d *Desired) *model {
	n := namer{o.Prefix}
	m := &model{ns: map[string]*nsSpec{}, flows: map[string]flowSpec{}, owners: map[netip.Prefix]string{}}
	add := func(s *nsSpec) {
		m.ns[s.name] = s
		m.order = append(m.order, s.name)
	}
	r := &nsSpec{name: n.router(), role: roleRouter}
	add(r)
	r.rules = defaultRules()

	eps, tables := egressPoints(o)
	egressLink := map[string]string{}
	egressTable := map[string]int{}
	for i, e := range eps {
		l := n.egressLink(e.Name)
		egressLink[e.Name], egressTable[e.Name] = l, tables[i]
		r.links = append(r.links, &linkSpec{
			name: l, kind: "veth", mac: macFor(o.Prefix, r.name, l), addrs: []netip.Prefix{e.Local},
			peerPath: e.NetNS, peerName: e.Link, creator: true,
			far: &linkSpec{name: e.Link, kind: "veth", mac: macFor(o.Prefix, e.NetNS, e.Link), addrs: []netip.Prefix{e.Remote}},
		})
		r.routes = append(r.routes, routeSpec{table: tables[i], dst: netip.MustParsePrefix("0.0.0.0/0"),
			gw: e.Remote.Addr(), dev: l, proto: protoPlane, scope: netlink.SCOPE_UNIVERSE})
	}

	nets := slices.Clone(d.Networks)
	slices.SortFunc(nets, func(a, b Network) int { return strings.Compare(a.IMVU, b.IMVU) })
	addrOf := map[Endpoint]netip.Addr{}
	for _, nw := range nets {
		for _, w := range nw.Workloads {
			addrOf[Endpoint{nw.IMVU, w.Name}] = w.Addr
		}
	}
	grantsFrom := map[string][]Grant{}
	for _, g := range d.Grants {
		if g.From.IMVU != g.To.IMVU {
			grantsFrom[g.From.IMVU] = append(grantsFrom[g.From.IMVU], g)
		}
	}

	var fwd []ruleSpec
	var outChains []*chainSpec
	for _, nw := range nets {
		m.owners[nw.Prefix] = nw.IMVU
		gw := gateway(nw.Prefix)
		port := n.routerPort(nw.IMVU)
		in := &nsSpec{name: n.imvu(nw.IMVU), imvu: nw.IMVU, role: roleIMVU}
		add(in)
		in.rules = defaultRules()
		r.links = append(r.links, &linkSpec{
			name: port, kind: "veth", imvu: nw.IMVU, mac: macFor(o.Prefix, r.name, port),
			addrs:  []netip.Prefix{netip.PrefixFrom(gw, nw.Prefix.Bits())},
			peerNS: in.name, peerName: imvuUplink,
		})
		in.links = append(in.links,
			&linkSpec{name: bridgeLink, kind: "bridge", imvu: nw.IMVU, mac: macFor(o.Prefix, in.name, bridgeLink)},
			&linkSpec{name: imvuUplink, kind: "veth", imvu: nw.IMVU, mac: macFor(o.Prefix, in.name, imvuUplink),
				master: bridgeLink, peerNS: r.name, peerName: port, creator: true})

		// The IMVU's bridge table: anti-spoofing per port and the meters.
		bt := &tableSpec{family: nftables.TableFamilyBridge, name: o.Prefix}
		for _, c := range []Class{Private, Public, Restricted} {
			bt.counters = append(bt.counters, counterName("in", c), counterName("out", c))
		}
		bfwd := &chainSpec{name: "forward", imvu: nw.IMVU, hook: hookRef(*nftables.ChainHookForward),
			prio: prioRef(*nftables.ChainPriorityFilter), ctype: nftables.ChainTypeFilter, policy: policyRef(nftables.ChainPolicyDrop)}
		var ports []*chainSpec
		var inCount, jumps []ruleSpec

		wls := slices.Clone(nw.Workloads)
		slices.SortFunc(wls, func(a, b Workload) int { return strings.Compare(a.Name, b.Name) })
		for _, w := range wls {
			wn := &nsSpec{name: n.workload(nw.IMVU, w.Name), imvu: nw.IMVU, role: roleWorkload}
			add(wn)
			wn.rules = defaultRules()
			bp := n.bridgePort(w.Name)
			mac := macFor(o.Prefix, wn.name, workloadLink)
			in.links = append(in.links, &linkSpec{name: bp, kind: "veth", imvu: nw.IMVU, mac: macFor(o.Prefix, in.name, bp),
				master: bridgeLink, peerNS: wn.name, peerName: workloadLink, creator: true})
			wn.links = append(wn.links, &linkSpec{name: workloadLink, kind: "veth", imvu: nw.IMVU, mac: mac,
				addrs: []netip.Prefix{netip.PrefixFrom(w.Addr, nw.Prefix.Bits())}, peerNS: in.name, peerName: bp})
			wn.routes = append(wn.routes, routeSpec{table: unix.RT_TABLE_MAIN, dst: netip.MustParsePrefix("0.0.0.0/0"),
				gw: gw, dev: workloadLink, proto: protoPlane, scope: netlink.SCOPE_UNIVERSE, imvu: nw.IMVU})

			// Every inbound count comes before any verdict in the chain.
			inCount = append(inCount, new(rb).oif(bp).counter(counterName("in", w.Class)).rule(nw.IMVU))
			pc := &chainSpec{name: n.portChain(w.Name), imvu: nw.IMVU}
			pc.rules = append(pc.rules,
				new(rb).etherSaddr(mac).etherType(unix.ETH_P_IP, "ip").saddr(w.Addr).counter(counterName("out", w.Class)).accept().rule(nw.IMVU),
				new(rb).etherSaddr(mac).etherType(unix.ETH_P_ARP, "arp").arpSender(mac, w.Addr).counter(counterName("out", w.Class)).accept().rule(nw.IMVU),
				new(rb).drop().rule(nw.IMVU))
			ports = append(ports, pc)
			jumps = append(jumps, new(rb).iif(bp).jump(pc.name).rule(nw.IMVU))
		}
		bfwd.rules = append(append(inCount, jumps...), new(rb).iif(imvuUplink).accept().rule(nw.IMVU))
		bt.chains = append(ports, bfwd)
		in.table = bt

		// The router's view of the IMVU: ceilings each way, then what may
		// leave it.
		oc := &chainSpec{name: n.outChain(nw.IMVU), imvu: nw.IMVU}
		if nw.RateBps > 0 {
			fwd = append(fwd, new(rb).oif(port).limitOver(nw.RateBps, true).rule(nw.IMVU))
			oc.rules = append(oc.rules, new(rb).limitOver(nw.RateBps, true).rule(nw.IMVU))
		}
		if nw.RatePPS > 0 {
			fwd = append(fwd, new(rb).oif(port).limitOver(nw.RatePPS, false).rule(nw.IMVU))
			oc.rules = append(oc.rules, new(rb).limitOver(nw.RatePPS, false).rule(nw.IMVU))
		}
		fwd = append(fwd, new(rb).iif(port).jump(oc.name).rule(nw.IMVU))
		oc.rules = append(oc.rules, new(rb).established().accept().rule(nw.IMVU))
		for _, w := range wls {
			if w.Class != Public {
				continue
			}
			l, ok := egressLink[w.Egress]
			if !ok {
				continue // no uplink configured: a public workload without a way out
			}
			oc.rules = append(oc.rules, new(rb).ipv4().saddr(w.Addr).oif(l).accept().rule(nw.IMVU))
			r.rules = append(r.rules, ipRuleSpec{prio: egressRulePrio, src: netip.PrefixFrom(w.Addr, 32), table: egressTable[w.Egress], imvu: nw.IMVU})
			m.flows["egress "+nw.IMVU+"/"+w.Name+" via "+w.Egress] = flowSpec{src: netip.PrefixFrom(w.Addr, 32)}
		}
		gs := slices.Clone(grantsFrom[nw.IMVU])
		slices.SortFunc(gs, func(a, b Grant) int { return strings.Compare(a.ID, b.ID) })
		for _, g := range gs {
			src, dst := addrOf[g.From], addrOf[g.To]
			oc.rules = append(oc.rules, new(rb).ipv4().saddr(src).daddr(dst).oif(n.routerPort(g.To.IMVU)).l4(g.Proto, g.Port).accept().rule(nw.IMVU))
			proto := uint8(unix.IPPROTO_TCP)
			if g.Proto == "udp" {
				proto = unix.IPPROTO_UDP
			}
			m.flows["grant "+g.ID+" "+fmt.Sprint(src, dst, proto, g.Port)] = flowSpec{
				src: netip.PrefixFrom(src, 32), dst: netip.PrefixFrom(dst, 32), proto: proto, dport: g.Port}
		}
		outChains = append(outChains, oc)
	}

	// The router's table.
	rt := &tableSpec{family: nftables.TableFamilyINet, name: o.Prefix}
	for _, e := range eps {
		fwd = append(fwd, new(rb).iif(egressLink[e.Name]).established().accept().rule(""))
	}
	input := &chainSpec{name: "input", hook: hookRef(*nftables.ChainHookInput), prio: prioRef(*nftables.ChainPriorityFilter),
		ctype: nftables.ChainTypeFilter, policy: policyRef(nftables.ChainPolicyDrop), rules: []ruleSpec{
			new(rb).established().accept().rule(""),
			new(rb).iif("lo").accept().rule(""),
			new(rb).ipv4().l4proto(unix.IPPROTO_ICMP, "icmp").accept().rule(""),
		}}
	var post []ruleSpec
	for _, e := range eps {
		post = append(post, new(rb).oif(egressLink[e.Name]).masquerade().rule(""))
	}
	rt.chains = append(outChains,
		&chainSpec{name: "forward", hook: hookRef(*nftables.ChainHookForward), prio: prioRef(*nftables.ChainPriorityFilter),
			ctype: nftables.ChainTypeFilter, policy: policyRef(nftables.ChainPolicyDrop), rules: fwd},
		input,
		&chainSpec{name: "postrouting", hook: hookRef(*nftables.ChainHookPostrouting), prio: prioRef(*nftables.ChainPriorityNATSource),
			ctype: nftables.ChainTypeNAT, policy: policyRef(nftables.ChainPolicyAccept), rules: post})
	r.table = rt

	for _, s := range m.ns {
		s.finish(o.Prefix)
	}
	return m
}

func defaultRules() []ipRuleSpec {
	return []ipRuleSpec{
		{prio: 0, table: unix.RT_TABLE_LOCAL},
		{prio: 32766, table: unix.RT_TABLE_MAIN},
		{prio: 32767, table: unix.RT_TABLE_DEFAULT},
	}
}

// finish derives the connected routes, the links' aliases and the
// namespace's hash.
func (s *nsSpec) finish(prefix string) {
	var parts []string
	for i, l := range s.links {
		if l.kind == "veth" {
			l.index = 1<<16 + i // far above the automatic index the other end gets
		}
		d := fmt.Sprintf("link %s %s mac %s master %q addrs %v peer %s/%s/%s", l.name, l.kind, l.mac, l.master, l.addrs, l.peerNS, l.peerPath, l.peerName)
		if l.far != nil {
			d += fmt.Sprintf(" far %s %v", l.far.mac, l.far.addrs)
		}
		l.alias = prefix + ":" + hash(s.name, d)
		parts = append(parts, d)
		for _, a := range l.addrs {
			if a.Bits() < 32 {
				s.routes = append(s.routes, routeSpec{table: unix.RT_TABLE_MAIN, dst: a.Masked(), dev: l.name, src: a.Addr(),
					scope: netlink.SCOPE_LINK, proto: unix.RTPROT_KERNEL, imvu: l.imvu})
			}
		}
	}
	for _, r := range s.routes {
		parts = append(parts, "route "+r.String())
	}
	for _, r := range s.rules {
		parts = append(parts, "rule "+r.String())
	}
	if t := s.table; t != nil {
		parts = append(parts, fmt.Sprintf("table %d %s %v", t.family, t.name, t.counters))
		for _, c := range t.chains {
			parts = append(parts, c.describe())
			for _, r := range c.rules {
				parts = append(parts, r.desc)
			}
		}
	}
	s.hash = hash(parts...)
}

func (s *nsSpec) link(name string) *linkSpec {
	for _, l := range s.links {
		if l.name == name {
			return l
		}
	}
	return nil
}
