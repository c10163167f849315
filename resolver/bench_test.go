package resolver

import (
	"context"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// BenchmarkCacheHit: Lookup of an answer already in the cache (validated
// with DNSSEC, a CNAME across zones), in process, from parallel callers.
func BenchmarkCacheHit(b *testing.B) {
	e := newEnv(b, true, nil)
	ctx := context.Background()
	if m, err := e.r.Lookup(ctx, "alias.example.test.", mdns.TypeA); err != nil || !m.AuthenticatedData {
		b.Fatalf("warm-up: %v %v", m, err)
	}
	before := e.h.total()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if m, err := e.r.Lookup(ctx, "alias.example.test.", mdns.TypeA); err != nil || len(m.Answer) == 0 {
				b.Errorf("lookup: %v %v", m, err)
				return
			}
		}
	})
	b.StopTimer()
	if e.h.total() != before {
		b.Errorf("cache hits caused %d upstream queries", e.h.total()-before)
	}
}

// BenchmarkCacheHitUDP: the same over the network (UDP on loopback), one
// client socket per goroutine.
func BenchmarkCacheHitUDP(b *testing.B) {
	e := newEnv(b, true, nil)
	e.ask(b, "127.0.0.1", "www.example.test.", mdns.TypeA)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(mustAddrPort(b, e.r.Addr())))
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		co := &mdns.Conn{Conn: conn}
		q := new(mdns.Msg)
		q.SetQuestion("www.example.test.", mdns.TypeA)
		for pb.Next() {
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if err := co.WriteMsg(q); err != nil {
				b.Error(err)
				return
			}
			m, err := co.ReadMsg()
			if err != nil || len(m.Answer) == 0 {
				b.Errorf("read: %v %v", m, err)
				return
			}
		}
	})
}
