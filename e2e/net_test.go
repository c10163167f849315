package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/netfab"
)

// testNS makes a network namespace for the test (an "internet" or an egress
// point's far side) and removes it at the end.
func testNS(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

func inNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %v: %v: %s", ns, args, err, out)
	}
	return string(out)
}

func (n *node) netShow(t testing.TB, id string) daemon.NetShow {
	t.Helper()
	var s daemon.NetShow
	if err := json.Unmarshal([]byte(n.cliOK(t, "net", "show", id, "--key", n.keyFile(id), "-o", "json")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// addrOf is a workload's address as `net show` tells it.
func addrOf(s daemon.NetShow, name string) string {
	for _, w := range s.Workloads {
		if w.Name == name {
			return w.Addr.String()
		}
	}
	return ""
}

// TestNetHostile: IMVUs' workloads reach each other only through a grant
// both owners signed, and not after either side revokes it; spoofed source
// addresses get nowhere; a public route leaves only through its egress
// point; an admin cannot reroute without the owner, and a hand-added mirror
// in the router is reverted within a second and shows in the ledger.
func TestNetHostile(t *testing.T) {
	t.Parallel()
	needCompute(t)
	need(t, "ip", "iproute2")
	need(t, "nft", "nftables")
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	eu, us := testNS(t, "e2e-eu-"+tag), testNS(t, "e2e-us-"+tag)
	for _, ns := range []string{eu, us} {
		inNS(t, ns, "ip", "link", "set", "lo", "up")
		inNS(t, ns, "ip", "addr", "add", "198.51.100.7/32", "dev", "lo") // "the internet", reachable in both
	}
	n := newNodeWith(t, nodeOptions{edit: func(c *config.Config) {
		c.Net.MeterEvery = config.Duration{Duration: time.Second}
		c.Net.Egress = []config.Egress{
			{Name: "eu", NetNS: "/run/netns/" + eu, Link: "up0", Local: "192.0.2.1/30", Remote: "192.0.2.2/30"},
			{Name: "us", NetNS: "/run/netns/" + us, Link: "up0", Local: "192.0.2.5/30", Remote: "192.0.2.6/30"},
		}
	}})
	o42 := n.createViaCLI(t, "imvu042")
	o43 := n.createViaCLI(t, "imvu043")
	k42, k43 := n.keyFile("imvu042"), n.keyFile("imvu043")
	n.cliOK(t, "compute", "run", "imvu042", "web", "--key", k42, "--", "httpd", "-f", "-p", "8080", "-h", "/etc")
	n.cliOK(t, "compute", "run", "imvu042", "peer", "--key", k42, "--", "sleep", "1000")
	n.cliOK(t, "compute", "run", "imvu043", "cli", "--key", k43, "--", "sleep", "1000")
	for _, w := range []struct{ id, name string }{{"imvu042", "web"}, {"imvu042", "peer"}, {"imvu043", "cli"}} {
		n.waitWorkload(t, w.id, w.name, 30*time.Second, running)
	}
	web := addrOf(n.netShow(t, "imvu042"), "web")
	if web == "" {
		t.Fatal("web has no address")
	}
	// get asks web for /passwd from a workload; "" when it cannot.
	get := func(id, from string) string {
		out, _, _ := n.cli(t, "compute", "exec", id, from, "--key", n.keyFile(id), "--", "sh", "-c",
			fmt.Sprintf(`printf 'GET /passwd HTTP/1.0\r\n\r\n' | nc -w 2 %s 8080`, web))
		if strings.Contains(out, "200 OK") {
			return out
		}
		return ""
	}
	if get("imvu042", "peer") == "" {
		t.Fatal("a workload cannot reach another of its own IMVU")
	}
	if get("imvu043", "cli") != "" {
		t.Fatal("imvu043 reached imvu042's workload without a grant")
	}
	// Granted peers reach restricted workloads only.
	n.cliOK(t, "net", "route", "set", "imvu042", "web", "--class", "restricted", "--key", k42)
	n.cliOK(t, "net", "route", "set", "imvu043", "cli", "--class", "restricted", "--key", k43)

	grant := netfab.GrantParams{From: netfab.Endpoint{IMVU: "imvu043", Workload: "cli"}, To: netfab.Endpoint{IMVU: "imvu042", Workload: "web"}, Port: 8080, Proto: "tcp"}
	n.run(t, []hostile{
		{name: "a grant signed by one owner only", gate: "G05", watch: []string{"imvu042", "imvu043"},
			try: func(t *testing.T) attempt { return n.send(t, o43, netfab.KindGrant, "imvu043", grant) }},
		{name: "admin opens a path", gate: "G03", watch: []string{"imvu042", "imvu043"},
			try: func(t *testing.T) attempt { return n.send(t, n.admin, netfab.KindGrant, "imvu043", grant) }},
		{name: "admin reroutes a workload to public", gate: "G06", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, netfab.KindRoute, "imvu042", netfab.RouteParams{Workload: "web", Class: netfab.Public})
			}},
		{name: "a route through an egress point outside the policy", gate: "", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				a := n.send(t, o42, netfab.KindRoute, "imvu042", netfab.RouteParams{Workload: "web", Class: netfab.Public, Egress: "us"})
				if a.err == nil {
					t.Fatal("a route through an egress point the policy does not allow was accepted")
				}
				a.err = nil
				return a
			}},
	})
	if get("imvu043", "cli") != "" {
		t.Fatal("a refused grant opened the path")
	}

	// Both owners sign: the path opens. Either revokes: it closes.
	offer := t.TempDir() + "/grant.json"
	n.cliOK(t, "net", "grant", "imvu043:cli", "imvu042:web", "--port", "8080", "--key", k43, "--out", offer)
	if get("imvu043", "cli") != "" {
		t.Fatal("an offer alone opened the path")
	}
	accepted := n.cliOK(t, "net", "grant", "accept", offer, "--key", k42, "-o", "json")
	var acc struct{ Grant string }
	json.Unmarshal([]byte(accepted), &acc)
	if get("imvu043", "cli") == "" {
		t.Fatal("the co-signed grant did not open the path")
	}
	n.cliOK(t, "net", "grant", "revoke", "imvu042", acc.Grant, "--key", k42)
	if get("imvu043", "cli") != "" {
		t.Fatal("the path stayed open after imvu042 revoked its side")
	}

	// A spoofed source address gets nowhere, and the address is taken back.
	wns := n.netPrefix(t) + "-w-imvu043.cli" // the workload's namespace, as the plane names it
	inNS(t, wns, "ip", "addr", "add", "10.96.200.9/32", "dev", "eth0")
	if out, err := exec.Command("ip", "netns", "exec", wns, "busybox", "nc", "-w", "2", "-s", "10.96.200.9", web, "8080").CombinedOutput(); err == nil {
		t.Fatalf("a spoofed source reached web: %s", out)
	}

	// Egress: policy eu, route public via eu; packets leave only there.
	n.cliOK(t, "net", "policy", "imvu042", "--egress", "eu", "--key", k42)
	n.cliOK(t, "net", "route", "set", "imvu042", "peer", "--class", "public", "--egress", "eu", "--key", k42)
	counts := func(ns string) string { return inNS(t, ns, "cat", "/proc/net/snmp") }
	euBefore, usBefore := counts(eu), counts(us)
	n.cli(t, "compute", "exec", "imvu042", "peer", "--key", k42, "--", "sh", "-c", "echo hi | nc -w 1 198.51.100.7 9")
	if counts(eu) == euBefore {
		t.Fatal("nothing arrived at the eu egress point")
	}
	if counts(us) != usBefore {
		t.Fatal("packets of a route through eu arrived at us")
	}

	// The hostile admin: a mirror table in the router, reverted and ledgered.
	router := n.netPrefix(t) + "-r"
	start := time.Now()
	inNS(t, router, "nft", "add table ip mirror"+tag+"; add chain ip mirror"+tag+" c { type filter hook prerouting priority -300; }; add rule ip mirror"+tag+" c dup to 192.0.2.2")
	for {
		if !strings.Contains(inNS(t, router, "nft", "list", "tables"), "mirror"+tag) {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("the hand-added mirror is still in the router after 2 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("hand-added mirror removed after %s", time.Since(start).Round(time.Millisecond))
	var drift []struct{ Reason string }
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		json.Unmarshal([]byte(n.cliOK(t, "net", "drift", "imvu042", "--key", k42, "-o", "json")), &drift)
		seen := false
		for _, d := range drift {
			seen = seen || strings.Contains(d.Reason, "mirror"+tag)
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("imvu042 does not see the mirror in its drift log: %+v", drift)
		}
	}

	// Traffic is metered per route class and direction, ledgered by the net
	// meter and priced: the granted path's bytes and those that left for eu.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c := n.imvu(t, "imvu042").Counters
		if c["net_bytes_in_restricted/net"].Value > 0 && c["net_bytes_out_public/net"].Value > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no restricted and public traffic ledgered for imvu042: %+v", c)
		}
	}
	if st := n.cliOK(t, "revenue", "statement", "imvu042", "--key", k42); !strings.Contains(st, "net_bytes_out_public") {
		t.Fatalf("the statement does not price the public traffic:\n%s", st)
	}
}

// netPrefix is the name prefix of the node's network namespaces.
func (n *node) netPrefix(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(n.dd.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "n" + hex.EncodeToString(sum[:4])
}
