package netfab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// imvuN is a one-workload IMVU numbered i, on 10.100+i/256.i%256.0/24.
func imvuN(i int) Network {
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i % 256), 0}), 24)
	return Network{IMVU: fmt.Sprintf("m%03d", i), Prefix: p,
		Workloads: []Workload{{Name: "w", Addr: p.Addr().Next().Next(), Class: Restricted}}}
}

// BenchmarkSetup measures Sync of one more IMVU (namespace, bridge, one
// workload) onto a plane already holding up to 49 others: ns/op is per
// IMVU. Every 50 IMVUs a new plane starts; all are torn down at the end, as
// the kernel's freeing of a torn-down plane's namespaces would otherwise
// run alongside the next one's setup.
func BenchmarkSetup(b *testing.B) {
	requireNet(b)
	ctx := context.Background()
	var planes []*Plane
	var d Desired
	var worst time.Duration
	fresh := func() {
		p, err := New(ctx, Options{Prefix: "b" + randHex(4)})
		if err != nil {
			b.Fatal(err)
		}
		planes = append(planes, p)
		d = Desired{}
	}
	defer func() {
		for _, p := range planes {
			p.Teardown(ctx)
		}
	}()
	b.StopTimer()
	fresh()
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		if len(d.Networks) == 50 {
			b.StopTimer()
			fresh()
			b.StartTimer()
		}
		d.Networks = append(d.Networks, imvuN(len(d.Networks)))
		start := time.Now()
		if err := planes[len(planes)-1].Sync(ctx, d); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms/IMVU")
}

// BenchmarkDrift measures the time from a hand edit (made through netlink
// or nftables directly, as an admin's tool would) to the end of its
// revert, with Run watching: link down, address added, plane rule deleted,
// in turn. Reported: p50 and max over b.N edits.
func BenchmarkDrift(b *testing.B) {
	requireNet(b)
	ctx, cancel := context.WithCancel(context.Background())
	reverted := make(chan Drift, 64)
	p, err := New(ctx, Options{Prefix: "b" + randHex(4), OnDrift: func(d Drift) {
		select {
		case reverted <- d:
		default:
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Teardown(context.Background())
	d := twoIMVUs()
	d.Grants = []Grant{grantA1B1(8080, "tcp")}
	if err := p.Sync(ctx, d); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	in, err := openNS("", runDir+"/"+p.names.imvu("alpha"), nsOwned)
	if err != nil {
		b.Fatal(err)
	}
	defer in.close()
	r, err := openNS("", runDir+"/"+p.names.router(), nsRouter)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	t := &nftables.Table{Name: p.opts.Prefix, Family: nftables.TableFamilyINet}
	edits := []func() error{
		func() error {
			l, err := in.nl.LinkByName("up0")
			if err != nil {
				return err
			}
			return in.nl.LinkSetDown(l)
		},
		func() error {
			l, err := r.nl.LinkByName(p.names.routerPort("alpha"))
			if err != nil {
				return err
			}
			return r.nl.AddrAdd(l, &netlink.Addr{IPNet: toIPNet(netip.MustParsePrefix("172.16.9.1/24"))})
		},
		func() error {
			rules, err := r.nft.GetRules(t, &nftables.Chain{Name: "out_alpha", Table: t})
			if err != nil {
				return err
			}
			if err := r.nft.DelRule(rules[len(rules)-1]); err != nil {
				return err
			}
			return r.nft.Flush()
		},
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		drain(reverted)
		start := time.Now()
		if err := edits[i%len(edits)](); err != nil {
			b.Fatal(err)
		}
		select {
		case <-reverted:
			lat = append(lat, time.Since(start))
		case <-time.After(5 * time.Second):
			b.Fatalf("edit %d not reverted within 5s", i)
		}
		// Let the revert's own events settle before the next edit.
		time.Sleep(30 * time.Millisecond)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func drain(c chan Drift) {
	for {
		select {
		case <-c:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}
