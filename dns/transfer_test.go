package dns

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	tsigName   = "xfr.imvu042.world."
	tsigSecret = "c2VjcmV0IGZvciB0aGUgc2Vjb25kYXJ5IG9mIGltdnUwNDI=" // base64
)

func secondaryConfig(addr string) Secondary {
	return Secondary{Addr: addr, TSIGName: tsigName, TSIGSecret: tsigSecret}
}

// axfr pulls a zone; key "" sends no TSIG.
func axfr(t *testing.T, addr, zone, keyName, secret string, qtype uint16, ixfrSerial uint32) ([]mdns.RR, error) {
	t.Helper()
	m := new(mdns.Msg)
	if qtype == mdns.TypeIXFR {
		m.SetIxfr(zone, ixfrSerial, "ns.", "mbox.")
	} else {
		m.SetAxfr(zone)
	}
	tr := &mdns.Transfer{DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second}
	if keyName != "" {
		m.SetTsig(keyName, mdns.HmacSHA256, 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{keyName: secret}
	}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var out []mdns.RR
	for env := range ch {
		if env.Error != nil {
			return out, env.Error
		}
		out = append(out, env.RR...)
	}
	return out, nil
}

func TestAXFR(t *testing.T) {
	c := buildTest(t, 9, nil)
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig("127.0.0.1:9")}}, c)
	t.Run("signed with the secondary's key", func(t *testing.T) {
		rrs, err := axfr(t, s.Addr(), testOrigin, tsigName, tsigSecret, mdns.TypeAXFR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(rrs) != c.Len()+1 || rrs[0].Header().Rrtype != mdns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != mdns.TypeSOA {
			t.Fatalf("%d records (want %d), first %v last %v", len(rrs), c.Len()+1, rrs[0], rrs[len(rrs)-1])
		}
		want := texts(c.all())
		if got := texts(rrs[:len(rrs)-1]); !slices.Equal(got, want) {
			t.Errorf("transfer differs from the zone:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("IXFR from the current serial is the SOA", func(t *testing.T) {
		rrs, err := axfr(t, s.Addr(), testOrigin, tsigName, tsigSecret, mdns.TypeIXFR, 9)
		if err != nil {
			t.Fatal(err)
		}
		if len(rrs) != 1 || rrs[0].(*mdns.SOA).Serial != 9 {
			t.Errorf("IXFR at serial 9: %v", rrs)
		}
	})
	t.Run("IXFR from an old serial is the whole zone", func(t *testing.T) {
		rrs, err := axfr(t, s.Addr(), testOrigin, tsigName, tsigSecret, mdns.TypeIXFR, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(rrs) != c.Len()+1 {
			t.Errorf("IXFR from 3: %d records, want %d", len(rrs), c.Len()+1)
		}
	})
	refused := []struct {
		name, key, secret, zone string
		want                    string
	}{
		{"unsigned", "", "", testOrigin, "REFUSED"},
		{"unknown key", "other.key.", tsigSecret, testOrigin, "NOTAUTH"},
		{"wrong secret", tsigName, "d3Jvbmcgc2VjcmV0", testOrigin, "NOTAUTH"},
		{"zone not served", tsigName, tsigSecret, "example.com.", "NOTAUTH"},
		{"name inside the zone", tsigName, tsigSecret, "www" + z, "NOTAUTH"},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			rrs, err := axfr(t, s.Addr(), tc.zone, tc.key, tc.secret, mdns.TypeAXFR, 0)
			if err == nil || len(rrs) > 0 {
				t.Fatalf("transfer succeeded with %d records", len(rrs))
			}
			// Ask plainly to see the RCODE (the client may reject the unsigned error).
			m := new(mdns.Msg)
			m.SetAxfr(tc.zone)
			cl := &mdns.Client{Net: "tcp", Timeout: 2 * time.Second}
			if tc.key != "" {
				m.SetTsig(tc.key, mdns.HmacSHA256, 300, time.Now().Unix())
				cl.TsigSecret = map[string]string{tc.key: tc.secret}
			}
			r, _, _ := cl.Exchange(m, s.Addr())
			if r == nil || mdns.RcodeToString[r.Rcode] != tc.want || len(r.Answer) != 0 {
				t.Errorf("response %v, want %s with no records", r, tc.want)
			}
		})
	}
}

// A signed zone goes to secondaries fully signed: NSEC chain, RRSIGs over
// every authoritative RRset, verifiable with the DNSKEY.
func TestAXFRSigned(t *testing.T) {
	c := buildTest(t, 9, testKey(t))
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig("127.0.0.1:9")}}, c)
	rrs, err := axfr(t, s.Addr(), testOrigin, tsigName, tsigSecret, mdns.TypeAXFR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string][]mdns.RR{}
	var sigs []*mdns.RRSIG
	var nsecs []*mdns.NSEC
	for _, rr := range rrs[:len(rrs)-1] {
		if sig, ok := rr.(*mdns.RRSIG); ok {
			sigs = append(sigs, sig)
			continue
		}
		if n, ok := rr.(*mdns.NSEC); ok {
			nsecs = append(nsecs, n)
		}
		k := rr.Header().Name + "/" + mdns.TypeToString[rr.Header().Rrtype]
		sets[k] = append(sets[k], rr)
	}
	key := c.DNSKEY()
	signed := map[string]bool{}
	for _, sig := range sigs {
		k := sig.Hdr.Name + "/" + mdns.TypeToString[sig.TypeCovered]
		if err := sig.Verify(key, sets[k]); err != nil {
			t.Errorf("RRSIG over %s: %v", k, err)
		}
		signed[k] = true
	}
	for k := range sets {
		glueOrCut := strings.HasSuffix(k, "sub"+z+"/NS") || strings.HasSuffix(k, "ns.sub"+z+"/A")
		if signed[k] == glueOrCut {
			t.Errorf("%s: signed=%v", k, signed[k])
		}
	}
	// The chain visits every authoritative name once and closes at the apex.
	next := map[string]string{}
	for _, n := range nsecs {
		next[n.Hdr.Name] = n.NextDomain
	}
	seen, at := 0, testOrigin
	for {
		seen++
		at = next[at]
		if at == testOrigin || at == "" || seen > len(nsecs) {
			break
		}
	}
	if at != testOrigin || seen != len(nsecs) {
		t.Errorf("NSEC chain: %d names walked of %d, ended at %q", seen, len(nsecs), at)
	}
}

// fakeSecondary records the NOTIFYs it gets and whether their TSIG verified.
type fakeSecondary struct {
	addr string
	got  chan notifyMsg
}

type notifyMsg struct {
	zone   string
	serial uint32
	tsigOK bool
}

func startFakeSecondary(t *testing.T) *fakeSecondary {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSecondary{addr: pc.LocalAddr().String(), got: make(chan notifyMsg, 16)}
	srv := &mdns.Server{PacketConn: pc, TsigSecret: map[string]string{tsigName: tsigSecret},
		Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
			n := notifyMsg{zone: r.Question[0].Name, tsigOK: r.IsTsig() != nil && w.TsigStatus() == nil}
			if len(r.Answer) == 1 {
				if soa, ok := r.Answer[0].(*mdns.SOA); ok {
					n.serial = soa.Serial
				}
			}
			if r.Opcode == mdns.OpcodeNotify {
				f.got <- n
			}
			m := new(mdns.Msg)
			m.SetReply(r)
			if r.IsTsig() != nil {
				m.SetTsig(tsigName, mdns.HmacSHA256, 300, time.Now().Unix())
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return f
}

func (f *fakeSecondary) expect(t *testing.T, serial uint32) {
	t.Helper()
	select {
	case n := <-f.got:
		if n.zone != testOrigin || n.serial != serial || !n.tsigOK {
			t.Errorf("NOTIFY %+v, want zone %s serial %d with a valid TSIG", n, testOrigin, serial)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no NOTIFY for serial %d", serial)
	}
}

func (f *fakeSecondary) expectNone(t *testing.T) {
	t.Helper()
	select {
	case n := <-f.got:
		t.Errorf("unexpected NOTIFY %+v", n)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestNotifyOnSerialChange(t *testing.T) {
	f := startFakeSecondary(t)
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig(f.addr)}}, buildTest(t, 1, nil))
	f.expect(t, 1) // zones set before Start are announced when it starts
	s.SetZone(buildTest(t, 1, nil))
	f.expectNone(t)
	s.SetZone(buildTest(t, 2, nil))
	f.expect(t, 2)
}

func TestCountsPerIMVU(t *testing.T) {
	other, err := Build(Zone{Origin: "imvu043.world", IMVU: "imvu043", Serial: 1, Records: []Record{{"www", "A", 60, "10.4.3.1"}}}, []string{"ns.example.net."}, "")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{}, buildTest(t, 1, nil), other)
	for i := 0; i < 5; i++ {
		ask(t, s.Addr(), "www"+z, mdns.TypeA)
	}
	ask(t, s.Addr(), "nothing"+z, mdns.TypeA, overTCP())
	ask(t, s.Addr(), "www.imvu043.world.", mdns.TypeA, withDO())
	ask(t, s.Addr(), "example.com.", mdns.TypeA) // refused: nobody's
	want := map[string]uint64{"imvu042": 6, "imvu043": 1}
	if got := s.Counts(); !mapsEqual(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	// Replacing and removing zones keeps the counts; they only grow.
	s.SetZone(buildTest(t, 2, nil))
	ask(t, s.Addr(), "www"+z, mdns.TypeA)
	s.RemoveZone("imvu043.world")
	if r := ask(t, s.Addr(), "www.imvu043.world.", mdns.TypeA); r.Rcode != mdns.RcodeRefused {
		t.Errorf("removed zone answered %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
	want = map[string]uint64{"imvu042": 7, "imvu043": 1}
	if got := s.Counts(); !mapsEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Queries racing with zone swaps always see one whole zone, old or new.
func TestSwapUnderLoad(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 1, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
			for ctx.Err() == nil {
				m := new(mdns.Msg)
				m.SetQuestion(testOrigin, mdns.TypeSOA)
				r, _, err := cl.Exchange(m, s.Addr())
				if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
					errs <- "bad answer during swap"
					return
				}
			}
		}()
	}
	for serial := uint32(2); ctx.Err() == nil && serial < 60; serial++ {
		s.SetZone(buildTest(t, serial, nil))
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if r := ask(t, s.Addr(), testOrigin, mdns.TypeSOA); r.Answer[0].(*mdns.SOA).Serial < 2 {
		t.Errorf("after the swaps the serial is %d", r.Answer[0].(*mdns.SOA).Serial)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startServer(t, Config{Registerer: reg}, buildTest(t, 1, nil))
	for i := 0; i < 3; i++ {
		ask(t, s.Addr(), "www"+z, mdns.TypeA)
	}
	ask(t, s.Addr(), "nothing"+z, mdns.TypeA)
	ask(t, s.Addr(), "www"+z, mdns.TypeA, overTCP())
	ask(t, s.Addr(), "example.com.", mdns.TypeA)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"nexus_dns_responses_total{NOERROR}":     4,
		"nexus_dns_responses_total{NXDOMAIN}":    1,
		"nexus_dns_responses_total{REFUSED}":     1,
		"nexus_dns_query_duration_seconds_count": 6,
		"nexus_dns_answered_total{imvu042}":      5,
		"nexus_dns_zones":                        1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
