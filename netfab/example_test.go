package netfab_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/nexus-core/nexus/netfab"
)

func Example() {
	ctx := context.Background()
	p, err := netfab.New(ctx, netfab.Options{
		Prefix: "nx",
		Uplink: &netfab.EgressPoint{NetNS: "/proc/1/ns/net", Link: "nx-up",
			Local: netip.MustParsePrefix("192.0.2.1/30"), Remote: netip.MustParsePrefix("192.0.2.2/30")},
		OnDrift: func(d netfab.Drift) { log.Printf("reverted %s %s of %s", d.Change, d.Object, d.IMVU) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	err = p.Sync(ctx, netfab.Desired{
		Networks: []netfab.Network{{
			IMVU:    "acme",
			Prefix:  netip.MustParsePrefix("10.77.3.0/24"),
			RateBps: 125_000_000, // 1 Gbit/s each way through the router
			Workloads: []netfab.Workload{
				{Name: "web", Addr: netip.MustParseAddr("10.77.3.2"), Class: netfab.Public},
				{Name: "db", Addr: netip.MustParseAddr("10.77.3.3"), Class: netfab.Private},
			},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	// A container for "web" joins this namespace through its OCI spec.
	fmt.Println(p.WorkloadNS("acme", "web"))
	go p.Run(ctx)
}

func ExamplePlane_Counters() {
	ctx := context.Background()
	p, err := netfab.New(ctx, netfab.Options{Prefix: "nx"})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	totals, err := p.Counters(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for imvu, t := range totals {
		fmt.Println(imvu, "public bytes out:", t[netfab.Public].Out)
	}
}
