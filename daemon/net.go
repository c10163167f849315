package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/netfab"
)

// netService joins the ledger's networks (netfab's kinds) and workloads
// (compute's) into the desired state of the kernel data plane.
type netService struct {
	n     *Node
	plane *netfab.Plane
	kick  chan struct{}
	mu    sync.Mutex // one Sync at a time
}

// QueryNetShow is the view `nexus net show` reads.
const QueryNetShow = "net.show"

// NetShow is an IMVU's network as `nexus net show` prints it.
type NetShow struct {
	Prefix    string                        `json:"prefix"`
	Gateway   string                        `json:"gateway"`
	Workloads []netfab.Workload             `json:"workloads"`
	Egress    []string                      `json:"egress"`
	Grants    []NetGrant                    `json:"grants"`
	RateBps   uint64                        `json:"rate_bps"`
	RatePPS   uint64                        `json:"rate_pps"`
	Traffic   map[netfab.Class]netfab.Bytes `json:"traffic"`
}

// NetGrant is a grant with whether the peer's half stands too.
type NetGrant struct {
	netfab.Half
	Active bool `json:"active"`
}

func egressPoint(e config.Egress) netfab.EgressPoint {
	return netfab.EgressPoint{Name: e.Name, NetNS: e.NetNS, Link: e.Link,
		Local: netip.MustParsePrefix(e.Local), Remote: netip.MustParsePrefix(e.Remote)} // checked by config.Check
}

func (n *Node) startNet(ctx context.Context) error {
	c := n.Config.Net
	if !c.Enabled {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("net: building networks needs root (set net.enabled = false to run without them)")
	}
	opts := netfab.Options{Prefix: "n" + n.nodeID(), Logger: n.logger.With("part", "net"), OnDrift: n.netDrift}
	for _, e := range c.Egress {
		opts.Egress = append(opts.Egress, egressPoint(e))
	}
	if c.Uplink != nil {
		u := egressPoint(*c.Uplink)
		opts.Uplink = &u
	}
	p, err := netfab.New(ctx, opts)
	if err != nil {
		return err
	}
	n.net = &netService{n: n, plane: p, kick: make(chan struct{}, 1)}
	return nil
}

// netDrift ledgers what the plane found done by hand, under the IMVU it
// touched, so the IMVU sees it.
func (n *Node) netDrift(d netfab.Drift) {
	what := fmt.Sprintf("%s %s in %s: %s", d.Change, d.Object, d.NetNS, d.Detail)
	if d.Reverted {
		what += " (reverted)"
	}
	scope := d.IMVU
	if scope == "" {
		scope = "platform"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Engine.ReportDrift(ctx, scope, "net", what); err != nil {
		n.logger.Error("net drift", "err", err, "drift", what)
	}
}

// desired builds the data plane's input from the derived state.
func (ns *netService) desired() netfab.Desired {
	var d netfab.Desired
	pps := ns.n.Config.Net.PacketRate
	ns.n.Engine.View(func(st *handshake.State) error {
		halves := map[string]bool{} // "imvu/id" of every half
		for id, m := range st.IMVUs {
			for gid := range netfab.StateOf(m).Grants {
				halves[id+"/"+gid] = true
			}
		}
		for _, id := range sortedIMVUs(st) {
			m := st.IMVUs[id]
			s := netfab.StateOf(m)
			if s.Prefix == "" || m.Status == handshake.StatusExited {
				continue
			}
			pfx, err := netip.ParsePrefix(s.Prefix)
			if err != nil {
				continue
			}
			nw := netfab.Network{IMVU: id, Prefix: pfx, RateBps: m.Envelope.NetBps, RatePPS: pps, Egress: s.Egress}
			c := compute.Of(m)
			for _, name := range c.Names() {
				rt, ok := s.Routes[name]
				if !ok {
					rt = netfab.Route{Class: netfab.Private}
				}
				addr, ok := hostAddr(pfx, c.Workloads[name].Slot)
				if !ok {
					continue
				}
				nw.Workloads = append(nw.Workloads, netfab.Workload{Name: name, Addr: addr, Class: rt.Class, Egress: rt.Egress})
			}
			d.Networks = append(d.Networks, nw)
			for _, h := range sortedHalves(s.Grants) {
				if h.From.IMVU == id && halves[h.To.IMVU+"/"+h.ID] {
					d.Grants = append(d.Grants, netfab.Grant{ID: h.ID, From: h.From, To: h.To, Port: h.Port, Proto: h.Proto})
				}
			}
		}
		return nil
	})
	// A grant opens a path between workloads that exist and are not
	// private; until both are, it waits (net show tells).
	on := map[netfab.Endpoint]bool{}
	for _, nw := range d.Networks {
		for _, w := range nw.Workloads {
			on[netfab.Endpoint{IMVU: nw.IMVU, Workload: w.Name}] = w.Class != netfab.Private
		}
	}
	d.Grants = slices.DeleteFunc(d.Grants, func(g netfab.Grant) bool { return !on[g.From] || !on[g.To] })
	return d
}

// hostAddr is the address of a workload slot: past the network address
// and the gateway.
func hostAddr(p netip.Prefix, slot uint32) (netip.Addr, bool) {
	a := p.Masked().Addr().Next() // the gateway
	for range slot {
		a = a.Next()
	}
	return a, p.Contains(a) && p.Contains(a.Next()) // not the broadcast address
}

func sortedIMVUs(st *handshake.State) []string {
	ids := make([]string, 0, len(st.IMVUs))
	for id := range st.IMVUs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func sortedHalves(m map[string]netfab.Half) []netfab.Half {
	out := make([]netfab.Half, 0, len(m))
	for _, h := range m {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b netfab.Half) int { return int(a.Index) - int(b.Index) })
	return out
}

// apply makes the kernel match the state now.
func (ns *netService) apply(ctx context.Context) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.plane.Sync(ctx, ns.desired())
}

// workloadNS is where a starting workload attaches: its namespace on its
// IMVU's network, made first; "" when the IMVU has no network.
func (ns *netService) workloadNS(imvu, workload string) string {
	has := false
	ns.n.Engine.View(func(st *handshake.State) error {
		if m := st.IMVUs[imvu]; m != nil {
			has = netfab.StateOf(m).Prefix != ""
		}
		return nil
	})
	if !has {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ns.apply(ctx); err != nil {
		ns.n.logger.Error("net apply", "err", err)
	}
	path := ns.plane.WorkloadNS(imvu, workload)
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

func (n *Node) runNet(ctx context.Context) {
	ns := n.net
	if ns == nil {
		return
	}
	n.Engine.Watch(func(*handshake.State, string) {
		select {
		case ns.kick <- struct{}{}:
		default:
		}
	})
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			if err := ns.apply(ctx); err != nil && ctx.Err() == nil {
				n.logger.Error("net apply", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-ns.kick:
			case <-t.C:
			}
		}
	}()
	go func() {
		defer n.wg.Done()
		if err := ns.plane.Run(ctx); err != nil && ctx.Err() == nil {
			n.logger.Error("net reconciler", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.newMeter("net", n.Config.Net.MeterEvery.Duration, ns.meterSources).run(ctx)
	}()
}

// meterSources are the bytes in and out of each IMVU's workloads per route
// class since this process started: net_bytes_{in,out}_{private,public,restricted}.
func (ns *netService) meterSources() map[string]map[string]uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr, err := ns.plane.Counters(ctx)
	if err != nil {
		ns.n.logger.Warn("net counters", "err", err)
		return nil
	}
	out := map[string]map[string]uint64{}
	add := func(resource, imvu string, v uint64) {
		if out[resource] == nil {
			out[resource] = map[string]uint64{}
		}
		out[resource][imvu] = v
	}
	for id, t := range tr {
		for class, b := range t {
			add("net_bytes_in_"+string(class), id, b.In)
			add("net_bytes_out_"+string(class), id, b.Out)
		}
	}
	return out
}

// netViews answer `nexus net show`.
func (n *Node) netViews() map[string]api.View {
	if n.net == nil {
		return nil
	}
	return map[string]api.View{QueryNetShow: func(ctx context.Context, st *handshake.State, q *action.Query) (any, error) {
		if err := q.Decode(&struct{}{}); err != nil {
			return nil, err
		}
		m := st.IMVUs[q.Scope]
		s := netfab.StateOf(m)
		out := NetShow{Prefix: s.Prefix, Egress: s.Egress, RateBps: m.Envelope.NetBps, RatePPS: n.Config.Net.PacketRate, Workloads: []netfab.Workload{}, Grants: []NetGrant{}}
		if pfx, err := netip.ParsePrefix(s.Prefix); err == nil {
			out.Gateway = pfx.Masked().Addr().Next().String()
			c := compute.Of(m)
			for _, name := range c.Names() {
				rt, ok := s.Routes[name]
				if !ok {
					rt = netfab.Route{Class: netfab.Private}
				}
				if a, ok := hostAddr(pfx, c.Workloads[name].Slot); ok {
					out.Workloads = append(out.Workloads, netfab.Workload{Name: name, Addr: a, Class: rt.Class, Egress: rt.Egress})
				}
			}
		}
		for _, h := range sortedHalves(s.Grants) {
			peer := h.To.IMVU
			if peer == q.Scope {
				peer = h.From.IMVU
			}
			active := false
			if pm := st.IMVUs[peer]; pm != nil {
				_, active = netfab.StateOf(pm).Grants[h.ID]
			}
			out.Grants = append(out.Grants, NetGrant{Half: h, Active: active})
		}
		// Counters are read-and-reset in the kernel and kept by the plane;
		// reading them here costs one netlink round trip per namespace.
		if tr, err := n.net.plane.Counters(ctx); err == nil {
			out.Traffic = tr[q.Scope]
		}
		return out, nil
	}}
}

// netNS is compute's hook: the namespace a workload joins.
func (n *Node) netNS(imvu, workload string) string {
	if n.net == nil {
		return ""
	}
	return n.net.workloadNS(imvu, workload)
}

// netFiles exports an IMVU's network (prefix, routes, policy, grants) as
// net.json for reading; `imvu import` re-creates it through actions.
type netFiles struct{}

func (netFiles) Export(_ context.Context, _ *handshake.State, m *handshake.IMVU, dir string) error {
	s := netfab.StateOf(m)
	if s.Prefix == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "net.json"), append(b, '\n'), 0o600)
}

func (netFiles) Import(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }
