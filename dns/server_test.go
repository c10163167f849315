package dns

import (
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// rrText is a record without TTL and class, for comparisons: "owner TYPE data".
func rrText(rr mdns.RR) string {
	h := rr.Header()
	return h.Name + " " + mdns.TypeToString[h.Rrtype] + " " + strings.TrimPrefix(rr.String(), h.String())
}

func texts(sec []mdns.RR) []string {
	var out []string
	for _, rr := range sec {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		out = append(out, rrText(rr))
	}
	slices.Sort(out)
	return out
}

func typesOf(sec []mdns.RR) []string {
	var out []string
	for _, rr := range sec {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		out = append(out, mdns.TypeToString[rr.Header().Rrtype])
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string { slices.Sort(s); return s }

const z = "." + testOrigin // suffix for names in expectations

// behaviour is one query and what the answer must be.
type behaviour struct {
	name   string
	qname  string
	qtype  uint16
	opts   []askOpt
	rcode  int
	aa     bool
	tc     bool
	answer []string // rrText of every answer record, any order; nil: must be empty
	ns     []string // types in authority
	extra  []string // rrText of additional records (OPT excluded)
	check  func(t *testing.T, r *mdns.Msg)
}

func unsignedBehaviours() []behaviour {
	soa := []string{"SOA"}
	return []behaviour{
		{name: "A hit", qname: "www" + z, qtype: mdns.TypeA, aa: true, answer: []string{"www" + z + " A 10.0.0.5"}},
		{name: "AAAA hit", qname: "www" + z, qtype: mdns.TypeAAAA, aa: true, answer: []string{"www" + z + " AAAA 2001:db8::5"}},
		{name: "query case echoed", qname: "WwW.IMVU042.World.", qtype: mdns.TypeA, aa: true, answer: []string{"WwW.IMVU042.World. A 10.0.0.5"},
			check: func(t *testing.T, r *mdns.Msg) {
				if r.Question[0].Name != "WwW.IMVU042.World." {
					t.Errorf("question %q, want the query's case", r.Question[0].Name)
				}
			}},
		{name: "stored uppercase found lowercase", qname: "upper.case" + z, qtype: mdns.TypeA, aa: true, answer: []string{"upper.case" + z + " A 10.0.0.8"}},
		{name: "NODATA", qname: "www" + z, qtype: mdns.TypeMX, aa: true, ns: soa, check: negativeTTL},
		{name: "NXDOMAIN", qname: "nothing" + z, qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true, ns: soa, check: negativeTTL},
		{name: "NXDOMAIN below a name", qname: "deep.www" + z, qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true, ns: soa},
		{name: "SOA", qname: testOrigin, qtype: mdns.TypeSOA, aa: true,
			answer: []string{testOrigin + " SOA ns1" + z + " hostmaster" + z + " 7 3600 600 1209600 300"}},
		{name: "NS with glue", qname: testOrigin, qtype: mdns.TypeNS, aa: true,
			answer: []string{testOrigin + " NS ns1" + z, testOrigin + " NS ns2.example.net."}, extra: []string{"ns1" + z + " A 127.0.0.1"}},
		{name: "MX with addresses", qname: testOrigin, qtype: mdns.TypeMX, aa: true,
			answer: []string{testOrigin + " MX 10 mail" + z}, extra: []string{"mail" + z + " A 10.0.0.2", "mail" + z + " AAAA 2001:db8::2"}},
		{name: "TXT", qname: testOrigin, qtype: mdns.TypeTXT, aa: true, answer: []string{testOrigin + ` TXT "v=spf1 mx -all"`}},
		{name: "CAA", qname: testOrigin, qtype: mdns.TypeCAA, aa: true, answer: []string{testOrigin + ` CAA 0 issue "letsencrypt.org"`}},
		{name: "SRV with address", qname: "_sip._tcp" + z, qtype: mdns.TypeSRV, aa: true,
			answer: []string{"_sip._tcp" + z + " SRV 10 5 5060 sip" + z}, extra: []string{"sip" + z + " A 10.0.0.7"}},
		{name: "PTR", qname: "ptr" + z, qtype: mdns.TypePTR, aa: true, answer: []string{"ptr" + z + " PTR host.example.net."}},
		{name: "CNAME chased in zone", qname: "chain" + z, qtype: mdns.TypeA, aa: true,
			answer: []string{"chain" + z + " CNAME alias" + z, "alias" + z + " CNAME www" + z, "www" + z + " A 10.0.0.5"}},
		{name: "CNAME asked for", qname: "alias" + z, qtype: mdns.TypeCNAME, aa: true, answer: []string{"alias" + z + " CNAME www" + z}},
		{name: "CNAME out of zone", qname: "ext" + z, qtype: mdns.TypeA, aa: true, answer: []string{"ext" + z + " CNAME target.example.net."}},
		{name: "CNAME loop stops", qname: "loop1" + z, qtype: mdns.TypeA, aa: true,
			answer: []string{"loop1" + z + " CNAME loop2" + z, "loop2" + z + " CNAME loop1" + z}},
		{name: "CNAME to nothing is NXDOMAIN", qname: "dangling" + z, qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true,
			answer: []string{"dangling" + z + " CNAME nothere" + z}, ns: soa},
		{name: "CNAME to a wildcard", qname: "towild" + z, qtype: mdns.TypeA, aa: true,
			answer: []string{"towild" + z + " CNAME x.stage" + z, "x.stage" + z + " A 10.0.1.1"}},
		{name: "wildcard A", qname: "foo.stage" + z, qtype: mdns.TypeA, aa: true, answer: []string{"foo.stage" + z + " A 10.0.1.1"}},
		{name: "wildcard keeps case", qname: "FoO.stage" + z, qtype: mdns.TypeTXT, aa: true, answer: []string{"FoO.stage" + z + ` TXT "wild"`}},
		{name: "wildcard several labels", qname: "a.foo.stage" + z, qtype: mdns.TypeA, aa: true, answer: []string{"a.foo.stage" + z + " A 10.0.1.1"}},
		{name: "wildcard NODATA", qname: "foo.stage" + z, qtype: mdns.TypeMX, aa: true, ns: soa},
		{name: "exact name beats wildcard", qname: "a.b.stage" + z, qtype: mdns.TypeA, aa: true, answer: []string{"a.b.stage" + z + " A 10.0.1.2"}},
		{name: "empty non-terminal is NODATA", qname: "b.stage" + z, qtype: mdns.TypeA, aa: true, ns: soa},
		{name: "empty non-terminal stops the wildcard", qname: "x.b.stage" + z, qtype: mdns.TypeA, rcode: mdns.RcodeNameError, aa: true, ns: soa},
		{name: "wildcard owner's parent is NODATA", qname: "stage" + z, qtype: mdns.TypeA, aa: true, ns: soa},
		{name: "the wildcard name itself", qname: "*.stage" + z, qtype: mdns.TypeA, aa: true, answer: []string{"*.stage" + z + " A 10.0.1.1"}},
		{name: "referral below a cut", qname: "www.sub" + z, qtype: mdns.TypeA, ns: []string{"NS", "NS"}, extra: []string{"ns.sub" + z + " A 10.0.2.1"}},
		{name: "referral at the cut", qname: "sub" + z, qtype: mdns.TypeNS, ns: []string{"NS", "NS"}, extra: []string{"ns.sub" + z + " A 10.0.2.1"}},
		{name: "glue is a referral", qname: "ns.sub" + z, qtype: mdns.TypeA, ns: []string{"NS", "NS"}, extra: []string{"ns.sub" + z + " A 10.0.2.1"}},
		{name: "DS at the cut is ours to deny", qname: "sub" + z, qtype: mdns.TypeDS, aa: true, ns: soa},
		{name: "ANY gets one RRset", qname: testOrigin, qtype: mdns.TypeANY, aa: true, check: func(t *testing.T, r *mdns.Msg) {
			if len(r.Answer) == 0 || len(slices.Compact(typesOf(r.Answer))) != 1 {
				t.Errorf("ANY answered %v, want one RRset (RFC 8482)", typesOf(r.Answer))
			}
		}},
		{name: "DNSKEY of an unsigned zone", qname: testOrigin, qtype: mdns.TypeDNSKEY, aa: true, ns: soa},
		{name: "name outside every zone", qname: "example.com.", qtype: mdns.TypeA, rcode: mdns.RcodeRefused},
		{name: "parent of the zone", qname: "world.", qtype: mdns.TypeSOA, rcode: mdns.RcodeRefused},
		{name: "name that only ends like the zone", qname: "ximvu042.world.", qtype: mdns.TypeA, rcode: mdns.RcodeRefused},
		{name: "class CH", qname: testOrigin, qtype: mdns.TypeTXT, rcode: mdns.RcodeRefused, opts: []askOpt{func(m *mdns.Msg, _ *mdns.Client) { m.Question[0].Qclass = mdns.ClassCHAOS }}},
		{name: "AXFR over UDP", qname: testOrigin, qtype: mdns.TypeAXFR, rcode: mdns.RcodeRefused},
		{name: "EDNS answered with our size", qname: "www" + z, qtype: mdns.TypeA, aa: true, opts: []askOpt{withEDNS(4096)},
			answer: []string{"www" + z + " A 10.0.0.5"}, check: func(t *testing.T, r *mdns.Msg) {
				o := r.IsEdns0()
				if o == nil || o.UDPSize() != 1232 || o.Do() || o.Version() != 0 {
					t.Errorf("OPT %v, want udp 1232, no DO, version 0", o)
				}
			}},
		{name: "DO echoed", qname: "www" + z, qtype: mdns.TypeA, aa: true, opts: []askOpt{withDO()},
			answer: []string{"www" + z + " A 10.0.0.5"}, check: func(t *testing.T, r *mdns.Msg) {
				if o := r.IsEdns0(); o == nil || !o.Do() {
					t.Errorf("OPT %v, want DO", o)
				}
			}},
		{name: "EDNS version 1 is BADVERS", qname: "www" + z, qtype: mdns.TypeA, rcode: mdns.RcodeBadVers,
			opts: []askOpt{func(m *mdns.Msg, _ *mdns.Client) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }},
			check: func(t *testing.T, r *mdns.Msg) {
				if o := r.IsEdns0(); o == nil || o.Version() != 0 {
					t.Errorf("OPT %v, want version 0", o)
				}
			}},
		{name: "too big for 512 is truncated", qname: "big" + z, qtype: mdns.TypeTXT, aa: true, tc: true},
		{name: "too big for EDNS 1232 is truncated", qname: "big" + z, qtype: mdns.TypeTXT, aa: true, tc: true, opts: []askOpt{withEDNS(4096)}},
		{name: "big over TCP", qname: "big" + z, qtype: mdns.TypeTXT, aa: true, opts: []askOpt{overTCP()}, check: func(t *testing.T, r *mdns.Msg) {
			if len(r.Answer) != 1 || len(r.Answer[0].(*mdns.TXT).Txt) != 8 {
				t.Errorf("big TXT over TCP: %v", r.Answer)
			}
		}},
	}
}

func negativeTTL(t *testing.T, r *mdns.Msg) {
	t.Helper()
	for _, rr := range r.Ns {
		if rr.Header().Rrtype == mdns.TypeSOA && rr.Header().Ttl != SOAMinimum {
			t.Errorf("SOA in authority has TTL %d, want the SOA minimum %d", rr.Header().Ttl, SOAMinimum)
		}
	}
}

func runBehaviours(t *testing.T, addr string, cases []behaviour, extra ...askOpt) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(t, addr, tc.qname, tc.qtype, append(slices.Clone(tc.opts), extra...)...)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s\n%v", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode], r)
			}
			if r.Authoritative != tc.aa {
				t.Errorf("AA %v, want %v", r.Authoritative, tc.aa)
			}
			if r.Truncated != tc.tc {
				t.Errorf("TC %v, want %v", r.Truncated, tc.tc)
			}
			if r.RecursionAvailable {
				t.Errorf("RA set: an authoritative server does not recurse")
			}
			if tc.check == nil || tc.answer != nil {
				if got := texts(r.Answer); !slices.Equal(got, sorted(tc.answer...)) {
					t.Errorf("answer\n got %q\nwant %q", got, sorted(tc.answer...))
				}
			}
			if tc.check == nil || tc.ns != nil {
				if got := typesOf(r.Ns); !slices.Equal(got, sorted(tc.ns...)) {
					t.Errorf("authority types %v, want %v", got, sorted(tc.ns...))
				}
			}
			if tc.check == nil || tc.extra != nil {
				if got := texts(r.Extra); !slices.Equal(got, sorted(tc.extra...)) {
					t.Errorf("additional\n got %q\nwant %q", got, sorted(tc.extra...))
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestBehaviourUDP(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 7, nil))
	runBehaviours(t, s.Addr(), unsignedBehaviours())
}

func TestBehaviourTCP(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 7, nil))
	var cases []behaviour
	for _, b := range unsignedBehaviours() {
		if b.tc || b.qtype == mdns.TypeAXFR {
			continue // over TCP nothing is truncated; AXFR has its own tests
		}
		cases = append(cases, b)
	}
	runBehaviours(t, s.Addr(), cases, overTCP())
}

// A signed zone answers exactly as unsigned to queries without DO.
func TestBehaviourSignedWithoutDO(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 7, testKey(t)))
	var cases []behaviour
	for _, b := range unsignedBehaviours() {
		if b.name == "DNSKEY of an unsigned zone" || b.name == "DO echoed" {
			continue
		}
		cases = append(cases, b)
	}
	runBehaviours(t, s.Addr(), cases)
}
