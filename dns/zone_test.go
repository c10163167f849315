package dns

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
)

func TestCheckRecord(t *testing.T) {
	cases := []struct {
		r       Record
		wantErr string // "" = valid
	}{
		{Record{"@", "A", 0, "10.0.0.5"}, ""},
		{Record{"www", "a", 60, "10.0.0.5"}, ""},
		{Record{"www.imvu042.world.", "AAAA", 60, "2001:db8::1"}, ""},
		{Record{"*.stage", "A", 60, "10.0.0.5"}, ""},
		{Record{"@", "MX", 60, "10 mail"}, ""},
		{Record{"@", "TXT", 60, `"v=spf1 -all"`}, ""},
		{Record{"@", "TXT", 60, `"a; b" "c"`}, ""},
		{Record{"_sip._tcp", "SRV", 60, "10 5 5060 sip.example.net."}, ""},
		{Record{"@", "CAA", 60, `0 issue "letsencrypt.org"`}, ""},
		{Record{"1", "PTR", 60, "host.example.net."}, ""},
		{Record{"www", "CNAME", 60, "other"}, ""},
		{Record{"sub", "NS", 60, "ns.example.net."}, ""},
		{Record{"www.example.com.", "A", 60, "10.0.0.5"}, "outside the zone"},
		{Record{"world.", "A", 60, "10.0.0.5"}, "outside the zone"},
		{Record{"ximvu042.world.", "A", 60, "10.0.0.5"}, "outside the zone"},
		{Record{"www", "HINFO", 60, `"a" "b"`}, "not supported"},
		{Record{"www", "BOGUS", 60, "x"}, "unknown type"},
		{Record{"@", "SOA", 60, "ns1 hm 1 2 3 4 5"}, "made by Build"},
		{Record{"@", "NS", 60, "ns1"}, "made by Build"},
		{Record{"www", "A", 60, "10.0.0.256"}, "bad A"},
		{Record{"www", "A", 60, ""}, "empty data"},
		{Record{"www", "A", 60, "10.0.0.1\nevil 60 IN A 10.6.6.6"}, "control character"},
		{Record{"www", "A", 60, "10.0.0.1 10.0.0.2"}, "A"},
		{Record{"www", "MX", 60, "mail"}, "MX"},
		{Record{"w w", "A", 60, "10.0.0.1"}, "space"},
		{Record{"$INCLUDE", "A", 60, "10.0.0.1"}, "starts with '$'"},
		{Record{"a;b", "A", 60, "10.0.0.1"}, "not allowed"},
		{Record{strings.Repeat("a", 64), "A", 60, "10.0.0.1"}, "domain name"},
		{Record{"www", "CNAME", 60, "www"}, "itself"},
		{Record{"www", "A", 1 << 31, "10.0.0.1"}, "2^31"},
	}
	for _, tc := range cases {
		err := CheckRecord("imvu042.world", tc.r)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tc.r, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("%+v: accepted; want an error about %q", tc.r, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("%+v: error %q does not say %q", tc.r, err, tc.wantErr)
		}
	}
	if err := CheckRecord("bad origin", Record{"@", "A", 0, "10.0.0.1"}); err == nil {
		t.Error("bad origin accepted")
	}
}

func TestBuildRefuses(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cases := []struct {
		name    string
		zone    Zone
		ns      []string
		wantErr string
	}{
		{"no nameservers", Zone{Origin: testOrigin}, nil, "no nameservers"},
		{"bad origin", Zone{Origin: "a..b"}, []string{"ns1"}, "origin"},
		{"CNAME and A", Zone{Origin: testOrigin, Records: []Record{{"www", "CNAME", 60, "x"}, {"www", "A", 60, "10.0.0.1"}}}, []string{"ns.example.net."}, "CNAME cannot share"},
		{"two CNAMEs", Zone{Origin: testOrigin, Records: []Record{{"www", "CNAME", 60, "x"}, {"www", "CNAME", 60, "y"}}}, []string{"ns.example.net."}, "more than one CNAME"},
		{"CNAME at the apex", Zone{Origin: testOrigin, Records: []Record{{"@", "CNAME", 60, "x.example.net."}}}, []string{"ns.example.net."}, "CNAME cannot share"},
		{"data at a cut", Zone{Origin: testOrigin, Records: []Record{{"sub", "NS", 60, "ns.example.net."}, {"sub", "TXT", 60, "x"}}}, []string{"ns.example.net."}, "delegation"},
		{"data below a cut", Zone{Origin: testOrigin, Records: []Record{{"sub", "NS", 60, "ns.example.net."}, {"www.sub", "TXT", 60, "x"}}}, []string{"ns.example.net."}, "below the delegation"},
		{"in-zone nameserver without address", Zone{Origin: testOrigin}, []string{"ns1"}, "no A or AAAA"},
		{"delegation without glue", Zone{Origin: testOrigin, Records: []Record{{"sub", "NS", 60, "ns.sub"}}}, []string{"ns.example.net."}, "no A or AAAA"},
		{"TTLs differ", Zone{Origin: testOrigin, Records: []Record{{"www", "A", 60, "10.0.0.1"}, {"www", "A", 61, "10.0.0.2"}}}, []string{"ns.example.net."}, "different TTLs"},
		{"bad record", Zone{Origin: testOrigin, Records: []Record{{"www", "A", 60, "ten"}}}, []string{"ns.example.net."}, "records[0]"},
		{"wildcard NS", Zone{Origin: testOrigin, Records: []Record{{"*.x", "NS", 60, "ns.example.net."}}}, []string{"ns.example.net."}, "wildcard"},
		{"P-384 key", Zone{Origin: testOrigin, Key: p384}, []string{"ns.example.net."}, "P-256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.zone, tc.ns, "")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	c, err := Build(Zone{Origin: "IMVU042.World", IMVU: "imvu042", Serial: 42, Records: []Record{
		{"WWW", "A", 0, "10.0.0.1"}, {"www", "A", 0, "10.0.0.1"}, // duplicate, dropped
		{"@", "MX", 60, "10 mail.example.net."},
	}}, []string{"ns1.example.net.", "ns2.example.net.", "ns1.example.net."}, "dns.admin@example.net")
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin() != testOrigin || c.IMVU() != "imvu042" || c.Serial() != 42 || c.Signed() {
		t.Errorf("origin %s imvu %s serial %d signed %v", c.Origin(), c.IMVU(), c.Serial(), c.Signed())
	}
	if c.soa.Mbox != `dns\.admin.example.net.` || c.soa.Ns != "ns1.example.net." || c.soa.Serial != 42 || c.soa.Minttl != SOAMinimum {
		t.Errorf("SOA %v", c.soa)
	}
	if c.Len() != 5 { // SOA, 2 NS, A, MX
		t.Errorf("%d records, want 5: %v", c.Len(), c.all())
	}
	want := []Record{{"@", "MX", 60, "10 mail.example.net."}, {"www", "A", DefaultTTL, "10.0.0.1"}}
	if got := c.Records(); !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
}

const zoneFile = `; a test zone
$ORIGIN imvu042.world.
$TTL 600
@   IN SOA ns1 hostmaster 1 3600 600 86400 300
@   IN NS  ns1
@   IN NS  ns2.example.net.
ns1 IN A   127.0.0.1
@   IN MX  10 mail
mail 300 IN A 10.0.0.2
www IN A 10.0.0.5
    IN AAAA 2001:db8::5
txt IN TXT ( "one"
             "two" )
$ORIGIN stage.imvu042.world.
*   IN A 10.0.1.1
`

func TestParseZoneFile(t *testing.T) {
	recs, err := ParseZoneFile("imvu042.world", strings.NewReader(zoneFile))
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{"ns1", "A", 600, "127.0.0.1"},
		{"@", "MX", 600, "10 mail.imvu042.world."},
		{"mail", "A", 300, "10.0.0.2"},
		{"www", "A", 600, "10.0.0.5"},
		{"www", "AAAA", 600, "2001:db8::5"},
		{"txt", "TXT", 600, `"one" "two"`},
		{"*.stage", "A", 600, "10.0.1.1"},
	}
	if !slices.Equal(recs, want) {
		t.Errorf("records\n got %v\nwant %v", recs, want)
	}
}

func TestParseZoneFileErrorsNameTheLine(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"syntax", "$ORIGIN imvu042.world.\nwww IN A 10.0.0.1\nbad IN A 10.0.0\n", "line: 3"},
		{"outside the zone", "$ORIGIN imvu042.world.\nwww IN A 10.0.0.1\n\n\nx.example.com. IN A 10.0.0.1\nok IN A 10.0.0.2\n", "line 5"},
		{"unsupported type", "$ORIGIN imvu042.world.\n$TTL 60\nwww IN HINFO \"a\" \"b\"\n", "line 3"},
		{"multi-line record", "$ORIGIN imvu042.world.\nt IN TXT ( \"a\"\n \"b\" )\nx.example.com. IN A 10.0.0.1\n", "line 4"},
		{"include", "$INCLUDE /etc/passwd\n", "INCLUDE"},
		{"class", "$ORIGIN imvu042.world.\nwww CH TXT \"x\"\n", "line 2"},
		{"apex SOA elsewhere", "$ORIGIN imvu042.world.\nsub IN SOA a b 1 2 3 4 5\n", "line 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseZoneFile("imvu042.world", strings.NewReader(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// WriteZoneFile output reads back to the same zone.
func TestZoneFileRoundTrip(t *testing.T) {
	for _, key := range []*ecdsa.PrivateKey{nil, testKey(t)} {
		c := buildTest(t, 5, key)
		var buf bytes.Buffer
		if err := WriteZoneFile(&buf, c); err != nil {
			t.Fatal(err)
		}
		recs, err := ParseZoneFile(testOrigin, &buf)
		if err != nil {
			t.Fatalf("reading back: %v\n%s", err, buf.String())
		}
		var own []Record
		for _, r := range recs {
			if r.Type != "DNSKEY" {
				own = append(own, r)
			}
		}
		c2, err := Build(Zone{Origin: testOrigin, IMVU: "imvu042", Serial: 5, Records: own, Key: key}, []string{"ns1", "ns2.example.net."}, "hostmaster@imvu042.world")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(texts(c.all()), texts(c2.all())) {
			t.Errorf("round trip differs:\n%q\n%q", texts(c.all()), texts(c2.all()))
		}
	}
}
