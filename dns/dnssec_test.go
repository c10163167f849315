package dns

import (
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// verifySigs checks every RRSIG in the sections against the key, over the
// RRset it covers (owner compared without case, as validators do).
func verifySigs(t *testing.T, key *mdns.DNSKEY, secs ...[]mdns.RR) int {
	t.Helper()
	n := 0
	for _, sec := range secs {
		for _, rr := range sec {
			sig, ok := rr.(*mdns.RRSIG)
			if !ok {
				continue
			}
			var set []mdns.RR
			for _, o := range sec {
				if mdns.CanonicalName(o.Header().Name) == mdns.CanonicalName(sig.Hdr.Name) && o.Header().Rrtype == sig.TypeCovered {
					set = append(set, o)
				}
			}
			if len(set) == 0 {
				t.Errorf("RRSIG %s %s covers nothing in its section", sig.Hdr.Name, mdns.TypeToString[sig.TypeCovered])
				continue
			}
			if err := sig.Verify(key, set); err != nil {
				t.Errorf("RRSIG %s %s does not verify: %v", sig.Hdr.Name, mdns.TypeToString[sig.TypeCovered], err)
			}
			if !sig.ValidityPeriod(timeNow()) {
				t.Errorf("RRSIG %s %s is not valid now", sig.Hdr.Name, mdns.TypeToString[sig.TypeCovered])
			}
			n++
		}
	}
	return n
}

func nsecOf(t *testing.T, sec []mdns.RR) *mdns.NSEC {
	t.Helper()
	for _, rr := range sec {
		if n, ok := rr.(*mdns.NSEC); ok {
			return n
		}
	}
	t.Fatalf("no NSEC in %v", sec)
	return nil
}

func bitmap(n *mdns.NSEC) []string {
	var out []string
	for _, t := range n.TypeBitMap {
		out = append(out, mdns.TypeToString[t])
	}
	return out
}

func TestSignedAnswers(t *testing.T) {
	c := buildTest(t, 7, testKey(t))
	s := startServer(t, Config{}, c)
	key := c.DNSKEY()
	cases := []struct {
		name, qname   string
		qtype         uint16
		rcode         int
		aa            bool
		answer, ns    []string // types
		sigs          int
		nsecOwner     string
		nsecBitmap    []string
		rrsigLabelsAt int // labels the answer's RRSIG must claim (0: not checked)
	}{
		{name: "A", qname: "www" + z, qtype: mdns.TypeA, aa: true, answer: []string{"A", "RRSIG"}, sigs: 1, rrsigLabelsAt: 3},
		{name: "mixed case", qname: "WWW.Imvu042.World.", qtype: mdns.TypeA, aa: true, answer: []string{"A", "RRSIG"}, sigs: 1},
		{name: "DNSKEY", qname: testOrigin, qtype: mdns.TypeDNSKEY, aa: true, answer: []string{"DNSKEY", "RRSIG"}, sigs: 1},
		{name: "MX and signed addresses", qname: testOrigin, qtype: mdns.TypeMX, aa: true, answer: []string{"MX", "RRSIG"}, sigs: 3},
		{name: "compact NXDOMAIN", qname: "nothing" + z, qtype: mdns.TypeA, aa: true, ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 2,
			nsecOwner: "nothing" + z, nsecBitmap: []string{"RRSIG", "NSEC", "NXNAME"}},
		{name: "NODATA", qname: "www" + z, qtype: mdns.TypeMX, aa: true, ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 2,
			nsecOwner: "www" + z, nsecBitmap: []string{"A", "AAAA", "RRSIG", "NSEC"}},
		{name: "NODATA at the apex", qname: testOrigin, qtype: mdns.TypeAAAA, aa: true, ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 2,
			nsecOwner: testOrigin, nsecBitmap: []string{"A", "NS", "SOA", "MX", "TXT", "RRSIG", "NSEC", "DNSKEY", "CAA"}},
		{name: "empty non-terminal", qname: "b.stage" + z, qtype: mdns.TypeA, aa: true, ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 2,
			nsecOwner: "b.stage" + z, nsecBitmap: []string{"RRSIG", "NSEC"}},
		{name: "wildcard signed as the name", qname: "foo.stage" + z, qtype: mdns.TypeA, aa: true, answer: []string{"A", "RRSIG"}, sigs: 1, rrsigLabelsAt: 4},
		{name: "wildcard NODATA", qname: "foo.stage" + z, qtype: mdns.TypeMX, aa: true, ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 2,
			nsecOwner: "foo.stage" + z, nsecBitmap: []string{"A", "TXT", "RRSIG", "NSEC"}},
		{name: "CNAME chain signed", qname: "chain" + z, qtype: mdns.TypeA, aa: true, answer: []string{"A", "CNAME", "CNAME", "RRSIG", "RRSIG", "RRSIG"}, sigs: 3},
		{name: "CNAME to nothing", qname: "dangling" + z, qtype: mdns.TypeA, aa: true, answer: []string{"CNAME", "RRSIG"},
			ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 3, nsecOwner: "nothere" + z, nsecBitmap: []string{"RRSIG", "NSEC", "NXNAME"}},
		{name: "referral proves no DS", qname: "www.sub" + z, qtype: mdns.TypeA, ns: []string{"NS", "NS", "NSEC", "RRSIG"}, sigs: 1,
			nsecOwner: "sub" + z, nsecBitmap: []string{"NS", "RRSIG", "NSEC"}},
		{name: "DS at the cut", qname: "sub" + z, qtype: mdns.TypeDS, aa: true, ns: []string{"NSEC", "RRSIG", "RRSIG", "SOA"}, sigs: 2,
			nsecOwner: "sub" + z, nsecBitmap: []string{"NS", "RRSIG", "NSEC"}},
		{name: "NSEC asked for", qname: "www" + z, qtype: mdns.TypeNSEC, aa: true, answer: []string{"NSEC", "RRSIG"}, sigs: 1},
	}
	for _, tc := range cases {
		for _, tcp := range []bool{false, true} {
			name := tc.name + map[bool]string{false: "/udp", true: "/tcp"}[tcp]
			t.Run(name, func(t *testing.T) {
				opts := []askOpt{withDO()}
				if tcp {
					opts = append(opts, overTCP())
				}
				r := ask(t, s.Addr(), tc.qname, tc.qtype, opts...)
				if r.Rcode != tc.rcode || r.Authoritative != tc.aa || r.Truncated {
					t.Fatalf("rcode %s aa %v tc %v, want %s aa %v\n%v", mdns.RcodeToString[r.Rcode], r.Authoritative, r.Truncated,
						mdns.RcodeToString[tc.rcode], tc.aa, r)
				}
				if got := typesOf(r.Answer); !slices.Equal(got, sorted(tc.answer...)) {
					t.Errorf("answer types %v, want %v\n%v", got, sorted(tc.answer...), r)
				}
				if got := typesOf(r.Ns); !slices.Equal(got, sorted(tc.ns...)) {
					t.Errorf("authority types %v, want %v\n%v", got, sorted(tc.ns...), r)
				}
				if n := verifySigs(t, key, r.Answer, r.Ns, r.Extra); n != tc.sigs {
					t.Errorf("%d signatures verified, want %d\n%v", n, tc.sigs, r)
				}
				if tc.nsecOwner != "" {
					nsec := nsecOf(t, append(slices.Clone(r.Ns), r.Answer...))
					if mdns.CanonicalName(nsec.Hdr.Name) != tc.nsecOwner {
						t.Errorf("NSEC owner %s, want %s", nsec.Hdr.Name, tc.nsecOwner)
					}
					if got := bitmap(nsec); !slices.Equal(got, tc.nsecBitmap) {
						t.Errorf("NSEC types %v, want %v", got, tc.nsecBitmap)
					}
					if nsec.NextDomain != `\000.`+tc.nsecOwner {
						t.Errorf("NSEC next %s, want \\000.%s", nsec.NextDomain, tc.nsecOwner)
					}
					if nsec.Hdr.Ttl != SOAMinimum {
						t.Errorf("NSEC TTL %d, want %d", nsec.Hdr.Ttl, SOAMinimum)
					}
				}
				if tc.rrsigLabelsAt > 0 {
					for _, rr := range r.Answer {
						if sig, ok := rr.(*mdns.RRSIG); ok && int(sig.Labels) != tc.rrsigLabelsAt {
							t.Errorf("RRSIG labels %d, want %d", sig.Labels, tc.rrsigLabelsAt)
						}
					}
				}
				if o := r.IsEdns0(); o == nil || !o.Do() {
					t.Errorf("OPT %v, want DO echoed", o)
				}
			})
		}
	}
}

// Signatures are made once per RRset and reused.
func TestSignaturesAreCached(t *testing.T) {
	c := buildTest(t, 7, testKey(t))
	s := startServer(t, Config{}, c)
	a := ask(t, s.Addr(), "www"+z, mdns.TypeA, withDO())
	b := ask(t, s.Addr(), "www"+z, mdns.TypeA, withDO(), overTCP())
	if a.Answer[1].(*mdns.RRSIG).Signature != b.Answer[1].(*mdns.RRSIG).Signature {
		t.Error("the second answer carries a new signature; want the cached one")
	}
	c.sigs.mu.Lock()
	n := len(c.sigs.m)
	c.sigs.mu.Unlock()
	if n != 1 {
		t.Errorf("%d signatures cached, want 1", n)
	}
}

func TestSignatureCacheIsBounded(t *testing.T) {
	c := buildTest(t, 7, testKey(t))
	c.sigs.max = 50
	for i := 0; i < 200; i++ {
		c.resolve(mustWire("n"+itoa3(i)+z), mdns.TypeA, true)
	}
	if n := len(c.sigs.m); n > 50 {
		t.Errorf("%d signatures cached, bound is 50", n)
	}
}

func itoa3(i int) string {
	return string([]byte{byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)})
}

func TestDS(t *testing.T) {
	c := buildTest(t, 1, testKey(t))
	text, err := DS(c)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := mdns.NewRR(text)
	if err != nil {
		t.Fatalf("DS %q does not parse: %v", text, err)
	}
	ds := rr.(*mdns.DS)
	want := c.DNSKEY().ToDS(mdns.SHA256)
	if ds.DigestType != mdns.SHA256 || ds.Algorithm != mdns.ECDSAP256SHA256 || ds.KeyTag != c.DNSKEY().KeyTag() || !strings.EqualFold(ds.Digest, want.Digest) || ds.Hdr.Name != testOrigin {
		t.Errorf("DS %v, want %v", ds, want)
	}
	if _, err := DS(buildTest(t, 1, nil)); err == nil {
		t.Error("DS of an unsigned zone: want an error")
	}
}
