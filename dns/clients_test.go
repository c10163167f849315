package dns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/internal/testenv"
)

// These tests drive the server with real clients from Debian (dig, kdig,
// delv, named-checkzone, dnssec-verify) and make knotd a secondary of it.
// A missing tool skips the test, unless NEXUS_REQUIRE_ALL=1 (CI), where it
// fails.

func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, e := os.Stat(filepath.Join(dir, tool)); e == nil {
				return filepath.Join(dir, tool)
			}
		}
		msg := fmt.Sprintf("%s is not installed (Debian package %s; scripts/deps.sh installs it)", tool, pkg)
		testenv.Missing(t, "%s", msg)
	}
	return p
}

// runTool runs a command with a deadline and returns its output, whitespace
// collapsed so expectations need not care about tabs.
func runTool(t *testing.T, timeout time.Duration, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return strings.Join(strings.Fields(string(out)), " "), err
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

type toolCase struct {
	name string
	args []string
	want []string
	not  []string
}

func runToolCases(t *testing.T, tool string, addr string, cases []toolCase) {
	host, port := hostPort(t, addr)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"@" + host, "-p", port}, tc.args...)
			out, _ := runTool(t, 20*time.Second, tool, args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s %s: output lacks %q:\n%s", filepath.Base(tool), strings.Join(tc.args, " "), w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("%s %s: output has %q:\n%s", filepath.Base(tool), strings.Join(tc.args, " "), n, out)
				}
			}
		})
	}
}

func TestDig(t *testing.T) {
	dig := needTool(t, "dig", "bind9-dnsutils")
	c := buildTest(t, 3, nil)
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig("127.0.0.1:9")}}, c)
	signed := startServer(t, Config{}, buildTest(t, 3, testKey(t)))
	key := "hmac-sha256:" + tsigName + ":" + tsigSecret
	runToolCases(t, dig, s.Addr(), []toolCase{
		{"A", []string{"+norec", "www.imvu042.world", "A"}, []string{"status: NOERROR", "flags: qr aa;", "www.imvu042.world. 300 IN A 10.0.0.5", "udp: 1232"}, nil},
		{"A over TCP", []string{"+tcp", "+norec", "www.imvu042.world", "A"}, []string{"status: NOERROR", "www.imvu042.world. 300 IN A 10.0.0.5", "(TCP)"}, nil},
		{"no EDNS", []string{"+noedns", "www.imvu042.world", "A"}, []string{"status: NOERROR", "ADDITIONAL: 0", "10.0.0.5"}, []string{"OPT PSEUDOSECTION"}},
		{"NXDOMAIN", []string{"nothing.imvu042.world", "A"}, []string{"status: NXDOMAIN", "flags: qr aa rd;",
			"imvu042.world. 300 IN SOA ns1.imvu042.world. hostmaster.imvu042.world. 3 3600 600 1209600 300"}, nil},
		{"NODATA", []string{"www.imvu042.world", "TXT"}, []string{"status: NOERROR", "ANSWER: 0, AUTHORITY: 1"}, nil},
		{"MX with addresses", []string{"imvu042.world", "MX"}, []string{"imvu042.world. 300 IN MX 10 mail.imvu042.world.",
			"mail.imvu042.world. 300 IN A 10.0.0.2", "mail.imvu042.world. 300 IN AAAA 2001:db8::2"}, nil},
		{"SRV", []string{"_sip._tcp.imvu042.world", "SRV"}, []string{"SRV 10 5 5060 sip.imvu042.world.", "sip.imvu042.world. 300 IN A 10.0.0.7"}, nil},
		{"CAA", []string{"imvu042.world", "CAA"}, []string{`CAA 0 issue "letsencrypt.org"`}, nil},
		{"CNAME chain", []string{"chain.imvu042.world", "A"}, []string{"chain.imvu042.world. 300 IN CNAME alias.imvu042.world.",
			"alias.imvu042.world. 300 IN CNAME www.imvu042.world.", "www.imvu042.world. 300 IN A 10.0.0.5"}, nil},
		{"wildcard keeps the query's case", []string{"FoO.stage.imvu042.world", "A"}, []string{"FoO.stage.imvu042.world. 300 IN A 10.0.1.1"}, nil},
		{"empty non-terminal stops the wildcard", []string{"x.b.stage.imvu042.world", "A"}, []string{"status: NXDOMAIN"}, nil},
		{"referral", []string{"+norec", "www.sub.imvu042.world", "A"}, []string{"status: NOERROR", "flags: qr;", "AUTHORITY: 2",
			"sub.imvu042.world. 300 IN NS ns.sub.imvu042.world.", "ns.sub.imvu042.world. 300 IN A 10.0.2.1"}, nil},
		{"truncated", []string{"+ignore", "big.imvu042.world", "TXT"}, []string{"flags: qr aa tc rd;", "ANSWER: 0"}, nil},
		{"retried over TCP", []string{"big.imvu042.world", "TXT"}, []string{"Truncated, retrying in TCP mode", "ANSWER: 1", "(TCP)"}, nil},
		{"BADVERS", []string{"+edns=1", "+noednsnegotiation", "www.imvu042.world", "A"}, []string{"status: BADVERS", "version: 0", "ANSWER: 0"}, nil},
		{"BADVERS then version 0", []string{"+edns=1", "www.imvu042.world", "A"}, []string{"BADVERS, retrying with EDNS version 0", "status: NOERROR", "10.0.0.5"}, nil},
		{"refused outside", []string{"example.com", "A"}, []string{"status: REFUSED"}, []string{"flags: qr aa"}},
		{"refused CH", []string{"-c", "CH", "version.bind", "TXT"}, []string{"status: REFUSED"}, nil},
		{"AXFR with TSIG", []string{"-y", key, "AXFR", "imvu042.world"},
			[]string{"XFR size: " + strconv.Itoa(c.Len()+1) + " records", "www.imvu042.world. 300 IN A 10.0.0.5"}, []string{"Transfer failed"}},
		{"IXFR from the current serial", []string{"-y", key, "IXFR=3", "imvu042.world"}, []string{"XFR size: 1 records"}, nil},
		{"AXFR without TSIG", []string{"AXFR", "imvu042.world"}, []string{"Transfer failed"}, []string{"10.0.0.5"}},
		{"AXFR with a wrong secret", []string{"-y", "hmac-sha256:" + tsigName + ":d3Jvbmc=", "AXFR", "imvu042.world"}, []string{"Transfer failed"}, []string{"10.0.0.5"}},
	})
	runToolCases(t, dig, signed.Addr(), []toolCase{
		{"signed A", []string{"+dnssec", "www.imvu042.world", "A"}, []string{"flags: do;", "www.imvu042.world. 300 IN RRSIG A 13 3 300"}, nil},
		{"signed compact NXDOMAIN", []string{"+dnssec", "nothing.imvu042.world", "A"}, []string{"status: NOERROR",
			`nothing.imvu042.world. 300 IN NSEC \000.nothing.imvu042.world. RRSIG NSEC TYPE128`, "RRSIG NSEC 13 3 300"}, nil},
		{"signed zone without DO", []string{"nothing.imvu042.world", "A"}, []string{"status: NXDOMAIN"}, []string{"RRSIG", "NSEC"}},
	})
}

func TestKdig(t *testing.T) {
	kdig := needTool(t, "kdig", "knot-dnsutils")
	c := buildTest(t, 3, nil)
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig("127.0.0.1:9")}}, c)
	signed := startServer(t, Config{}, buildTest(t, 3, testKey(t)))
	runToolCases(t, kdig, s.Addr(), []toolCase{
		{"A", []string{"+norec", "www.imvu042.world", "A"}, []string{"status: NOERROR", "Flags: qr aa;", "www.imvu042.world. 300 IN A 10.0.0.5"}, nil},
		{"A over TCP", []string{"+tcp", "www.imvu042.world", "A"}, []string{"status: NOERROR", "10.0.0.5", "(TCP)"}, nil},
		{"NXDOMAIN", []string{"nothing.imvu042.world", "A"}, []string{"status: NXDOMAIN", "IN SOA ns1.imvu042.world."}, nil},
		{"empty non-terminal stops the wildcard", []string{"x.B.StAgE.imvu042.world", "A"}, []string{"status: NXDOMAIN"}, nil},
		{"wildcard match", []string{"zz.StAgE.imvu042.world", "TXT"}, []string{`zz.stage.imvu042.world. 300 IN TXT "wild"`}, nil},
		{"EDNS", []string{"+edns", "+bufsize=4096", "www.imvu042.world", "A"}, []string{"Version: 0;", "UDP size: 1232 B"}, nil},
		{"BADVERS", []string{"+edns=1", "www.imvu042.world", "A"}, []string{"status: BADVERS"}, nil},
		{"truncated", []string{"+ignore", "big.imvu042.world", "TXT"}, []string{"Flags: qr aa tc rd;"}, nil},
		{"refused", []string{"example.org", "A"}, []string{"status: REFUSED"}, nil},
		{"AXFR with TSIG", []string{"-y", "hmac-sha256:" + tsigName + ":" + tsigSecret, "imvu042.world", "AXFR"},
			[]string{strconv.Itoa(c.Len()+1) + " records)", "sub.imvu042.world. 300 IN NS ns.sub.imvu042.world."}, nil},
		{"AXFR without TSIG", []string{"imvu042.world", "AXFR"}, []string{"REFUSED"}, []string{"10.0.0.5"}},
	})
	runToolCases(t, kdig, signed.Addr(), []toolCase{
		{"+dnssec", []string{"+dnssec", "www.imvu042.world", "A"}, []string{"flags: do;", "RRSIG A 13 3 300"}, nil},
		{"+dnssec DNSKEY", []string{"+dnssec", "imvu042.world", "DNSKEY"}, []string{"DNSKEY 257 3 13", "RRSIG DNSKEY 13 2 3600"}, nil},
		{"+dnssec NODATA", []string{"+dnssec", "www.imvu042.world", "TXT"}, []string{`NSEC \000.www.imvu042.world. A AAAA RRSIG NSEC`}, nil},
	})
}

// writeAnchor writes a delv trust anchor for the zone key.
func writeAnchor(t *testing.T, dir string, k *mdns.DNSKEY) string {
	t.Helper()
	p := filepath.Join(dir, "anchor.conf")
	text := fmt.Sprintf("trust-anchors {\n  %s static-key %d %d %d \"%s\";\n};\n", k.Hdr.Name, k.Flags, k.Protocol, k.Algorithm, k.PublicKey)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func delvCases() []toolCase {
	return []toolCase{
		{"positive", []string{"www.imvu042.world", "A"}, []string{"; fully validated", "www.imvu042.world. 300 IN A 10.0.0.5"}, nil},
		{"compact NXDOMAIN", []string{"nothing.imvu042.world", "A"}, []string{"; negative response, fully validated"}, nil},
		{"NODATA", []string{"www.imvu042.world", "MX"}, []string{"; negative response, fully validated"}, nil},
		{"apex MX", []string{"imvu042.world", "MX"}, []string{"; fully validated", "MX 10 mail.imvu042.world."}, nil},
		{"wildcard", []string{"foo.stage.imvu042.world", "A"}, []string{"; fully validated", "10.0.1.1"}, nil},
		{"empty non-terminal", []string{"b.stage.imvu042.world", "A"}, []string{"; negative response, fully validated"}, nil},
		{"CNAME chain", []string{"chain.imvu042.world", "A"}, []string{"; fully validated", "10.0.0.5"}, nil},
		{"no DS at the delegation", []string{"sub.imvu042.world", "DS"}, []string{"; negative response, fully validated"}, nil},
		{"DNSKEY", []string{"imvu042.world", "DNSKEY"}, []string{"; fully validated"}, nil},
	}
}

func TestDelvValidates(t *testing.T) {
	delv := needTool(t, "delv", "bind9-dnsutils")
	c := buildTest(t, 3, testKey(t))
	s := startServer(t, Config{}, c)
	dir := t.TempDir()
	anchor := writeAnchor(t, dir, c.DNSKEY())
	var cases []toolCase
	for _, tc := range delvCases() {
		tc.args = append([]string{"-a", anchor, "+root=imvu042.world"}, tc.args...)
		cases = append(cases, tc)
	}
	runToolCases(t, delv, s.Addr(), cases)

	// The same answers fail against a key that is not the zone's.
	wrong := writeAnchor(t, t.TempDir(), buildTest(t, 3, testKey(t)).DNSKEY())
	runToolCases(t, delv, s.Addr(), []toolCase{
		{"wrong trust anchor", []string{"-a", wrong, "+root=imvu042.world", "www.imvu042.world", "A"}, []string{"resolution failed"}, []string{"fully validated"}},
	})
}

func TestNamedCheckzone(t *testing.T) {
	check := needTool(t, "named-checkzone", "bind9-utils")
	for _, signed := range []bool{false, true} {
		var key = testKey(t)
		if !signed {
			key = nil
		}
		c := buildTest(t, 2026, key)
		p := filepath.Join(t.TempDir(), "zone")
		var buf bytes.Buffer
		if err := WriteZoneFile(&buf, c); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := runTool(t, 20*time.Second, check, "-k", "fail", "-i", "full", testOrigin, p)
		if err != nil || !strings.Contains(out, "loaded serial 2026") || !strings.HasSuffix(out, "OK") {
			t.Errorf("named-checkzone (signed=%v): %v\n%s\n%s", signed, err, out, buf.String())
		}
	}
	// And it does reject what it should: the check can fail.
	p := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(p, []byte("$ORIGIN imvu042.world.\n@ 3600 IN SOA ns1 hm 1 2 3 4 5\n@ NS ns1\nwww CNAME a\nwww A 10.0.0.1\n"), 0o644)
	if _, err := runTool(t, 20*time.Second, check, testOrigin, p); err == nil {
		t.Error("named-checkzone accepted CNAME and other data")
	}
}

// The signed zone a secondary gets by AXFR passes dnssec-verify: a complete
// NSEC chain and valid signatures everywhere they belong.
func TestDNSSECVerifyOnTransfer(t *testing.T) {
	verify := needTool(t, "dnssec-verify", "bind9-utils")
	c := buildTest(t, 3, testKey(t))
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig("127.0.0.1:9")}}, c)
	rrs, err := axfr(t, s.Addr(), testOrigin, tsigName, tsigSecret, mdns.TypeAXFR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, rr := range rrs[:len(rrs)-1] {
		buf.WriteString(rr.String() + "\n")
	}
	p := filepath.Join(t.TempDir(), "signed.zone")
	os.WriteFile(p, buf.Bytes(), 0o644)
	// -z: one key (flags 257) signs everything, as a CSK does.
	out, err := runTool(t, 30*time.Second, verify, "-z", "-o", testOrigin, p)
	if err != nil || !strings.Contains(out, "Zone fully signed") {
		t.Errorf("dnssec-verify: %v\n%s", err, out)
	}
	// A broken chain is caught (the check can fail).
	broken := strings.Replace(buf.String(), "NSEC\twww.imvu042.world.", "NSEC\tzzz.imvu042.world.", 1)
	os.WriteFile(p, []byte(broken), 0o644)
	if // -z: one key (flags 257) signs everything, as a CSK does.
	out, err := runTool(t, 30*time.Second, verify, "-z", "-o", testOrigin, p); err == nil {
		t.Errorf("dnssec-verify accepted a broken NSEC chain:\n%s", out)
	}
}

// freePort returns a loopback port free for both UDP and TCP.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// waitSerial polls addr until the zone's SOA has the serial.
func waitSerial(t *testing.T, addr, zone string, serial uint32, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	cl := &mdns.Client{Timeout: 500 * time.Millisecond}
	var last string
	for time.Now().Before(deadline) {
		m := new(mdns.Msg)
		m.SetQuestion(zone, mdns.TypeSOA)
		if r, _, err := cl.Exchange(m, addr); err == nil {
			if len(r.Answer) == 1 {
				if soa, ok := r.Answer[0].(*mdns.SOA); ok && soa.Serial == serial {
					return
				}
			}
			last = mdns.RcodeToString[r.Rcode]
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not serve %s serial %d within %v (last: %s)", addr, zone, serial, within, last)
}

// TestKnotSecondary makes knotd a secondary: it pulls both zones by AXFR
// with TSIG, serves the same answers, and picks up a new serial right after
// our NOTIFY (its refresh timer is an hour away). The signed zone it serves
// validates with delv.
func TestKnotSecondary(t *testing.T) {
	knotd := needTool(t, "knotd", "knot")
	dir := t.TempDir()
	kport := freePort(t)
	kaddr := "127.0.0.1:" + strconv.Itoa(kport)
	signedZone, err := Build(Zone{Origin: "imvu043.world", IMVU: "imvu043", Serial: 1, Key: testKey(t), Records: []Record{
		{"www", "A", 300, "10.4.3.1"}, {"*.dev", "A", 300, "10.4.3.2"}, {"@", "MX", 300, "10 mail"}, {"mail", "A", 300, "10.4.3.3"},
	}}, []string{"ns.example.net."}, "")
	if err != nil {
		t.Fatal(err)
	}
	// A zone big enough to need several AXFR messages, each TSIG-signed in
	// sequence (RFC 8945 5.3.1).
	var many []Record
	for i := 0; i < 3000; i++ {
		many = append(many, Record{"host" + strconv.Itoa(i), "TXT", 300, `"` + strings.Repeat("x", 40) + `"`})
	}
	bigZone, err := Build(Zone{Origin: "imvu044.world", IMVU: "imvu044", Serial: 7, Records: many}, []string{"ns.example.net."}, "")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{Secondaries: []Secondary{secondaryConfig(kaddr)}}, buildTest(t, 1, nil), signedZone, bigZone)
	_, nport := hostPort(t, s.Addr())
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
database:
    storage: "%[1]s/db"
key:
  - id: %[4]s
    algorithm: hmac-sha256
    secret: %[5]s
remote:
  - id: nexus
    address: 127.0.0.1@%[3]s
    key: %[4]s
acl:
  - id: notify_from_nexus
    address: 127.0.0.1
    key: %[4]s
    action: notify
template:
  - id: default
    storage: "%[1]s/zones"
    master: nexus
    acl: notify_from_nexus
zone:
  - domain: imvu042.world
  - domain: imvu043.world
  - domain: imvu044.world
log:
  - target: stderr
    any: info
`, dir, kport, nport, tsigName, tsigSecret)
	cf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "zones"), 0o755)
	log := new(lockedBuffer)
	cmd := exec.Command(knotd, "-c", cf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() || testing.Verbose() {
			t.Logf("knotd log:\n%s", log.String())
		}
	})

	waitSerial(t, kaddr, testOrigin, 1, 20*time.Second)
	waitSerial(t, kaddr, "imvu043.world.", 1, 20*time.Second)
	waitSerial(t, kaddr, "imvu044.world.", 7, 20*time.Second)
	if r := ask(t, kaddr, "host2999.imvu044.world.", mdns.TypeTXT); len(r.Answer) != 1 {
		t.Errorf("knot lacks the last record of the big zone: %v", r)
	}
	if !strings.Contains(log.String(), "[imvu044.world.] AXFR, incoming, remote 127.0.0.1@"+nport+", finished") ||
		strings.Contains(log.String(), "[imvu044.world.] AXFR, incoming, remote 127.0.0.1@"+nport+", finished, 0.00 seconds, 1 messages") {
		t.Errorf("the big zone was not transferred in several messages")
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"www" + z, mdns.TypeA}, {testOrigin, mdns.TypeMX}, {"nothing" + z, mdns.TypeA}, {"foo.stage" + z, mdns.TypeTXT},
		{"chain" + z, mdns.TypeA}, {"b.stage" + z, mdns.TypeA}, {"_sip._tcp" + z, mdns.TypeSRV}, {"www" + z, mdns.TypeMX},
	} {
		ours, theirs := ask(t, s.Addr(), q.name, q.qtype), ask(t, kaddr, q.name, q.qtype)
		if ours.Rcode != theirs.Rcode || !equalStrings(texts(ours.Answer), texts(theirs.Answer)) {
			t.Errorf("%s %s: nexus %s %q, knot %s %q", q.name, mdns.TypeToString[q.qtype], mdns.RcodeToString[ours.Rcode], texts(ours.Answer),
				mdns.RcodeToString[theirs.Rcode], texts(theirs.Answer))
		}
	}

	// A new serial reaches knot through NOTIFY, not its hourly refresh.
	recs := append(testRecords(), Record{"new", "A", 300, "10.0.0.99"})
	next, err := Build(Zone{Origin: testOrigin, IMVU: "imvu042", Serial: 2, Records: recs}, []string{"ns1", "ns2.example.net."}, "hostmaster@imvu042.world")
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(next)
	waitSerial(t, kaddr, testOrigin, 2, 10*time.Second)
	if r := ask(t, kaddr, "new"+z, mdns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "10.0.0.99" {
		t.Errorf("knot after NOTIFY: %v", r)
	}
	if !strings.Contains(log.String(), "notify") && !strings.Contains(log.String(), "NOTIFY") {
		t.Errorf("knot's log shows no NOTIFY:\n%s", log.String())
	}

	// Knot serves the signed zone as we signed it, and it validates.
	delv := needTool(t, "delv", "bind9-dnsutils")
	anchor := writeAnchor(t, t.TempDir(), signedZone.DNSKEY())
	runToolCases(t, delv, kaddr, []toolCase{
		{"knot signed positive", []string{"-a", anchor, "+root=imvu043.world", "www.imvu043.world", "A"}, []string{"; fully validated", "10.4.3.1"}, nil},
		{"knot signed NXDOMAIN", []string{"-a", anchor, "+root=imvu043.world", "nothing.imvu043.world", "A"}, []string{"; negative response, fully validated"}, nil},
		{"knot signed wildcard", []string{"-a", anchor, "+root=imvu043.world", "x.dev.imvu043.world", "A"}, []string{"; fully validated", "10.4.3.2"}, nil},
	})
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
