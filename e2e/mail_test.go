package e2e

import (
	"bytes"
	"encoding/base64"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"
)

// listener returns the address `nexus status` shows for a named listener.
func (n *node) listener(t *testing.T, name string) string {
	t.Helper()
	for _, l := range n.status(t).Listeners {
		if l.Name == name {
			return l.Address
		}
	}
	t.Fatalf("no %s listener", name)
	return ""
}

// imapFetch logs in with Python's imaplib over STARTTLS and returns every
// message of INBOX, or the error imaplib raised.
func imapFetch(t *testing.T, addr, user, pass string) ([][]byte, string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	script := `
import imaplib, ssl, sys, base64
c = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c.starttls(ssl_context=ctx)
try:
    c.login(sys.argv[3], sys.argv[4])
except Exception as e:
    print("LOGIN-FAILED", e); sys.exit(0)
c.select("INBOX")
typ, data = c.fetch("1:*", "(BODY.PEEK[])")
for part in data:
    if isinstance(part, tuple):
        print(base64.b64encode(part[1]).decode())
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, host, port, user, pass).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	if strings.HasPrefix(string(out), "LOGIN-FAILED") {
		return nil, string(out)
	}
	var msgs [][]byte
	for _, line := range strings.Fields(string(out)) {
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			t.Fatalf("imaplib output: %v", err)
		}
		msgs = append(msgs, b)
	}
	return msgs, ""
}

// TestMailWithRealClients: swaks submits as creator@imvu042.world over
// STARTTLS with AUTH; Python's imaplib reads it from team@'s INBOX; both DKIM
// signatures verify against the keys the daemon publishes in its own DNS; and
// the hostile cases (sending as another IMVU, logging in to another IMVU's
// mailbox, plaintext AUTH, relaying through MX) are refused.
func TestMailWithRealClients(t *testing.T) {
	t.Parallel()
	swaks := need(t, "swaks", "swaks")
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	n.createViaCLI(t, "imvu043")
	k42, k43 := n.keyFile("imvu042"), n.keyFile("imvu043")
	for _, c := range []struct{ addr, key, pw string }{
		{"creator@imvu042.world", k42, "pw-creator"}, {"team@imvu042.world", k42, "pw-team"}, {"creator@imvu043.world", k43, "pw-43"},
	} {
		args := []string{"mail", "add", c.addr, "--key", c.key, "--password-stdin"}
		if strings.HasPrefix(c.addr, "creator@") {
			args = []string{"mail", "passwd", c.addr, "--key", c.key, "--password-stdin"} // imvu create made it
		}
		cmd := exec.Command(nexusBin, append(args, "--data", n.dir)...)
		cmd.Stdin = strings.NewReader(c.pw + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nexus %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sub, mx, imap := n.listener(t, "submission"), n.listener(t, "smtp"), n.listener(t, "imap")
	send := func(args ...string) (string, int) {
		cmd := exec.Command(swaks, append([]string{"--timeout", "20"}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := send("--server", sub, "--tls", "--auth", "PLAIN", "--auth-user", "creator@imvu042.world", "--auth-password", "pw-creator",
		"--from", "creator@imvu042.world", "--to", "team@imvu042.world", "--header", "Subject: hello team")
	if code != 0 {
		t.Fatalf("swaks submission: exit %d\n%s", code, out)
	}
	var msgs [][]byte
	deadline := time.Now().Add(15 * time.Second)
	for len(msgs) == 0 && time.Now().Before(deadline) {
		msgs, _ = imapFetch(t, imap, "team@imvu042.world", "pw-team")
		time.Sleep(200 * time.Millisecond)
	}
	if len(msgs) != 1 || !bytes.Contains(msgs[0], []byte("Subject: hello team")) {
		t.Fatalf("team@'s INBOX holds %d messages", len(msgs))
	}

	// Both DKIM signatures verify with the keys in the daemon's own zone.
	dnsAddr := n.listener(t, "dns")
	lookup := func(name string) ([]string, error) {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeTXT)
		r, err := mdns.Exchange(m, dnsAddr)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rr := range r.Answer {
			if txt, ok := rr.(*mdns.TXT); ok {
				out = append(out, strings.Join(txt.Txt, ""))
			}
		}
		return out, nil
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msgs[0]), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(verifs) != 2 {
		t.Fatalf("dkim: %v, %d signatures", err, len(verifs))
	}
	for _, v := range verifs {
		if v.Err != nil || v.Domain != "imvu042.world" {
			t.Fatalf("dkim signature %+v", v)
		}
	}

	// Hostile: each refused, nothing delivered.
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"send as another IMVU's address", []string{"--server", sub, "--tls", "--auth", "PLAIN", "--auth-user", "creator@imvu042.world",
			"--auth-password", "pw-creator", "--from", "creator@imvu043.world", "--to", "team@imvu042.world"}, "550"},
		{"send with a forged header From", []string{"--server", sub, "--tls", "--auth", "PLAIN", "--auth-user", "creator@imvu042.world",
			"--auth-password", "pw-creator", "--from", "creator@imvu042.world", "--to", "team@imvu042.world", "--header", "From: creator@imvu043.world"}, "550"},
		{"AUTH without TLS", []string{"--server", sub, "--auth", "PLAIN", "--auth-user", "creator@imvu042.world", "--auth-password", "pw-creator",
			"--from", "creator@imvu042.world", "--to", "team@imvu042.world"}, ""},
		{"another IMVU's password", []string{"--server", sub, "--tls", "--auth", "PLAIN", "--auth-user", "creator@imvu042.world",
			"--auth-password", "pw-43", "--from", "creator@imvu042.world", "--to", "team@imvu042.world"}, "535"},
		{"relay through MX", []string{"--server", mx, "--from", "x@example.org", "--to", "someone@example.com"}, "550"},
	} {
		out, code := send(c.args...)
		if code == 0 || (c.want != "" && !strings.Contains(out, c.want)) {
			t.Errorf("%s: swaks exit %d, want a refusal %s\n%s", c.name, code, c.want, tail(out, 600))
		}
	}
	if _, failed := imapFetch(t, imap, "team@imvu042.world", "pw-43"); failed == "" {
		t.Error("imvu043's password opened imvu042's mailbox")
	}
	if _, failed := imapFetch(t, imap, "creator@imvu043.world", "pw-team"); failed == "" {
		t.Error("imvu042's password opened imvu043's mailbox")
	}
	time.Sleep(500 * time.Millisecond)
	if got, _ := imapFetch(t, imap, "team@imvu042.world", "pw-team"); len(got) != 1 {
		t.Fatalf("after the hostile attempts team@ holds %d messages, want 1", len(got))
	}
	// A restart re-reads the queue: the delivered message is not sent again.
	n.restart(t)
	imap = n.listener(t, "imap")
	time.Sleep(1500 * time.Millisecond)
	if got, _ := imapFetch(t, imap, "team@imvu042.world", "pw-team"); len(got) != 1 {
		t.Fatalf("after a restart team@ holds %d messages, want 1", len(got))
	}
}
