package dns

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// fuzzServer is a server that is never started: the fuzzers call its handler.
func fuzzServer(f *testing.F) (*Server, *worker) {
	f.Helper()
	s, err := NewServer(Config{Addr: "127.0.0.1:0", Secondaries: []Secondary{secondaryConfig("127.0.0.1:9")}})
	if err != nil {
		f.Fatal(err)
	}
	s.SetZone(buildTest(f, 1, nil))
	signed, err := Build(Zone{Origin: "imvu043.world", IMVU: "imvu043", Serial: 1, Key: testKey(f), Records: []Record{
		{"www", "A", 60, "10.4.3.1"}, {"*.w", "TXT", 60, "x"}, {"c", "CNAME", 60, "www"}, {"d", "NS", 60, "ns.example.net."},
	}}, []string{"ns.example.net."}, "")
	if err != nil {
		f.Fatal(err)
	}
	s.SetZone(signed)
	return s, s.newWorker(0, true)
}

func FuzzServeDNS(f *testing.F) {
	s, w := fuzzServer(f)
	for _, q := range []struct {
		name  string
		qtype uint16
		do    bool
	}{
		{"www" + z, mdns.TypeA, false}, {"WWW" + z, mdns.TypeAAAA, true}, {"nothing" + z, mdns.TypeA, false},
		{"foo.stage" + z, mdns.TypeTXT, false}, {"chain" + z, mdns.TypeA, false}, {"x.sub" + z, mdns.TypeA, true},
		{"big" + z, mdns.TypeTXT, false}, {testOrigin, mdns.TypeANY, false}, {"www.imvu043.world.", mdns.TypeA, true},
		{"q.w.imvu043.world.", mdns.TypeMX, true}, {"nx.imvu043.world.", mdns.TypeA, true}, {"example.com.", mdns.TypeA, false},
		{testOrigin, mdns.TypeAXFR, false},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.do {
			m.SetEdns0(4096, true)
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	tsig := new(mdns.Msg)
	tsig.SetQuestion(testOrigin, mdns.TypeSOA)
	tsig.SetTsig(tsigName, mdns.HmacSHA256, 300, 1)
	b, _, _ := mdns.TsigGenerate(tsig, tsigSecret, "", false)
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	out := make([]byte, 0, 65535)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, tcp := range []bool{false, true} {
			resp := s.handle(w, pkt, out, tcp)
			if resp == nil {
				if len(pkt) >= 12 && pkt[2]&0x80 == 0 {
					t.Fatalf("a query got no answer (tcp=%v): % x", tcp, pkt)
				}
				continue
			}
			m := new(mdns.Msg)
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("response does not unpack (tcp=%v): %v\nquery % x\nresponse % x", tcp, err, pkt, resp)
			}
			if !m.Response || m.Id != binary.BigEndian.Uint16(pkt) {
				t.Fatalf("response id %x qr %v for query % x", m.Id, m.Response, pkt)
			}
			if !tcp && len(resp) > 1232 {
				t.Fatalf("UDP response of %d bytes", len(resp))
			}
			if len(m.Question) == 1 {
				q := new(mdns.Msg)
				if err := q.Unpack(pkt); err == nil && len(q.Question) == 1 && q.Question[0].Name != m.Question[0].Name {
					t.Fatalf("question %q answered as %q", q.Question[0].Name, m.Question[0].Name)
				}
			}
		}
	})
}

func FuzzParseZoneFile(f *testing.F) {
	f.Add(zoneFile)
	f.Add("$ORIGIN imvu042.world.\n$TTL 60\n@ MX 10 mail\nmail A 10.0.0.1\n*.x TXT \"a\\\"b\" c\n")
	f.Add("$GENERATE 1-3 h$ A 10.0.0.$\n")
	f.Add("a CNAME b\nb CNAME a\n")
	f.Add("_s._tcp SRV 1 2 3 t\nc CAA 128 tbs \"x\"\n")
	const origin = "imvu042.world."
	ns := []string{"ns.example.net."}
	f.Fuzz(func(t *testing.T, text string) {
		recs, err := ParseZoneFile(origin, strings.NewReader(text))
		if err != nil {
			return
		}
		for _, r := range recs {
			if err := CheckRecord(origin, r); err != nil {
				t.Fatalf("ParseZoneFile returned %+v, which CheckRecord refuses: %v", r, err)
			}
		}
		c, err := Build(Zone{Origin: origin, Records: recs}, ns, "")
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteZoneFile(&buf, c); err != nil {
			t.Fatal(err)
		}
		again, err := ParseZoneFile(origin, bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("WriteZoneFile output does not read back: %v\n%s", err, buf.String())
		}
		c2, err := Build(Zone{Origin: origin, Records: again}, ns, "")
		if err != nil {
			t.Fatalf("WriteZoneFile output does not build: %v\n%s", err, buf.String())
		}
		if !slices.Equal(texts(c.all()), texts(c2.all())) {
			t.Fatalf("round trip changed the zone:\n%q\n%q", texts(c.all()), texts(c2.all()))
		}
	})
}

func FuzzCheckRecord(f *testing.F) {
	for _, r := range testRecords() {
		f.Add(r.Name, r.Type, r.TTL, r.Data)
	}
	f.Add("x", "CAA", uint32(1), `0 issuewild ";"`)
	f.Add("@", "TXT", uint32(0), `"\\" \"`)
	const origin = "imvu042.world."
	s, err := NewServer(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		f.Fatal(err)
	}
	w := s.newWorker(0, false)
	out := make([]byte, 0, 65535)
	f.Fuzz(func(t *testing.T, name, typ string, ttl uint32, data string) {
		r := Record{name, typ, ttl, data}
		if CheckRecord(origin, r) != nil {
			return
		}
		c, err := Build(Zone{Origin: origin, Records: []Record{r}}, []string{"ns.example.net."}, "")
		if err != nil {
			return // e.g. a CNAME at the apex, or a nameserver without glue
		}
		norm := c.Records()
		if len(norm) != 1 {
			t.Fatalf("%+v built into %v", r, norm)
		}
		if err := CheckRecord(origin, norm[0]); err != nil {
			t.Fatalf("normalised %+v is refused: %v", norm[0], err)
		}
		c2, err := Build(Zone{Origin: origin, Records: norm}, []string{"ns.example.net."}, "")
		if err != nil || !slices.Equal(texts(c.all()), texts(c2.all())) {
			t.Fatalf("normalised record builds differently: %v", err)
		}
		s.SetZone(c)
		owner, _ := ownerName(origin, r.Name)
		m := new(mdns.Msg)
		m.SetQuestion(owner, mdns.StringToType[strings.ToUpper(strings.TrimSpace(typ))])
		q, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		resp := s.handle(w, q, out, true)
		if err := new(mdns.Msg).Unpack(resp); err != nil {
			t.Fatalf("answer to %s does not unpack: %v", owner, err)
		}
	})
}
