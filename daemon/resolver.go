package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/resolver"
)

// startResolver runs the recursive resolver for IMVU workloads. Platform zones
// are answered by the daemon's own authoritative server, never from the network.
func (n *Node) startResolver(ctx context.Context, reg prometheus.Registerer) error {
	c := n.Config.Resolver
	if c.Listen == "" {
		return nil
	}
	clients := map[netip.Prefix]string{}
	for p, id := range c.Clients {
		clients[netip.MustParsePrefix(p)] = id // checked by config.Check
	}
	attribute := func(src netip.Addr) (string, bool) {
		best, bits := "", -1
		for p, id := range clients {
			if p.Contains(src.Unmap()) && p.Bits() > bits {
				best, bits = id, p.Bits()
			}
		}
		return best, bits >= 0
	}
	var local resolver.Local
	if n.dns != nil {
		local = localZones{addr: n.dns.srv.Addr(), tlds: n.Config.Platform.TLDs}
	}
	r, err := resolver.New(resolver.Config{Addr: c.Listen, Local: local, RootHints: c.RootHints, Forwarders: c.Forwarders,
		TrustAnchors: c.TrustAnchors, Attribute: attribute, Logger: n.logger.With("part", "resolver"), Registerer: reg})
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("resolver on %s: %w", c.Listen, err)
	}
	n.resolver = r
	n.listeners = append(n.listeners, api.Listener{Name: "resolver", Network: "udp", Address: r.Addr()},
		api.Listener{Name: "resolver", Network: "tcp", Address: r.Addr()})
	return nil
}

// localZones answers the platform's own zones by asking the daemon's
// authoritative server on loopback. Names under a platform TLD that no IMVU
// holds do not exist: they are never looked up on the network.
type localZones struct {
	addr string
	tlds []string
}

// Resolve implements resolver.Local.
func (l localZones) Resolve(ctx context.Context, q mdns.Question, do bool) (*mdns.Msg, bool) {
	m := new(mdns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	m.Question[0].Qclass = q.Qclass
	m.SetEdns0(1232, do)
	r, err := mdns.ExchangeContext(ctx, m, l.addr)
	if err == nil && r.Rcode != mdns.RcodeRefused {
		return r, true
	}
	for _, t := range l.tlds {
		name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
		if name == t || strings.HasSuffix(name, "."+t) {
			nx := new(mdns.Msg)
			nx.SetQuestion(q.Name, q.Qtype)
			nx.Response, nx.Rcode = true, mdns.RcodeNameError
			return nx, true
		}
	}
	return nil, false
}
