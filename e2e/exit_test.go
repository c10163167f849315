package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// TestExitAndImport drives the exit of shared/spec/hostile-suites.md part 4
// with the CLI: one command exports the bundle, an offline verifier accepts it
// and refuses any altered copy, the platform can do nothing to the exiting IMVU
// but export it, data stays until the owner's signed acknowledgement, and the
// bundle restores on a second, fresh node.
func TestExitAndImport(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	key := n.keyFile("imvu042")
	n.cliOK(t, "dns", "set", "imvu042.world", "stage", "A", "10.0.0.5", "--key", key)
	n.cliOK(t, "domain", "bind", "imvu042-shop.world", "--imvu", "imvu042", "--key", key)
	n.cliOK(t, "dns", "set", "imvu042-shop.world", "@", "TXT", `"hello"`, "--key", key)
	// A message waits in creator@'s mailbox; it must leave with the IMVU.
	swaks := need(t, "swaks", "swaks")
	n.passwd(t, "creator@imvu042.world", key, "pw-exit")
	if out, err := exec.Command(swaks, "--timeout", "20", "--server", n.listener(t, "smtp"), "--from", "creator@imvu042.world",
		"--to", "creator@imvu042.world", "--header", "Subject: take me along").CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, tail(string(out), 1500))
	}
	meter := readKey(t, filepath.Join(n.dir, "platform", "meter-dns.key"))
	n.must(t, meter, handshake.KindUsage, "imvu042", usage("imvu042", "dns", "dns_queries", 7, time.Now()))

	out := filepath.Join(t.TempDir(), "imvu042.tar")
	if _, errOut, code := n.cli(t, "imvu", "ack-exit", "imvu042", "--bundle", out, "--key", key); code == 0 {
		t.Fatalf("acknowledged a bundle that does not exist: %s", errOut)
	}
	n.cliOK(t, "imvu", "exit", "imvu042", "--out", out, "--key", key)
	if got := n.imvu(t, "imvu042").Status; got != handshake.StatusExiting {
		t.Fatalf("status %s after exit, want exiting", got)
	}

	// The platform may not charge, resize or settle the exiting IMVU.
	o42 := n.owners["imvu042"]
	env := n.envelope(t, "imvu042")
	env.CPUMilli++
	n.run(t, []hostile{
		{name: "admin resizes the exiting IMVU with the owner's cosignature", gate: "G17", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: env}, o42)
			}},
		{name: "a meter charges the exiting IMVU", gate: "G17", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, meter, handshake.KindUsage, "imvu042", usage("imvu042", "dns", "dns_queries", 9, time.Now()))
			}},
		{name: "admin acknowledges the exit for the owner", gate: "G03", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindAck, "imvu042", handshake.AckParams{Bundle: strings.Repeat("0", 64)}, o42)
			}},
	})

	// Offline verification, with the daemon stopped: nothing of the platform runs.
	n.stop(t)
	verifyOut := n.cliOK(t, "bundle", "verify", out)
	if !strings.Contains(verifyOut, "ok: imvu042") || !strings.Contains(verifyOut, "imvu042-shop.world, imvu042.world") {
		t.Fatalf("bundle verify said:\n%s", verifyOut)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{700, len(raw) / 2, len(raw) - 2000} {
		bad := append([]byte(nil), raw...)
		bad[at] ^= 0x01
		p := filepath.Join(t.TempDir(), "bad.tar")
		os.WriteFile(p, bad, 0o600)
		if _, _, code := n.cli(t, "bundle", "verify", p); code != 1 {
			t.Errorf("a bundle with byte %d flipped: exit %d, want 1", at, code)
		}
	}
	n.start(t)

	// Data stays until the owner acknowledges; then the IMVU is exited.
	dir := filepath.Join(n.dir, "imvu", "imvu042")
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		t.Fatalf("state deleted before the acknowledgement: %v", err)
	}
	n.cliOK(t, "imvu", "ack-exit", "imvu042", "--bundle", out, "--key", key)
	if got := n.imvu(t, "imvu042").Status; got != handshake.StatusExited {
		t.Fatalf("status %s after the acknowledgement, want exited", got)
	}

	// A second, fresh node takes the bundle.
	n2 := newNode(t, "")
	n2.cliOK(t, "imvu", "import", out, "--key", key)
	var sum struct {
		Owner    string              `json:"owner"`
		Status   handshake.Status    `json:"status"`
		Envelope handshake.Resources `json:"envelope"`
	}
	n2.mustQuery(t, o42, "imvu.show", "imvu042", nil, &sum)
	if sum.Owner != identity.PublicOf(o42).String() || sum.Status != handshake.StatusActive || sum.Envelope != n.envelope(t, "imvu042") {
		t.Fatalf("imported IMVU %+v", sum)
	}
	// Its mailboxes are back, with the same passwords.
	var mail struct {
		Boxes map[string]any `json:"boxes"`
	}
	if err := json.Unmarshal([]byte(n2.cliOK(t, "mail", "ls", "imvu042", "--key", key, "-o", "json")), &mail); err != nil || mail.Boxes["creator@imvu042.world"] == nil {
		t.Fatalf("mailboxes on the new node: %v %+v", err, mail)
	}
	// And their messages, over IMAP, with the same password.
	var msgs [][]byte
	for deadline := time.Now().Add(15 * time.Second); len(msgs) == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		msgs, _ = imapFetch(t, n2.listener(t, "imap"), "creator@imvu042.world", "pw-exit")
	}
	if len(msgs) != 1 || !strings.Contains(string(msgs[0]), "Subject: take me along") {
		t.Fatalf("creator@ on the new node holds %d messages, want the one sent before the exit", len(msgs))
	}
	// It serves the same zones there.
	dig := need(t, "dig", "bind9-dnsutils")
	host, port := n2.dnsAddr(t)
	if got := strings.TrimSpace(run(t, dig, "@"+host, "-p", port, "+short", "stage.imvu042.world", "A")); got != "10.0.0.5" {
		t.Fatalf("the new node answers stage.imvu042.world with %q", got)
	}
	if got := strings.TrimSpace(run(t, dig, "@"+host, "-p", port, "+short", "imvu042-shop.world", "TXT")); got != `"hello"` {
		t.Fatalf("the new node answers imvu042-shop.world TXT with %q", got)
	}
	// And the old node no longer does: the names left with their owner.
	host1, port1 := n.dnsAddr(t)
	if got := run(t, dig, "@"+host1, "-p", port1, "stage.imvu042.world", "A"); !strings.Contains(got, "REFUSED") {
		t.Fatalf("the old node still serves the exited IMVU's zone:\n%s", got)
	}
}
