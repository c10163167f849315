package dns

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/internal/testenv"
)

// rawUDP sends bytes and returns the response, or nil when none comes.
func rawUDP(t *testing.T, addr string, pkt []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func packed(t *testing.T, name string, qtype uint16, edit func(*mdns.Msg)) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	if edit != nil {
		edit(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformedAndOpcodes(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 1, nil))
	good := packed(t, "www"+z, mdns.TypeA, nil)
	with := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name   string
		pkt    []byte
		drop   bool
		rcode  int
		opcode int
		qd     int // questions expected in the response
		aa     bool
	}{
		{name: "runt", pkt: good[:5], drop: true},
		{name: "a response", pkt: with(func(b []byte) []byte { b[2] |= 0x80; return b }), drop: true},
		{name: "no question", pkt: with(func(b []byte) []byte { b[5] = 0; return b[:12] }), rcode: mdns.RcodeFormatError},
		{name: "two questions", pkt: with(func(b []byte) []byte { b[5] = 2; return append(b, b[12:]...) }), rcode: mdns.RcodeFormatError},
		{name: "question cut short", pkt: good[:len(good)-3], rcode: mdns.RcodeFormatError},
		{name: "name cut short", pkt: good[:16], rcode: mdns.RcodeFormatError},
		{name: "pointer in question", pkt: with(func(b []byte) []byte { return append(b[:12], 0xc0, 0x0c, 0, 1, 0, 1) }), rcode: mdns.RcodeFormatError},
		{name: "label too long", pkt: with(func(b []byte) []byte { b[12] = 70; return b }), rcode: mdns.RcodeFormatError},
		{name: "record count past the end", pkt: with(func(b []byte) []byte { b[11] = 1; return b }), rcode: mdns.RcodeFormatError},
		{name: "two OPT", pkt: packed(t, "www"+z, mdns.TypeA, func(m *mdns.Msg) {
			m.SetEdns0(1232, false)
			m.Extra = append(m.Extra, m.Extra[0])
		}), rcode: mdns.RcodeFormatError},
		{name: "answer in a query", pkt: packed(t, "www"+z, mdns.TypeA, func(m *mdns.Msg) {
			a, _ := mdns.NewRR("www.imvu042.world. 60 IN A 1.2.3.4")
			m.Answer = []mdns.RR{a}
		}), rcode: mdns.RcodeFormatError, qd: 1},
		{name: "qtype OPT", pkt: packed(t, "www"+z, mdns.TypeOPT, nil), rcode: mdns.RcodeFormatError, qd: 1},
		{name: "qtype NXNAME (RFC 9824 3.5)", pkt: packed(t, "www"+z, mdns.TypeNXNAME, nil), rcode: mdns.RcodeFormatError, qd: 1},
		{name: "UPDATE", pkt: packed(t, testOrigin, mdns.TypeSOA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeUpdate }),
			rcode: mdns.RcodeNotImplemented, opcode: mdns.OpcodeUpdate, qd: 1},
		{name: "STATUS", pkt: packed(t, testOrigin, mdns.TypeSOA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeStatus }),
			rcode: mdns.RcodeNotImplemented, opcode: mdns.OpcodeStatus, qd: 1},
		{name: "IQUERY", pkt: packed(t, testOrigin, mdns.TypeSOA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeIQuery }),
			rcode: mdns.RcodeNotImplemented, opcode: mdns.OpcodeIQuery, qd: 1},
		{name: "NOTIFY for our zone is acknowledged", pkt: packed(t, testOrigin, mdns.TypeSOA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify }),
			opcode: mdns.OpcodeNotify, qd: 1, aa: true},
		{name: "NOTIFY for another zone", pkt: packed(t, "example.com.", mdns.TypeSOA, func(m *mdns.Msg) { m.Opcode = mdns.OpcodeNotify }),
			rcode: mdns.RcodeRefused, opcode: mdns.OpcodeNotify, qd: 1},
		{name: "trailing bytes are ignored", pkt: with(func(b []byte) []byte { return append(b, 1, 2, 3) }), qd: 1, aa: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawUDP(t, s.Addr(), tc.pkt)
			if tc.drop {
				if resp != nil {
					t.Fatalf("answered % x; want silence", resp)
				}
				return
			}
			if resp == nil {
				t.Fatal("no response")
			}
			m := new(mdns.Msg)
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("response does not unpack: %v (% x)", err, resp)
			}
			if m.Id != binary.BigEndian.Uint16(tc.pkt) || !m.Response {
				t.Errorf("id %x response %v", m.Id, m.Response)
			}
			if m.Rcode != tc.rcode || m.Opcode != tc.opcode || len(m.Question) != tc.qd || m.Authoritative != tc.aa {
				t.Errorf("rcode %s opcode %d questions %d aa %v; want %s %d %d %v", mdns.RcodeToString[m.Rcode], m.Opcode, len(m.Question), m.Authoritative,
					mdns.RcodeToString[tc.rcode], tc.opcode, tc.qd, tc.aa)
			}
		})
	}
}

// RD and CD are copied, RA, AD and Z are never set.
func TestHeaderBits(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 1, nil))
	for _, rd := range []bool{false, true} {
		for _, cd := range []bool{false, true} {
			r := ask(t, s.Addr(), "www"+z, mdns.TypeA, func(m *mdns.Msg, _ *mdns.Client) {
				m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData = rd, cd, true
			})
			if r.RecursionDesired != rd || r.CheckingDisabled != cd || r.RecursionAvailable || r.AuthenticatedData || r.Zero {
				t.Errorf("rd=%v cd=%v: response rd=%v cd=%v ra=%v ad=%v z=%v", rd, cd, r.RecursionDesired, r.CheckingDisabled,
					r.RecursionAvailable, r.AuthenticatedData, r.Zero)
			}
		}
	}
}

// A truncated UDP answer is retried over TCP by a client, and the additional
// section is dropped before anything else when the answer alone fits.
func TestTruncationAndTCPFallback(t *testing.T) {
	recs := testRecords()
	for i := 0; i < 40; i++ {
		recs = append(recs, Record{"mail", "AAAA", 300, "2001:db8::" + itoa3(i+100)})
	}
	c, err := Build(Zone{Origin: testOrigin, IMVU: "imvu042", Serial: 1, Records: recs}, []string{"ns1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{}, c)
	r := ask(t, s.Addr(), testOrigin, mdns.TypeMX, withEDNS(1232))
	if r.Truncated || len(r.Answer) != 1 || len(r.Extra) != 1 { // only the OPT stays
		t.Errorf("MX with 41 addresses: tc=%v answer=%d extra=%d; want the MX alone, untruncated", r.Truncated, len(r.Answer), len(r.Extra))
	}
	r = ask(t, s.Addr(), testOrigin, mdns.TypeMX, withEDNS(4096), overTCP())
	if len(r.Extra) != 43 {
		t.Errorf("over TCP: %d additional records, want 43 (41 addresses, A and OPT)", len(r.Extra))
	}
	r = ask(t, s.Addr(), "big"+z, mdns.TypeTXT)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("big TXT: tc=%v answer=%d", r.Truncated, len(r.Answer))
	}
	// What a resolver does next.
	r = ask(t, s.Addr(), "big"+z, mdns.TypeTXT, overTCP())
	if r.Truncated || len(r.Answer) != 1 {
		t.Errorf("big TXT over TCP: tc=%v answer=%d", r.Truncated, len(r.Answer))
	}
}

// Several queries on one TCP connection are answered in order.
func TestTCPPipelining(t *testing.T) {
	s := startServer(t, Config{}, buildTest(t, 1, nil))
	conn, err := mdns.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	names := []string{"www" + z, "mail" + z, "nothing" + z, "sip" + z}
	for i, n := range names {
		m := new(mdns.Msg)
		m.SetQuestion(n, mdns.TypeA)
		m.Id = uint16(i + 1)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, n := range names {
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != uint16(i+1) || r.Question[0].Name != n {
			t.Errorf("response %d: id %d for %s", i, r.Id, r.Question[0].Name)
		}
	}
}

// The batch reader copes with IPv6 peers (sockaddr_in6) as with IPv4.
func TestIPv6(t *testing.T) {
	if l, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
		testenv.Missing(t, "no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	s := startServer(t, Config{Addr: "[::1]:0"}, buildTest(t, 1, nil))
	for _, opt := range [][]askOpt{nil, {overTCP()}} {
		r := ask(t, s.Addr(), "www"+z, mdns.TypeA, opt...)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("over IPv6: %v", r)
		}
	}
}
