package resolver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestDNSSEC(t *testing.T) {
	e := newEnv(t, true, nil)
	cases := []struct {
		name  string
		qtype uint16
		opts  []func(*mdns.Msg)
		rcode int
		ad    bool
		addrs []string
		ede   uint16 // expected Extended DNS Error on SERVFAIL (0: none checked)
	}{
		// Secure: the whole chain root -> test. -> example.test. validates.
		{name: "www.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true, addrs: []string{"127.1.0.1"}},
		{name: "www.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withAD), rcode: mdns.RcodeSuccess, ad: true},
		{name: "www.example.test.", qtype: mdns.TypeA, rcode: mdns.RcodeSuccess, ad: false}, // neither DO nor AD asked
		{name: "alias.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true, addrs: []string{"127.4.0.1"}},
		{name: "chain.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true, addrs: []string{"127.4.0.1"}},
		{name: "www.dname.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true, addrs: []string{"127.4.0.1"}},
		{name: "foo.wild.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true, addrs: []string{"127.1.0.7"}},
		{name: "www.noglue.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true},
		{name: "tc.example.test.", qtype: mdns.TypeTXT, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true},
		{name: "example.test.", qtype: mdns.TypeDNSKEY, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true},
		{name: "example.test.", qtype: mdns.TypeDS, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true},
		// Authenticated denial (NSEC).
		{name: "nx.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeNameError, ad: true},
		{name: "www.example.test.", qtype: mdns.TypeTXT, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true},
		{name: "b.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true},          // empty non-terminal
		{name: "foo.wild.example.test.", qtype: mdns.TypeTXT, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true}, // wildcard NODATA
		{name: "nosuchtld.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeNameError, ad: true},
		{name: "insecure.test.", qtype: mdns.TypeDS, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: true}, // proven absent
		// Insecure: a delegation proven to have no DS, unsigned zones.
		{name: "www.insecure.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: false, addrs: []string{"127.2.0.1"}},
		{name: "nx.insecure.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeNameError, ad: false},
		{name: "www.evil.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: false, addrs: []string{"127.5.0.1"}},
		{name: "ns.other.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeSuccess, ad: false},
		// Bogus.
		{name: "bad.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeServerFailure, ede: mdns.ExtendedErrorCodeDNSBogus},
		{name: "bad.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO, withCD), rcode: mdns.RcodeSuccess, ad: false, addrs: []string{"127.1.0.66"}},
		{name: "www.nods.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeServerFailure, ede: mdns.ExtendedErrorCodeDNSBogus},
		{name: "gone.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeServerFailure, ede: mdns.ExtendedErrorCodeDNSBogus},
		{name: "bad.example.test.", qtype: mdns.TypeA, opts: dnsOpts(withDO), rcode: mdns.RcodeServerFailure}, // bogus is not cached
	}
	for _, c := range cases {
		var flags []string
		for _, o := range c.opts {
			m := new(mdns.Msg)
			m.SetQuestion(".", mdns.TypeA)
			m.SetEdns0(1232, false)
			o(m)
			switch {
			case m.IsEdns0().Do() && m.CheckingDisabled:
				flags = append(flags, "do+cd")
			case m.IsEdns0().Do():
				flags = append(flags, "do")
			case m.AuthenticatedData:
				flags = append(flags, "ad")
			}
		}
		t.Run(fmt.Sprintf("%s/%s/%s", c.name, mdns.TypeToString[c.qtype], strings.Join(flags, "")), func(t *testing.T) {
			m := e.ask(t, "127.0.0.1", c.name, c.qtype, c.opts...)
			if m.Rcode != c.rcode || m.AuthenticatedData != c.ad {
				t.Fatalf("%s AD=%v, want %s AD=%v\n%v", mdns.RcodeToString[m.Rcode], m.AuthenticatedData, mdns.RcodeToString[c.rcode], c.ad, m)
			}
			if c.addrs != nil && !slices.Equal(addrs(m), c.addrs) {
				t.Errorf("addresses %v, want %v", addrs(m), c.addrs)
			}
			if c.ede != 0 {
				var got []uint16
				for _, o := range m.IsEdns0().Option {
					if ede, ok := o.(*mdns.EDNS0_EDE); ok {
						got = append(got, ede.InfoCode)
					}
				}
				if !slices.Contains(got, c.ede) {
					t.Errorf("EDE %v, want %d", got, c.ede)
				}
			}
			if c.rcode == mdns.RcodeServerFailure && len(m.Answer) != 0 {
				t.Errorf("SERVFAIL with answers: %v", m.Answer)
			}
			do := len(c.opts) > 0 && m.IsEdns0() != nil && m.IsEdns0().Do()
			if do && c.ad && c.rcode == mdns.RcodeSuccess && len(m.Answer) > 0 && !slices.Contains(types(m.Answer), "RRSIG") {
				t.Errorf("DO answer without RRSIGs: %v", m.Answer)
			}
			if do && c.ad && c.rcode == mdns.RcodeNameError && !slices.Contains(types(m.Ns), "NSEC") {
				t.Errorf("DO NXDOMAIN without NSEC: %v", m.Ns)
			}
		})
	}
	// The same questions, now from the cache, keep their verdicts.
	for _, c := range cases[:6] {
		before := e.h.total()
		m := e.ask(t, "127.0.0.1", c.name, c.qtype, c.opts...)
		if m.Rcode != c.rcode || m.AuthenticatedData != c.ad {
			t.Errorf("cached %s: %s AD=%v, want %s AD=%v", c.name, mdns.RcodeToString[m.Rcode], m.AuthenticatedData, mdns.RcodeToString[c.rcode], c.ad)
		}
		if e.h.total() != before {
			t.Errorf("cached %s caused upstream queries", c.name)
		}
	}
	// Signatures expire: a month later the same data is bogus.
	e.clock.advance(31 * 24 * time.Hour)
	m := e.ask(t, "127.0.0.1", "www.example.test.", mdns.TypeA, withDO)
	if m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("expired signatures: %s AD=%v, want SERVFAIL", mdns.RcodeToString[m.Rcode], m.AuthenticatedData)
	}
}

func dnsOpts(o ...func(*mdns.Msg)) []func(*mdns.Msg) { return o }
func withAD(m *mdns.Msg)                             { m.AuthenticatedData = true }

func TestTrustAnchors(t *testing.T) {
	// A wrong root anchor: nothing under it validates.
	wrong := &mdns.DNSKEY{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeDNSKEY, Class: mdns.ClassINET, Ttl: 3600}, Flags: 257, Protocol: 3, Algorithm: mdns.ED25519}
	if _, err := wrong.Generate(256); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, false, func(c *Config) { c.TrustAnchors = []string{wrong.String()} })
	for _, name := range []string{"www.example.test.", "www.insecure.test.", "nx.example.test."} {
		if m := e.ask(t, "127.0.0.1", name, mdns.TypeA, withDO); m.Rcode != mdns.RcodeServerFailure {
			t.Errorf("wrong anchor, %s: %s, want SERVFAIL", name, mdns.RcodeToString[m.Rcode])
		}
	}

	// An anchor for example.test. alone (its DNSKEY, fetched from the
	// server): that zone validates, the rest is insecure.
	h := buildHierarchy(t)
	ex := h.servers["example"].zones[0]
	r, err := New(Config{
		RootHints:    []string{fmt.Sprintf("127.0.0.10:%d", h.port)},
		UpstreamPort: uint16(h.port),
		TrustAnchors: []string{ex.ksk.String()},
		Attribute:    attributeTest,
		QueryTimeout: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		name  string
		rcode int
		ad    bool
	}{
		{"www.example.test.", mdns.RcodeSuccess, true},
		{"nx.example.test.", mdns.RcodeNameError, true},
		{"www.noglue.test.", mdns.RcodeSuccess, false}, // signed, but no anchor above it
		{"www.insecure.test.", mdns.RcodeSuccess, false},
		{"bad.example.test.", mdns.RcodeServerFailure, false},
	} {
		m, _ := r.Lookup(context.Background(), c.name, mdns.TypeA)
		if m.Rcode != c.rcode || m.AuthenticatedData != c.ad {
			t.Errorf("example.test. anchor, %s: %s AD=%v, want %s AD=%v", c.name, mdns.RcodeToString[m.Rcode], m.AuthenticatedData, mdns.RcodeToString[c.rcode], c.ad)
		}
	}
	if _, err := New(Config{Attribute: attributeTest, TrustAnchors: []string{"example. 300 IN A 127.0.0.1"}}); err == nil {
		t.Error("an A record was accepted as a trust anchor")
	}
}

// nsec3Chain builds the NSEC3 records of a zone holding names (hashed with
// no salt and one iteration); optOut sets the opt-out flag everywhere.
func nsec3Chain(t *testing.T, zone string, names map[string][]uint16, optOut bool) []*mdns.NSEC3 {
	t.Helper()
	type hn struct {
		hash  string
		types []uint16
	}
	var hs []hn
	for n, ts := range names {
		hs = append(hs, hn{mdns.HashName(n, mdns.SHA1, 1, ""), ts})
	}
	slices.SortFunc(hs, func(a, b hn) int { return strings.Compare(a.hash, b.hash) })
	var out []*mdns.NSEC3
	for i, h := range hs {
		n := &mdns.NSEC3{Hdr: mdns.RR_Header{Name: strings.ToLower(h.hash) + "." + zone, Rrtype: mdns.TypeNSEC3, Class: mdns.ClassINET, Ttl: 60},
			Hash: mdns.SHA1, Iterations: 1, SaltLength: 0, Salt: "", HashLength: 20, NextDomain: hs[(i+1)%len(hs)].hash, TypeBitMap: h.types}
		if optOut {
			n.Flags = 1
		}
		out = append(out, n)
	}
	return out
}

func TestDenialProofs(t *testing.T) {
	zone := "z.test."
	names := map[string][]uint16{
		"z.test.":        {mdns.TypeSOA, mdns.TypeNS, mdns.TypeDNSKEY},
		"www.z.test.":    {mdns.TypeA},
		"b.z.test.":      {}, // empty non-terminal (has an NSEC3 per RFC 5155)
		"a.b.z.test.":    {mdns.TypeA},
		"sub.z.test.":    {mdns.TypeNS},
		"*.wild.z.test.": {mdns.TypeA},
		"wild.z.test.":   {},
	}
	chain := nsec3Chain(t, zone, names, false)
	optChain := nsec3Chain(t, zone, names, true)
	nx := []struct {
		name   string
		ok     bool
		optOut bool
	}{
		{"nope.z.test.", true, false},
		{"x.y.nope.z.test.", true, false},
		{"www.z.test.", false, false}, // exists
		{"b.z.test.", false, false},   // exists (ENT)
	}
	for _, c := range nx {
		ok, optOut, usable := nsec3NXDomain(chain, c.name)
		if !usable || ok != c.ok || optOut != c.optOut {
			t.Errorf("NSEC3 NXDOMAIN %s: ok=%v optOut=%v usable=%v, want ok=%v", c.name, ok, optOut, usable, c.ok)
		}
	}
	if ok, optOut, _ := nsec3NXDomain(optChain, "nope.z.test."); !ok || !optOut {
		t.Errorf("opt-out NXDOMAIN: ok=%v optOut=%v, want insecure", ok, optOut)
	}
	nodata := []struct {
		name  string
		qtype uint16
		ok    bool
	}{
		{"www.z.test.", mdns.TypeTXT, true},
		{"www.z.test.", mdns.TypeA, false},
		{"b.z.test.", mdns.TypeA, true},
		{"sub.z.test.", mdns.TypeDS, true},
		{"sub.z.test.", mdns.TypeA, false}, // a delegation: a referral, not NODATA
		{"nope.z.test.", mdns.TypeA, false},
	}
	for _, c := range nodata {
		if ok, _, _ := nsec3NoData(chain, c.name, c.qtype); ok != c.ok {
			t.Errorf("NSEC3 NODATA %s %s: %v, want %v", c.name, mdns.TypeToString[c.qtype], ok, c.ok)
		}
	}
	heavy := nsec3Chain(t, zone, names, false)
	for _, n := range heavy {
		n.Iterations = 500
	}
	if _, _, usable := nsec3NXDomain(heavy, "nope.z.test."); usable {
		t.Error("NSEC3 with 500 iterations must be treated as insecure")
	}

	// NSEC: hand-built chain of z.test.
	mk := func(owner, next string, ts ...uint16) *mdns.NSEC {
		return &mdns.NSEC{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeNSEC, Class: mdns.ClassINET}, NextDomain: next, TypeBitMap: ts}
	}
	nsecs := []*mdns.NSEC{
		mk("z.test.", "a.b.z.test.", mdns.TypeSOA, mdns.TypeNS),
		mk("a.b.z.test.", "sub.z.test.", mdns.TypeA),
		mk("sub.z.test.", "www.z.test.", mdns.TypeNS),
		mk("www.z.test.", "z.test.", mdns.TypeA),
	}
	for _, c := range []struct {
		name string
		want bool
	}{
		{"nope.z.test.", true}, {"zzz.z.test.", true}, {"www.z.test.", false},
		{"x.sub.z.test.", false}, // below a delegation: the parent's NSEC proves nothing there
		{"other.test.", false},   // outside the zone
	} {
		if got := nsecNXDomain(nsecs, c.name); got != c.want {
			t.Errorf("NSEC NXDOMAIN %s: %v, want %v", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name  string
		qtype uint16
		want  bool
	}{
		{"www.z.test.", mdns.TypeTXT, true}, {"www.z.test.", mdns.TypeA, false},
		{"b.z.test.", mdns.TypeA, true}, // empty non-terminal
		{"sub.z.test.", mdns.TypeDS, true}, {"sub.z.test.", mdns.TypeA, false},
		{"z.test.", mdns.TypeDS, false}, // the apex NSEC cannot deny the zone's own DS
		{"nope.z.test.", mdns.TypeA, false},
	} {
		if got := nsecNoData(nsecs, c.name, c.qtype); got != c.want {
			t.Errorf("NSEC NODATA %s %s: %v, want %v", c.name, mdns.TypeToString[c.qtype], got, c.want)
		}
	}
	// Canonical order (RFC 4034 6.1 example).
	order := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", "\\001.z.example.", "*.z.example.", "\\200.z.example."}
	for i := 1; i < len(order); i++ {
		if canonicalCompare(order[i-1], order[i]) >= 0 {
			t.Errorf("canonical order: %s should sort before %s", order[i-1], order[i])
		}
	}
}
