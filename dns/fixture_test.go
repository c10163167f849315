package dns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const testOrigin = "imvu042.world."

// testRecords is a zone with one of each behaviour the server has.
func testRecords() []Record {
	big := make([]string, 8)
	for i := range big {
		big[i] = `"` + strings.Repeat(string(rune('a'+i)), 250) + `"`
	}
	return []Record{
		{"@", "A", 300, "10.0.0.1"},
		{"@", "MX", 300, "10 mail"},
		{"@", "TXT", 300, `"v=spf1 mx -all"`},
		{"@", "CAA", 300, `0 issue "letsencrypt.org"`},
		{"ns1", "A", 0, "127.0.0.1"},
		{"mail", "A", 300, "10.0.0.2"},
		{"mail", "AAAA", 300, "2001:db8::2"},
		{"www", "A", 300, "10.0.0.5"},
		{"www", "AAAA", 300, "2001:db8::5"},
		{"alias", "CNAME", 300, "www"},
		{"chain", "CNAME", 300, "alias"},
		{"ext", "CNAME", 300, "target.example.net."},
		{"loop1", "CNAME", 300, "loop2"},
		{"loop2", "CNAME", 300, "loop1"},
		{"dangling", "CNAME", 300, "nothere"},
		{"towild", "CNAME", 300, "x.stage"},
		{"*.stage", "A", 300, "10.0.1.1"},
		{"*.stage", "TXT", 300, `"wild"`},
		{"a.b.stage", "A", 300, "10.0.1.2"},
		{"_sip._tcp", "SRV", 300, "10 5 5060 sip"},
		{"sip", "A", 300, "10.0.0.7"},
		{"ptr", "PTR", 300, "host.example.net."},
		{"big", "TXT", 300, strings.Join(big, " ")},
		{"sub", "NS", 300, "ns.sub"},
		{"sub", "NS", 300, "ns.example.net."},
		{"ns.sub", "A", 300, "10.0.2.1"},
		{"Upper.Case", "A", 300, "10.0.0.8"},
	}
}

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func buildTest(t testing.TB, serial uint32, key *ecdsa.PrivateKey) *Compiled {
	t.Helper()
	c, err := Build(Zone{Origin: testOrigin, IMVU: "imvu042", Serial: serial, Records: testRecords(), Key: key},
		[]string{"ns1", "ns2.example.net."}, "hostmaster@imvu042.world")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startServer runs a server on a free loopback port until the test ends.
func startServer(t testing.TB, cfg Config, zones ...*Compiled) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		s.SetZone(z)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Close(); err != nil {
			t.Log("close:", err)
		}
	})
	return s
}

// ask sends one query and fails the test when no response comes.
type askOpt func(*mdns.Msg, *mdns.Client)

func withDO() askOpt { return func(m *mdns.Msg, _ *mdns.Client) { m.SetEdns0(1232, true) } }
func withEDNS(size uint16) askOpt {
	return func(m *mdns.Msg, _ *mdns.Client) { m.SetEdns0(size, false) }
}
func overTCP() askOpt { return func(_ *mdns.Msg, c *mdns.Client) { c.Net = "tcp" } }

func ask(t testing.TB, addr, name string, qtype uint16, opts ...askOpt) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
	for _, o := range opts {
		o(m, c)
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil && r == nil {
		t.Fatalf("%s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return r
}

func timeNow() time.Time { return time.Now() }
