package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestRecursion(t *testing.T) {
	e := newEnv(t, false, nil)
	cases := []struct {
		name   string
		qtype  uint16
		rcode  int
		addrs  []string // A records expected in the answer, in order
		types  []string // RR types expected in the answer, in order (if set)
		nsType string   // type expected first in the authority section (if set)
	}{
		{name: "www.example.test.", qtype: mdns.TypeA, addrs: []string{"127.1.0.1"}},
		{name: "WWW.Example.TEST.", qtype: mdns.TypeA, addrs: []string{"127.1.0.1"}},
		{name: "mail.example.test.", qtype: mdns.TypeMX, types: []string{"MX"}},
		{name: "inzone.example.test.", qtype: mdns.TypeA, types: []string{"CNAME", "A"}, addrs: []string{"127.1.0.1"}},
		{name: "alias.example.test.", qtype: mdns.TypeA, types: []string{"CNAME", "A"}, addrs: []string{"127.4.0.1"}},
		{name: "chain.example.test.", qtype: mdns.TypeA, types: []string{"CNAME", "CNAME", "A"}, addrs: []string{"127.4.0.1"}},
		{name: "www.dname.example.test.", qtype: mdns.TypeA, types: []string{"DNAME", "CNAME", "A"}, addrs: []string{"127.4.0.1"}},
		{name: "www.noglue.test.", qtype: mdns.TypeA, addrs: []string{"127.4.0.1"}},
		{name: "www.evil.test.", qtype: mdns.TypeA, addrs: []string{"127.5.0.1"}},
		{name: "www.insecure.test.", qtype: mdns.TypeA, addrs: []string{"127.2.0.1"}},
		{name: "foo.wild.example.test.", qtype: mdns.TypeA, addrs: []string{"127.1.0.7"}},
		{name: "a.b.example.test.", qtype: mdns.TypeA, addrs: []string{"127.1.0.8"}},
		{name: "b.example.test.", qtype: mdns.TypeA, rcode: mdns.RcodeSuccess, nsType: "SOA"},
		{name: "nx.example.test.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, nsType: "SOA"},
		{name: "www.example.test.", qtype: mdns.TypeTXT, rcode: mdns.RcodeSuccess, nsType: "SOA"},
		{name: "nosuchtld.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, nsType: "SOA"},
		{name: "loop1.example.test.", qtype: mdns.TypeA, rcode: mdns.RcodeServerFailure},
		{name: "tolocal.example.test.", qtype: mdns.TypeA, types: []string{"CNAME", "A"}, addrs: []string{"10.0.0.1"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.name, mdns.TypeToString[c.qtype]), func(t *testing.T) {
			m := e.ask(t, "127.0.0.1", c.name, c.qtype)
			if m.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s\n%v", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[c.rcode], m)
			}
			if !m.RecursionAvailable {
				t.Error("RA not set")
			}
			if m.Question[0].Name != c.name {
				t.Errorf("question %q, want it echoed as %q", m.Question[0].Name, c.name)
			}
			if c.addrs != nil && !slices.Equal(addrs(m), c.addrs) {
				t.Errorf("addresses %v, want %v\n%v", addrs(m), c.addrs, m)
			}
			if c.types != nil && !slices.Equal(types(m.Answer), c.types) {
				t.Errorf("answer types %v, want %v\n%v", types(m.Answer), c.types, m)
			}
			if c.rcode != mdns.RcodeSuccess || c.nsType != "" {
				if len(m.Answer) != 0 && c.rcode != mdns.RcodeServerFailure {
					t.Errorf("negative answer has records: %v", m.Answer)
				}
			}
			if c.nsType != "" && (len(m.Ns) == 0 || types(m.Ns)[0] != c.nsType) {
				t.Errorf("authority %v, want %s first", types(m.Ns), c.nsType)
			}
			for _, rr := range append(append([]mdns.RR{}, m.Answer...), m.Ns...) {
				if rr.Header().Rrtype == mdns.TypeRRSIG || rr.Header().Rrtype == mdns.TypeNSEC {
					t.Errorf("DNSSEC record %s handed to a client without DO", rr)
				}
			}
		})
	}
	// The NS name without glue was resolved from the root, the trap never
	// asked.
	if n := e.h.servers["trap"].count(); n != 0 {
		t.Errorf("out-of-bailiwick glue was used: the trap got %d queries", n)
	}
	if n := e.h.servers["other"].count(); n == 0 {
		t.Error("ns.hosting.other. was never looked up at other.")
	}
}

// TestRecursionTCP: a client over TCP, and a reply that forces the resolver
// itself onto TCP.
func TestTruncationAndTCP(t *testing.T) {
	e := newEnv(t, false, nil)
	m := askFrom(t, e.r.Addr(), "127.0.0.1", "tcp", "tc.example.test.", mdns.TypeTXT)
	if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("TC answer over TCP: %v", m)
	}
	if txt := m.Answer[0].(*mdns.TXT); len(strings.Join(txt.Txt, "")) != 750 {
		t.Errorf("TXT %d bytes, want 750", len(strings.Join(txt.Txt, "")))
	}
	var udp, tcp int
	for _, q := range e.h.servers["example"].queries() {
		if strings.EqualFold(q.name, "tc.example.test.") {
			if q.tcp {
				tcp++
			} else {
				udp++
			}
		}
	}
	if udp != 1 || tcp != 1 {
		t.Errorf("upstream saw %d UDP and %d TCP queries for tc., want 1 and 1", udp, tcp)
	}
	// Over UDP without EDNS, the answer does not fit 512 bytes: TC to the
	// client, which dig or a stub then retries on TCP.
	m = askFrom(t, e.r.Addr(), "127.0.0.1", "udp", "tc.example.test.", mdns.TypeTXT, func(m *mdns.Msg) { m.Extra = nil })
	if !m.Truncated {
		t.Errorf("a 750-byte answer to a 512-byte client is not truncated: %v", m)
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, false, nil)
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		ttl   time.Duration // when it must be asked again
	}{
		{"www.example.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},
		{"alias.example.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},      // CNAME across zones
		{"chain.example.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},      // two CNAMEs
		{"www.dname.example.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},  // DNAME
		{"bar.wild.example.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},   // wildcard
		{"tc.example.test.", mdns.TypeTXT, mdns.RcodeSuccess, 300 * time.Second},       // learnt over TCP
		{"www.noglue.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},         // NS without glue
		{"nx.example.test.", mdns.TypeA, mdns.RcodeNameError, 60 * time.Second},        // NXDOMAIN: SOA minimum
		{"nx.example.test.", mdns.TypeAAAA, mdns.RcodeNameError, 60 * time.Second},     // NXDOMAIN covers every type
		{"x.y.z.nx2.example.test.", mdns.TypeA, mdns.RcodeNameError, 60 * time.Second}, // deep NXDOMAIN
		{"www.example.test.", mdns.TypeTXT, mdns.RcodeSuccess, 60 * time.Second},       // NODATA
		{"b.example.test.", mdns.TypeA, mdns.RcodeSuccess, 60 * time.Second},           // empty non-terminal
		{"alias.example.test.", mdns.TypeTXT, mdns.RcodeSuccess, 60 * time.Second},     // CNAME, then NODATA
		{"nx.dname.example.test.", mdns.TypeA, mdns.RcodeNameError, 60 * time.Second},  // DNAME, then NXDOMAIN
		{"nothing.insecure.test.", mdns.TypeA, mdns.RcodeNameError, 60 * time.Second},  // another zone
		{"nosuchtld.", mdns.TypeA, mdns.RcodeNameError, 60 * time.Second},              // NXDOMAIN from the root
		{"ns.other.", mdns.TypeAAAA, mdns.RcodeSuccess, 60 * time.Second},              // NODATA in an unsigned TLD
		{"example.test.", mdns.TypeNS, mdns.RcodeSuccess, 300 * time.Second},           // NS from the child, not the referral
		{"ns1.example.test.", mdns.TypeA, mdns.RcodeSuccess, 300 * time.Second},        // a glue name, asked as an answer
		{"gw.nexus.internal.", mdns.TypeA, mdns.RcodeSuccess, -1},                      // Local: never upstream
		{"nope.nexus.internal.", mdns.TypeA, mdns.RcodeNameError, -1},                  // Local NXDOMAIN
		{"loop1.example.test.", mdns.TypeA, mdns.RcodeServerFailure, 0},                // nor loops
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.name, mdns.TypeToString[c.qtype]), func(t *testing.T) {
			before := e.h.total()
			m := e.ask(t, "127.0.0.1", c.name, c.qtype)
			if m.Rcode != c.rcode {
				t.Fatalf("rcode %s, want %s\n%v", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[c.rcode], m)
			}
			first := e.h.total()
			if c.ttl < 0 {
				if first != before {
					t.Fatalf("a Local name caused %d upstream queries", first-before)
				}
				return
			}
			if first == before && c.rcode != mdns.RcodeServerFailure {
				// Already learnt by an earlier case; still fine.
				t.Logf("first query already served from the cache")
			}
			m2 := e.ask(t, "127.0.0.1", c.name, c.qtype)
			if m2.Rcode != c.rcode {
				t.Fatalf("second rcode %s, want %s", mdns.RcodeToString[m2.Rcode], mdns.RcodeToString[c.rcode])
			}
			second := e.h.total()
			if c.ttl == 0 {
				if second == first {
					t.Errorf("a failure was served from the cache")
				}
				return
			}
			if second != first {
				t.Fatalf("second query caused %d upstream queries, want 0 (cached)", second-first)
			}
			if len(m2.Answer) != len(m.Answer) || len(m2.Ns) != len(m.Ns) {
				t.Errorf("cached answer differs:\nfirst  %v\nsecond %v", m, m2)
			}
			for _, rr := range m2.Answer {
				if rr.Header().Ttl > 300 {
					t.Errorf("TTL %d above the zone's 300: %s", rr.Header().Ttl, rr)
				}
			}
			for _, rr := range m2.Ns {
				if rr.Header().Ttl > uint32(c.ttl/time.Second) {
					t.Errorf("negative TTL %d above the SOA minimum %v: %s", rr.Header().Ttl, c.ttl, rr)
				}
			}
		})
	}
	// Expiry: once the clock passes the TTL, the names are asked again.
	t.Run("expiry", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			qtype uint16
			ttl   time.Duration
		}{
			{"nx3.example.test.", mdns.TypeA, 60 * time.Second},
			{"mx.example.test.", mdns.TypeA, 300 * time.Second},
		} {
			e.ask(t, "127.0.0.1", c.name, c.qtype)
			before := e.h.total()
			e.clock.advance(c.ttl - 5*time.Second)
			e.ask(t, "127.0.0.1", c.name, c.qtype)
			if e.h.total() != before {
				t.Errorf("%s asked again %v before its TTL ran out", c.name, 5*time.Second)
			}
			e.clock.advance(10 * time.Second)
			e.ask(t, "127.0.0.1", c.name, c.qtype)
			if e.h.total() == before {
				t.Errorf("%s still served from the cache after its TTL (%v)", c.name, c.ttl)
			}
		}
	})
}

func TestCacheLRU(t *testing.T) {
	c := newCache(8)
	now := time.Now()
	put := func(name string) {
		rr, _ := mdns.NewRR(name + " 300 IN A 127.0.0.1")
		c.put(&entry{key: cacheKey{name, mdns.TypeA, kindAnswer}, rrs: []mdns.RR{rr}, sec: secUnchecked, expire: now.Add(time.Minute)}, now)
	}
	for i := range 8 {
		put(fmt.Sprintf("n%d.", i))
	}
	if c.get(cacheKey{"n0.", mdns.TypeA, kindAnswer}, now) == nil { // n0 is now the most recent
		t.Fatal("n0 missing")
	}
	put("n8.")
	if c.get(cacheKey{"n1.", mdns.TypeA, kindAnswer}, now) != nil {
		t.Error("the least recently used entry (n1) was not evicted")
	}
	if c.get(cacheKey{"n0.", mdns.TypeA, kindAnswer}, now) == nil || c.get(cacheKey{"n8.", mdns.TypeA, kindAnswer}, now) == nil {
		t.Error("a recently used entry was evicted")
	}
	if c.len() != 8 {
		t.Errorf("len %d, want 8", c.len())
	}
	if c.get(cacheKey{"n0.", mdns.TypeA, kindAnswer}, now.Add(2*time.Minute)) != nil {
		t.Error("an expired entry was returned")
	}
	// A bigger cache is sharded and still bounded.
	big := newCache(200)
	for i := range 1000 {
		rr, _ := mdns.NewRR(fmt.Sprintf("n%d. 300 IN A 127.0.0.1", i))
		big.put(&entry{key: cacheKey{fmt.Sprintf("n%d.", i), mdns.TypeA, kindAnswer}, rrs: []mdns.RR{rr}, expire: now.Add(time.Minute)}, now)
	}
	if n := big.len(); n > 200 || n < 150 {
		t.Errorf("cache of 200 holds %d entries", n)
	}
}

func TestOutOfBailiwickGlue(t *testing.T) {
	// evil.test.'s referral carries glue for ns.hosting.other. pointing at
	// the trap: test. may not speak for other., so the glue is dropped and
	// the name is looked up from the root.
	e := newEnv(t, false, nil)
	for range 3 {
		m := e.ask(t, "127.0.0.1", "www.evil.test.", mdns.TypeA)
		if got := addrs(m); !slices.Equal(got, []string{"127.5.0.1"}) {
			t.Fatalf("www.evil.test. = %v, want 127.5.0.1", got)
		}
	}
	if n := e.h.servers["trap"].count(); n != 0 {
		t.Errorf("the trap named by out-of-bailiwick glue got %d queries", n)
	}
	var askedOther bool
	for _, q := range e.h.servers["other"].queries() {
		askedOther = askedOther || strings.EqualFold(q.name, "ns.hosting.other.")
	}
	if !askedOther {
		t.Error("ns.hosting.other. was not looked up at its own zone")
	}
}

func TestQnameCaseRandomisation(t *testing.T) {
	e := newEnv(t, false, nil)
	for i := range 30 {
		m := e.ask(t, "127.0.0.1", fmt.Sprintf("host%d.wild.example.test.", i), mdns.TypeA)
		if m.Rcode != mdns.RcodeSuccess {
			t.Fatalf("rcode %s", mdns.RcodeToString[m.Rcode])
		}
	}
	mixed, total := 0, 0
	for _, q := range e.h.servers["example"].queries() {
		if !strings.Contains(strings.ToLower(q.name), "wild.example.test.") {
			continue
		}
		total++
		if q.name != strings.ToLower(q.name) && q.name != strings.ToUpper(q.name) {
			mixed++
		}
	}
	if total < 30 {
		t.Fatalf("the example server saw %d queries, want at least 30", total)
	}
	if mixed < total*8/10 {
		t.Errorf("only %d of %d upstream names had mixed case", mixed, total)
	}
	// A reply whose question comes back in the wrong case is dropped: the
	// server never sends the right one, so the answer is SERVFAIL and the
	// poisoned address never reaches the client.
	m := e.ask(t, "127.0.0.1", "wrongcase.example.test.", mdns.TypeA)
	if m.Rcode != mdns.RcodeServerFailure || len(m.Answer) != 0 {
		t.Errorf("wrong-case reply accepted: %v", m)
	}
	if got := counterValue(t, e.r.met.drops, "case"); got < 1 {
		t.Errorf("dropped{reason=case} = %v, want >= 1", got)
	}
}

func TestRandomIDsAndPorts(t *testing.T) {
	e := newEnv(t, false, nil)
	const n = 60
	for i := range n {
		e.ask(t, "127.0.0.1", fmt.Sprintf("r%d.wild.example.test.", i), mdns.TypeA)
	}
	var ids, ports []int
	for _, q := range e.h.servers["example"].queries() {
		if strings.HasPrefix(strings.ToLower(q.name), "r") && !q.tcp {
			ids = append(ids, int(q.id))
			ports = append(ports, q.port)
		}
	}
	if len(ids) < n {
		t.Fatalf("saw %d queries, want %d", len(ids), n)
	}
	distinct := func(xs []int) int { s := slices.Clone(xs); slices.Sort(s); return len(slices.Compact(s)) }
	sequential := func(xs []int) int {
		k := 0
		for i := 1; i < len(xs); i++ {
			if d := xs[i] - xs[i-1]; d >= -2 && d <= 2 {
				k++
			}
		}
		return k
	}
	if d := distinct(ids); d < len(ids)-3 {
		t.Errorf("%d distinct IDs in %d queries", d, len(ids))
	}
	if d := distinct(ports); d < len(ports)-3 {
		t.Errorf("%d distinct source ports in %d queries", d, len(ports))
	}
	// A counter or a clock would climb: random values go up about half the
	// time.
	rising := func(xs []int) int {
		k := 0
		for i := 1; i < len(xs); i++ {
			if xs[i] > xs[i-1] {
				k++
			}
		}
		return k
	}
	for what, xs := range map[string][]int{"IDs": ids, "ports": ports} {
		if r := rising(xs); r < len(xs)/5 || r > len(xs)*4/5 {
			t.Errorf("%s rose %d times in %d queries: not random", what, r, len(xs)-1)
		}
	}
	if s := sequential(ids); s > 3 {
		t.Errorf("%d consecutive IDs within 2 of each other: %v", s, ids)
	}
	if s := sequential(ports); s > 3 {
		t.Errorf("%d consecutive ports within 2 of each other: %v", s, ports)
	}
	lo, hi := slices.Min(ports), slices.Max(ports)
	if hi-lo < 10000 {
		t.Errorf("source ports span only %d..%d", lo, hi)
	}
}

func TestSpoofedRepliesIgnored(t *testing.T) {
	e := newEnv(t, false, nil)
	cases := []struct {
		name, want, reason string
	}{
		{"spoofid.example.test.", "127.1.0.3", "id"},
		{"spoofq.example.test.", "127.1.0.4", "question"},
		{"spoofcase.example.test.", "127.1.0.5", "case"},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			before := counterValue(t, e.r.met.drops, c.reason)
			m := e.ask(t, "127.0.0.1", c.name, mdns.TypeA)
			if got := addrs(m); !slices.Equal(got, []string{c.want}) {
				t.Fatalf("answer %v, want %s (the spoof 6.6.6.6 must be ignored)", got, c.want)
			}
			if after := counterValue(t, e.r.met.drops, c.reason); after <= before {
				t.Errorf("dropped{reason=%s} did not grow (%v)", c.reason, after)
			}
		})
	}
	// checkReply on its own.
	q := newQuery(mdns.Question{Name: "www.example.test.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}, qflags{})
	good := new(mdns.Msg)
	good.SetReply(q)
	mut := []struct {
		name string
		f    func(m *mdns.Msg)
		want verdict
	}{
		{"ok", func(*mdns.Msg) {}, accept},
		{"id", func(m *mdns.Msg) { m.Id++ }, dropID},
		{"not a response", func(m *mdns.Msg) { m.Response = false }, dropMalformed},
		{"other type", func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeAAAA }, dropQuestion},
		{"other name", func(m *mdns.Msg) { m.Question[0].Name = "www.example.tesu." }, dropQuestion},
		{"case", func(m *mdns.Msg) { m.Question[0].Name = swapCase(m.Question[0].Name) }, dropCase},
		{"no question", func(m *mdns.Msg) { m.Question = nil }, dropQuestion},
		{"two questions", func(m *mdns.Msg) { m.Question = append(m.Question, m.Question[0]) }, dropQuestion},
	}
	for _, c := range mut {
		m := good.Copy()
		c.f(m)
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, v := checkReply(q, wire); v != c.want {
			if c.name == "case" && q.Question[0].Name == swapCase(q.Question[0].Name) {
				continue
			}
			t.Errorf("%s: verdict %s, want %s", c.name, verdictNames[v], verdictNames[c.want])
		}
	}
}

func TestLocalNeverLeavesTheProcess(t *testing.T) {
	e := newEnv(t, true, nil)
	cases := []struct {
		name  string
		rcode int
		addrs []string
	}{
		{"gw.nexus.internal.", mdns.RcodeSuccess, []string{"10.0.0.1"}},
		{"GW.Nexus.Internal.", mdns.RcodeSuccess, []string{"10.0.0.1"}},
		{"nope.nexus.internal.", mdns.RcodeNameError, nil},
		{"x.y.nexus.internal.", mdns.RcodeNameError, nil},
		{"ext.nexus.internal.", mdns.RcodeSuccess, []string{"127.1.0.1"}},  // Local CNAME to the network
		{"tolocal.example.test.", mdns.RcodeSuccess, []string{"10.0.0.1"}}, // network CNAME into Local
		{"ext.nexus.internal.", mdns.RcodeSuccess, []string{"127.1.0.1"}},  // again, the tail from the cache
		{"tolocal.example.test.", mdns.RcodeSuccess, []string{"10.0.0.1"}}, // again, the head from the cache
		{"www.example.test.", mdns.RcodeSuccess, []string{"127.1.0.1"}},    // the network still works
	}
	for _, c := range cases {
		m := e.ask(t, "127.0.0.1", c.name, mdns.TypeA)
		if m.Rcode != c.rcode || !slices.Equal(addrs(m), c.addrs) {
			t.Errorf("%s: %s %v, want %s %v", c.name, mdns.RcodeToString[m.Rcode], addrs(m), mdns.RcodeToString[c.rcode], c.addrs)
		}
	}
	if _, err := e.r.Lookup(context.Background(), "gw.nexus.internal", mdns.TypeMX); err != nil {
		t.Errorf("Lookup of a Local name: %v", err)
	}
	for _, q := range e.h.allQueries() {
		if strings.Contains(strings.ToLower(q.name), "nexus.internal") {
			t.Errorf("a server saw %q: Local names must never leave the process", q.name)
		}
	}
	if e.local.calls.Load() == 0 {
		t.Error("Local was never asked")
	}
}

func TestUnattributedRefused(t *testing.T) {
	e := newEnv(t, false, nil)
	for _, c := range []struct{ src, network string }{
		{"127.0.0.5", "udp"}, {"127.0.0.5", "tcp"}, {"127.0.0.99", "udp"}, {"127.0.0.3", "tcp"},
	} {
		before := e.h.total()
		m := askFrom(t, e.r.Addr(), c.src, c.network, "www.example.test.", mdns.TypeA)
		if m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 {
			t.Errorf("%s over %s: %s %v, want REFUSED and nothing", c.src, c.network, mdns.RcodeToString[m.Rcode], m.Answer)
		}
		if e.h.total() != before {
			t.Errorf("%s: a refused query caused upstream traffic", c.src)
		}
	}
	if got := e.r.Counts(); len(got) != 0 {
		t.Errorf("refused queries were counted: %v", got)
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without Attribute must fail (never an open resolver)")
	}
}

func TestPerIMVUCounts(t *testing.T) {
	e := newEnv(t, false, nil)
	queries := []struct{ src, network, name string }{
		{"127.0.0.1", "udp", "www.example.test."},
		{"127.0.0.1", "udp", "www.example.test."},
		{"127.0.0.1", "tcp", "nx.example.test."},
		{"127.0.0.2", "udp", "gw.nexus.internal."},
		{"127.0.0.2", "tcp", "loop1.example.test."}, // SERVFAIL is answered too
		{"127.0.0.7", "udp", "www.example.test."},   // refused: not counted
	}
	for _, q := range queries {
		askFrom(t, e.r.Addr(), q.src, q.network, q.name, mdns.TypeA)
	}
	want := map[string]uint64{"imvu-a": 3, "imvu-b": 2}
	got := e.r.Counts()
	if len(got) != len(want) || got["imvu-a"] != 3 || got["imvu-b"] != 2 {
		t.Errorf("Counts() = %v, want %v", got, want)
	}
}

func TestLookup(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	m, err := e.r.Lookup(ctx, "mail.example.test", mdns.TypeMX)
	if err != nil || len(m.Answer) == 0 {
		t.Fatalf("MX lookup: %v %v", m, err)
	}
	if mx, ok := m.Answer[0].(*mdns.MX); !ok || mx.Mx != "mx.example.test." || !m.AuthenticatedData {
		t.Errorf("MX answer %v (AD %v)", m.Answer, m.AuthenticatedData)
	}
	m, err = e.r.Lookup(ctx, "nx.example.test", mdns.TypeMX)
	if err != nil || m.Rcode != mdns.RcodeNameError {
		t.Errorf("NXDOMAIN lookup: rcode %d, err %v", m.Rcode, err)
	}
	m, err = e.r.Lookup(ctx, "bad.example.test", mdns.TypeA)
	if !errors.Is(err, ErrServFail) || m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("bogus lookup: rcode %d, err %v", m.Rcode, err)
	}
	if _, err := e.r.Lookup(ctx, "bad..name", mdns.TypeA); err == nil {
		t.Error("a malformed name was accepted")
	}
}

// TestForwarding runs a second resolver that forwards to the first and
// validates on its own.
func TestForwarding(t *testing.T) {
	e := newEnv(t, false, nil)
	fwd, err := New(Config{
		Forwarders:   []string{e.r.Addr()},
		TrustAnchors: []string{e.h.anchor},
		Attribute:    attributeTest,
		QueryTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fwd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
		ad    bool
	}{
		{"www.example.test.", mdns.TypeA, mdns.RcodeSuccess, true},
		{"alias.example.test.", mdns.TypeA, mdns.RcodeSuccess, true},
		{"nx.example.test.", mdns.TypeA, mdns.RcodeNameError, true},
		{"www.insecure.test.", mdns.TypeA, mdns.RcodeSuccess, false},
		{"bad.example.test.", mdns.TypeA, mdns.RcodeServerFailure, false},
		{"www.nods.test.", mdns.TypeA, mdns.RcodeServerFailure, false},
	} {
		m := askFrom(t, fwd.Addr(), "127.0.0.1", "udp", c.name, c.qtype, withDO)
		if m.Rcode != c.rcode || m.AuthenticatedData != c.ad {
			t.Errorf("%s via forwarder: %s AD=%v, want %s AD=%v", c.name, mdns.RcodeToString[m.Rcode], m.AuthenticatedData, mdns.RcodeToString[c.rcode], c.ad)
		}
	}
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		testenv.Missing(t, "dig (Debian package bind9-dnsutils) is not installed (%v)", err)
	}
	e := newEnv(t, true, nil)
	_, port, _ := strings.Cut(e.r.Addr(), ":")
	cases := []struct {
		args    []string
		status  string
		flagAD  bool
		contain string
	}{
		{[]string{"www.example.test", "A", "+dnssec"}, "NOERROR", true, "127.1.0.1"},
		{[]string{"alias.example.test", "A", "+dnssec"}, "NOERROR", true, "127.4.0.1"},
		{[]string{"nx.example.test", "A", "+dnssec"}, "NXDOMAIN", true, "SOA"},
		{[]string{"bad.example.test", "A", "+dnssec"}, "SERVFAIL", false, "EDE: 6"},
		{[]string{"www.insecure.test", "A", "+dnssec"}, "NOERROR", false, "127.2.0.1"},
		{[]string{"tc.example.test", "TXT", "+tcp"}, "NOERROR", true, "xxxxxxxx"},
		{[]string{"tc.example.test", "TXT", "+noedns"}, "NOERROR", true, "xxxxxxxx"}, // TC, then dig retries on TCP
	}
	for _, c := range cases {
		args := append([]string{"@127.0.0.1", "-p", port, "+time=5", "+tries=1"}, c.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		s := string(out)
		if !strings.Contains(s, "status: "+c.status) {
			t.Errorf("dig %v: want status %s\n%s", c.args, c.status, s)
		}
		flags := s[strings.Index(s, "flags:"):]
		flags = flags[:strings.Index(flags, ";")]
		if strings.Contains(flags, " ad") != c.flagAD {
			t.Errorf("dig %v: flags %q, want AD=%v", c.args, flags, c.flagAD)
		}
		if !strings.Contains(flags, " ra") {
			t.Errorf("dig %v: flags %q without ra", c.args, flags)
		}
		if !strings.Contains(s, c.contain) {
			t.Errorf("dig %v: output lacks %q\n%s", c.args, c.contain, s)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, true, func(c *Config) { c.Registerer = reg })
	e.ask(t, "127.0.0.1", "www.example.test.", mdns.TypeA)
	e.ask(t, "127.0.0.1", "www.example.test.", mdns.TypeA)
	e.ask(t, "127.0.0.1", "bad.example.test.", mdns.TypeA)
	e.ask(t, "127.0.0.9", "www.example.test.", mdns.TypeA)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			}
		}
	}
	for key, min := range map[string]float64{
		"nexus_resolver_responses_total,rcode=NOERROR":                  2,
		"nexus_resolver_responses_total,rcode=SERVFAIL":                 1,
		"nexus_resolver_responses_total,rcode=REFUSED":                  1,
		"nexus_resolver_cache_lookups_total,result=hit":                 1,
		"nexus_resolver_cache_lookups_total,result=miss":                2,
		"nexus_resolver_upstream_duration_seconds,transport=udp":        3,
		"nexus_resolver_upstream_queries_total,result=ok,transport=udp": 3,
		"nexus_resolver_validation_total,result=secure":                 1,
		"nexus_resolver_validation_total,result=bogus":                  1,
		"nexus_resolver_answered_total,imvu=imvu-a":                     3,
		"nexus_resolver_cache_entries":                                  1,
	} {
		if got[key] < min {
			t.Errorf("%s = %v, want >= %v", key, got[key], min)
		}
	}
	// Close unregisters, so a new resolver can register again.
	_ = e.r.Close()
	r2, err := New(Config{Attribute: attributeTest, Registerer: reg})
	if err != nil {
		t.Fatalf("register after Close: %v", err)
	}
	_ = r2.Close()
}

func counterValue(t testing.TB, v *prometheus.CounterVec, label string) float64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues(label).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestBudget(t *testing.T) {
	// A work budget too small to reach the answer: SERVFAIL, not a hang.
	e := newEnv(t, false, func(c *Config) { c.MaxWork = 2 })
	start := time.Now()
	m := e.ask(t, "127.0.0.1", "www.noglue.test.", mdns.TypeA)
	if m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode %s with a budget of 2 upstream queries", mdns.RcodeToString[m.Rcode])
	}
	if n := e.h.total(); n > 2 {
		t.Errorf("%d upstream queries with a budget of 2", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	// A total time budget: an unresponsive root gives SERVFAIL in time.
	r, err := New(Config{Attribute: attributeTest, RootHints: []string{"127.0.0.200:9"}, QueryTimeout: 200 * time.Millisecond, Timeout: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start = time.Now()
	if _, err := r.Lookup(context.Background(), "www.example.test", mdns.TypeA); !errors.Is(err, ErrServFail) {
		t.Errorf("unreachable root: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("unreachable root took %v", d)
	}
}

func TestClientEdgeCases(t *testing.T) {
	e := newEnv(t, false, nil)
	cases := []struct {
		name  string
		f     func(m *mdns.Msg)
		rcode int
	}{
		{"ANY", func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeANY }, mdns.RcodeNotImplemented},
		{"AXFR", func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeAXFR }, mdns.RcodeNotImplemented},
		{"CHAOS", func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassCHAOS }, mdns.RcodeRefused},
		{"NOTIFY", func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify }, mdns.RcodeNotImplemented},
		{"EDNS version 1", func(m *mdns.Msg) { m.IsEdns0().SetVersion(1) }, mdns.RcodeBadVers},
		{"plain", func(m *mdns.Msg) {}, mdns.RcodeSuccess},
	}
	for _, c := range cases {
		m := e.ask(t, "127.0.0.1", "www.example.test.", mdns.TypeA, c.f)
		if m.Rcode != c.rcode {
			t.Errorf("%s: rcode %s, want %s", c.name, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[c.rcode])
		}
	}
}

// TestConcurrentClients: many clients at once, validating, with the cache
// and the shared upstream queries in play (run with -race).
func TestConcurrentClients(t *testing.T) {
	e := newEnv(t, true, nil)
	want := map[string]string{
		"www.example.test.": "127.1.0.1", "alias.example.test.": "127.4.0.1",
		"www.insecure.test.": "127.2.0.1", "www.evil.test.": "127.5.0.1", "x.wild.example.test.": "127.1.0.7",
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := []string{"127.0.0.1", "127.0.0.2"}[g%2]
			for i := range 15 {
				n := names[(g+i)%len(names)]
				m := new(mdns.Msg)
				m.SetQuestion(n, mdns.TypeA)
				c := &mdns.Client{Timeout: 10 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
				resp, _, err := c.Exchange(m, e.r.Addr())
				if err != nil {
					errs <- err
					return
				}
				if got := addrs(resp); len(got) != 1 || got[0] != want[n] {
					errs <- fmt.Errorf("%s: %v, want %s", n, got, want[n])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := e.r.Counts(); c["imvu-a"]+c["imvu-b"] != 8*15 {
		t.Errorf("Counts() = %v, want 120 in all", c)
	}
}
