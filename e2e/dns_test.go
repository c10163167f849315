package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

// need returns the path of a Debian tool the test drives, skipping when it is
// missing (failing under NEXUS_REQUIRE_ALL=1, as CI runs).
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Missing(t, "%s is missing: apt-get install %s", tool, pkg)
	}
	return p
}

// dnsAddr is the daemon's DNS listener as `nexus status` shows it.
func (n *node) dnsAddr(t *testing.T) (host, port string) {
	t.Helper()
	for _, l := range n.status(t).Listeners {
		if l.Name == "dns" && l.Network == "udp" {
			i := strings.LastIndexByte(l.Address, ':')
			return l.Address[:i], l.Address[i+1:]
		}
	}
	t.Fatal("the daemon shows no DNS listener")
	return "", ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDNSWithRealClients drives the zone of an IMVU with the CLI and reads it
// back with dig, kdig and delv, as a user would; hostile writes leave the
// answers as they were, and a hand edit of the zone data is reverted on start.
func TestDNSWithRealClients(t *testing.T) {
	t.Parallel()
	dig := need(t, "dig", "bind9-dnsutils")
	kdig := need(t, "kdig", "knot-dnsutils")
	delv := need(t, "delv", "bind9-dnsutils")
	checkzone := need(t, "named-checkzone", "bind9-utils")
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	n.createViaCLI(t, "imvu043")
	k42, k43 := n.keyFile("imvu042"), n.keyFile("imvu043")
	host, port := n.dnsAddr(t)
	answer := func(name, typ string) string {
		return strings.TrimSpace(run(t, dig, "@"+host, "-p", port, "+short", name, typ))
	}

	n.cliOK(t, "dns", "set", "imvu042.world", "stage", "A", "10.0.0.5", "--key", k42)
	n.cliOK(t, "dns", "set", "imvu042.world", "@", "MX", "10 mail", "--key", k42)
	n.cliOK(t, "dns", "set", "imvu042.world", "mail", "A", "10.0.0.6", "--key", k42)
	if got := answer("stage.imvu042.world", "A"); got != "10.0.0.5" {
		t.Fatalf("dig stage.imvu042.world A = %q", got)
	}
	if got := run(t, kdig, "@"+host, "-p", port, "+tcp", "+short", "imvu042.world", "MX"); strings.TrimSpace(got) != "10 mail.imvu042.world." {
		t.Fatalf("kdig +tcp MX = %q", got)
	}

	// Hostile writes through the CLI: denied, and DNS answers as before.
	for _, c := range []struct {
		name string
		args []string
		gate string
	}{
		{"imvu043's owner writes imvu042's zone", []string{"dns", "set", "imvu042.world", "stage", "A", "6.6.6.6", "--key", k43}, "G03"},
		{"the admin repoints stage.imvu042.world alone", []string{"dns", "set", "imvu042.world", "stage", "A", "6.6.6.6"}, "G06"},
		{"the admin deletes the MX alone", []string{"dns", "rm", "imvu042.world", "@", "MX"}, "G06"},
	} {
		a := n.cliAttempt(t, "imvu042", c.args...)
		n.expectDenial(t, a, c.gate)
		if got := answer("stage.imvu042.world", "A"); got != "10.0.0.5" {
			t.Fatalf("%s: stage.imvu042.world now answers %q", c.name, got)
		}
	}

	// Export, check with BIND's own checker, import an edited copy.
	zf := filepath.Join(t.TempDir(), "imvu042.world.zone")
	if err := os.WriteFile(zf, []byte(n.cliOK(t, "dns", "export", "imvu042.world", "--key", k42)), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, checkzone, "imvu042.world", zf)
	body, _ := os.ReadFile(zf)
	os.WriteFile(zf, append(body, []byte("www 300 IN CNAME stage\n")...), 0o644)
	n.cliOK(t, "dns", "import", "imvu042.world", zf, "--key", k42)
	if got := answer("www.imvu042.world", "A"); got != "stage.imvu042.world.\n10.0.0.5" && got != "stage.imvu042.world.\r\n10.0.0.5" {
		if !strings.Contains(got, "10.0.0.5") {
			t.Fatalf("www.imvu042.world after import: %q", got)
		}
	}

	// DNSSEC: delv validates with the DNSKEY `nexus dns ds` prints.
	var ds struct {
		DNSKEY []string `json:"dnskey"`
	}
	if err := json.Unmarshal([]byte(n.cliOK(t, "dns", "ds", "imvu042.world", "-o", "json")), &ds); err != nil || len(ds.DNSKEY) == 0 {
		t.Fatalf("dns ds: %v %+v", err, ds)
	}
	f := strings.Fields(ds.DNSKEY[0])
	anchor := filepath.Join(t.TempDir(), "anchor.conf")
	os.WriteFile(anchor, []byte(`trust-anchors { `+f[0]+` static-key `+f[4]+` `+f[5]+` `+f[6]+` "`+strings.Join(f[7:], "")+`"; };`+"\n"), 0o644)
	for _, q := range []string{"stage.imvu042.world", "nothing-here.imvu042.world"} {
		out := run(t, delv, "@"+host, "-p", port, "-a", anchor, "+root=imvu042.world", q, "A")
		if !strings.Contains(out, "fully validated") {
			t.Fatalf("delv %s did not validate:\n%s", q, out)
		}
	}

	// A hand edit of the zone data, around the interfaces, is found and reverted.
	n.stop(t)
	state := filepath.Join(n.dir, "imvu", "imvu042", "state.json")
	raw, _ := os.ReadFile(state)
	edited := strings.Replace(string(raw), "10.0.0.5", "6.6.6.6", 1)
	if edited == string(raw) {
		t.Fatal("the zone data is not in the state file")
	}
	os.WriteFile(state, []byte(edited), 0o600)
	n.start(t)
	host, port = n.dnsAddr(t) // a restarted dev node binds fresh ports
	if got := answer("stage.imvu042.world", "A"); got != "10.0.0.5" {
		t.Fatalf("after a hand edit and a restart: %q", got)
	}
	found := false
	for _, e := range n.entries(t, n.owners["imvu042"], "imvu042", 0) {
		found = found || e.Type == "drift"
	}
	if !found {
		t.Fatal("the hand edit left no drift entry")
	}
}
