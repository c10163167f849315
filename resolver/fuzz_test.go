package resolver

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fuzzUpstream answers every upstream query with the fuzzer's bytes, made
// to look like the reply to that query (ID, QR and our exact question put
// in front of the rest), so that the whole response path runs on them:
// checkReply, classify, referrals, the cache, DNSSEC validation.
type fuzzUpstream struct {
	data  []byte
	calls int
}

func patchReply(query *mdns.Msg, data []byte) []byte {
	if len(data) < 12 {
		return data
	}
	var qbuf [300]byte
	n, err := mdns.PackDomainName(query.Question[0].Name, qbuf[:], 0, nil, false)
	if err != nil {
		return data
	}
	out := make([]byte, 0, len(data)+n+4)
	out = append(out, data[:12]...)
	binary.BigEndian.PutUint16(out[0:], query.Id)
	out[2] |= 0x80                         // QR
	out[2] &^= 0x78                        // opcode QUERY
	binary.BigEndian.PutUint16(out[4:], 1) // QDCOUNT
	out = append(out, qbuf[:n]...)         //
	out = binary.BigEndian.AppendUint16(out, query.Question[0].Qtype)
	out = binary.BigEndian.AppendUint16(out, query.Question[0].Qclass)
	return append(out, data[12:]...)
}

func (f *fuzzUpstream) exchange(_ context.Context, _ netip.AddrPort, q mdns.Question, fl qflags) (*mdns.Msg, error) {
	f.calls++
	query := newQuery(q, fl)
	m, v := checkReply(query, patchReply(query, f.data))
	if v != accept {
		return nil, errMalformed
	}
	if m.Truncated {
		return nil, errMalformed
	}
	return m, nil
}

var (
	fuzzAnchorOnce sync.Once
	fuzzAnchor     string
)

func fuzzResolver(t testing.TB, data []byte, validate bool) (*Resolver, *fuzzUpstream) {
	fuzzAnchorOnce.Do(func() {
		k := &mdns.DNSKEY{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeDNSKEY, Class: mdns.ClassINET, Ttl: 3600}, Flags: 257, Protocol: 3, Algorithm: mdns.ED25519}
		if _, err := k.Generate(256); err != nil {
			t.Fatal(err)
		}
		fuzzAnchor = k.ToDS(mdns.SHA256).String()
	})
	cfg := Config{Attribute: attributeTest, RootHints: []string{"127.0.0.10:53"}, MaxWork: 40, Timeout: 5 * time.Second}
	if validate {
		cfg.TrustAnchors = []string{fuzzAnchor}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	up := &fuzzUpstream{data: data}
	r.up = up
	return r, up
}

// fuzzSeeds are replies (minus the question, which patchReply supplies).
func fuzzSeeds(t testing.TB) [][]byte {
	rr := func(s string) mdns.RR {
		r, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	strip := func(m *mdns.Msg) []byte {
		m.Response = true
		m.Question = []mdns.Question{{Name: "q.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}}
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return append(wire[:12:12], wire[12+3+4:]...)
	}
	var seeds [][]byte
	ref := new(mdns.Msg)
	ref.Ns = []mdns.RR{rr("test. 300 IN NS ns1.test."), rr("test. 300 IN DS 12345 13 2 " + "aa11223344556677889900aabbccddeeff00112233445566778899aabbccddee")}
	ref.Extra = []mdns.RR{rr("ns1.test. 300 IN A 127.0.0.11"), rr("evil.other. 300 IN A 127.0.0.66")}
	seeds = append(seeds, strip(ref))
	ans := new(mdns.Msg)
	ans.Authoritative = true
	ans.Answer = []mdns.RR{rr("www.example.test. 300 IN CNAME alias.example.test."), rr("alias.example.test. 300 IN A 127.1.0.1"),
		rr("alias.example.test. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 example.test. AAAA")}
	seeds = append(seeds, strip(ans))
	nx := new(mdns.Msg)
	nx.Authoritative = true
	nx.Rcode = mdns.RcodeNameError
	nx.Ns = []mdns.RR{rr("example.test. 300 IN SOA ns1.example.test. h.example.test. 1 2 3 4 60"),
		rr("a.example.test. 60 IN NSEC z.example.test. A RRSIG NSEC"),
		rr("a.example.test. 60 IN RRSIG NSEC 13 3 60 20300101000000 20200101000000 12345 example.test. AAAA"),
		rr("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.test. 60 IN NSEC3 1 1 1 - 0p9mhaveqvm6t7vbl5lop2u3t2rp3ton A")}
	seeds = append(seeds, strip(nx))
	dn := new(mdns.Msg)
	dn.Authoritative = true
	dn.Answer = []mdns.RR{rr("example.test. 300 IN DNAME other.test."), rr("www.example.test. 300 IN DNSKEY 257 3 13 AAAA")}
	seeds = append(seeds, strip(dn))
	tc := new(mdns.Msg)
	tc.Truncated = true
	seeds = append(seeds, strip(tc))
	return append(seeds, nil, []byte{0, 0}, make([]byte, 12))
}

func FuzzResponse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint16(mdns.TypeA))
	}
	f.Add([]byte{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}, uint16(mdns.TypeMX))
	f.Fuzz(func(t *testing.T, data []byte, qtype uint16) {
		// The raw bytes, as they would arrive from the network.
		q := newQuery(mdns.Question{Name: "www.example.test.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}, qflags{do: true})
		if m, v := checkReply(q, data); v == accept {
			classify("example.test.", "www.example.test.", mdns.TypeA, m, false)
			classify(".", "www.example.test.", mdns.TypeA, m, true)
		}
		if m := new(mdns.Msg); m.Unpack(data) == nil {
			classify("example.test.", "www.example.test.", qtype, m, false)
		}
		// The whole resolution path, validating and not.
		for _, validate := range []bool{false, true} {
			r, up := fuzzResolver(t, data, validate)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for _, qt := range []uint16{mdns.TypeA, qtype} {
				if qt == 0 {
					continue
				}
				m, _ := r.Lookup(ctx, "www.example.test.", qt)
				if m == nil {
					t.Fatal("Lookup returned no message")
				}
				if _, err := m.Pack(); err != nil {
					t.Fatalf("the answer does not pack: %v\n%v", err, m)
				}
				// And once more, from whatever was cached.
				_, _ = r.Lookup(ctx, "www.example.test.", qt)
			}
			cancel()
			if up.calls > 3*r.cfg.MaxWork {
				t.Fatalf("%d upstream queries for 4 lookups with MaxWork %d", up.calls, r.cfg.MaxWork)
			}
			_ = r.Close()
		}
	})
}
