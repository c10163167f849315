package dns

import (
	"fmt"
	"testing"

	mdns "github.com/miekg/dns"
)

// benchZone is the shape of the bench/ workload: 10,000 A records and an MX.
func benchZone(b *testing.B, signed bool) *Compiled {
	b.Helper()
	recs := []Record{{"ns1", "A", 3600, "127.0.0.1"}, {"@", "MX", 3600, "10 mail"}, {"mail", "A", 3600, "127.0.0.2"}, {"@", "TXT", 3600, `"v=spf1 mx -all"`}}
	for i := 0; i < 10000; i++ {
		recs = append(recs, Record{fmt.Sprintf("host%d", i), "A", 3600, fmt.Sprintf("10.0.%d.%d", i>>8, i&255)})
	}
	z := Zone{Origin: "imvu042.world", IMVU: "imvu042", Serial: 1, Records: recs}
	if signed {
		z.Key = testKey(b)
	}
	c, err := Build(z, []string{"ns1"}, "")
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkServeDNS measures the handler alone (parse, look up, write the
// response), as each UDP reader runs it; the sockets are not part of it.
func BenchmarkServeDNS(b *testing.B) {
	s, err := NewServer(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	s.SetZone(benchZone(b, false))
	signed, err := NewServer(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	signed.SetZone(benchZone(b, true))
	query := func(name string, qtype uint16, do bool) []byte {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		m.SetEdns0(1232, do)
		p, _ := m.Pack()
		return p
	}
	cases := []struct {
		name string
		s    *Server
		q    []byte
	}{
		{"A", s, query("host1234.imvu042.world.", mdns.TypeA, false)},
		{"NXDOMAIN", s, query("nx4711.imvu042.world.", mdns.TypeA, false)},
		{"MX", s, query("imvu042.world.", mdns.TypeMX, false)},
		{"signed/A", signed, query("host1234.imvu042.world.", mdns.TypeA, true)},
		{"signed/NXDOMAIN", signed, query("nx4711.imvu042.world.", mdns.TypeA, true)},
		{"signed/without-DO", signed, query("host1234.imvu042.world.", mdns.TypeA, false)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			w := tc.s.newWorker(0, true)
			out := make([]byte, 0, 65535)
			if r := tc.s.handle(w, tc.q, out, false); len(r) < 12 || r[3]&0xf == mdns.RcodeServerFailure {
				b.Fatalf("bad response % x", r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tc.s.handle(w, tc.q, out, false)
			}
		})
	}
}

func BenchmarkBuild10k(b *testing.B) {
	var recs []Record
	for i := 0; i < 10000; i++ {
		recs = append(recs, Record{fmt.Sprintf("host%d", i), "A", 3600, fmt.Sprintf("10.0.%d.%d", i>>8, i&255)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Build(Zone{Origin: "imvu042.world.", Records: recs}, []string{"ns.example.net."}, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign is one online signature: what a signed answer costs the
// first time (then it comes from the cache).
func BenchmarkSign(b *testing.B) {
	c := benchZone(b, true)
	set := c.nodes[mustWire("host1.imvu042.world.")].get(mdns.TypeA).rrs
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := c.sign(set, timeNow(), sigValidity); err != nil {
			b.Fatal(err)
		}
	}
}
