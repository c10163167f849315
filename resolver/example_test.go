package resolver_test

import (
	"context"
	"fmt"
	"net/netip"

	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/resolver"
)

// platformZone answers for nexus.internal. from memory, as the local
// authority does for the platform's own zones.
type platformZone struct{}

func (platformZone) Resolve(_ context.Context, q mdns.Question, _ bool) (*mdns.Msg, bool) {
	if !mdns.IsSubDomain("nexus.internal.", q.Name) {
		return nil, false
	}
	m := new(mdns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	m.Response, m.Authoritative = true, true
	if q.Qtype == mdns.TypeA && q.Name == "gw.nexus.internal." {
		rr, _ := mdns.NewRR("gw.nexus.internal. 300 IN A 10.0.0.1")
		m.Answer = append(m.Answer, rr)
	} else {
		m.Rcode = mdns.RcodeNameError
	}
	return m, true
}

func ExampleResolver_Lookup() {
	r, err := resolver.New(resolver.Config{
		Local: platformZone{},
		// Only the workloads of imvu042 (here, loopback) may ask.
		Attribute: func(src netip.Addr) (string, bool) { return "imvu042", src.IsLoopback() },
	})
	if err != nil {
		panic(err)
	}
	defer r.Close()

	// The platform's own names come from Local, without the network.
	m, err := r.Lookup(context.Background(), "gw.nexus.internal", mdns.TypeA)
	if err != nil {
		panic(err)
	}
	a := m.Answer[0].(*mdns.A)
	fmt.Println(mdns.RcodeToString[m.Rcode], a.Hdr.Name, a.A)
	// Output: NOERROR gw.nexus.internal. 10.0.0.1
}
