package smtpd

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

// swaks runs Debian's swaks against the server; it skips (or fails under
// NEXUS_REQUIRE_ALL=1) when swaks is not installed.
func swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("swaks")
	if err != nil {
		testenv.Missing(t, "%s", "swaks not installed (apt-get install swaks)")
	}
	out, err := exec.Command(path, append([]string{"--timeout", "10", "--helo", "sender.example"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestSwaks(t *testing.T) {
	e := startServer(t, nil)
	e.dns.setTXT("sender.example", "v=spf1 ip4:127.0.0.1 -all")

	t.Run("mx delivery", func(t *testing.T) {
		out, err := swaks(t, "--server", e.mx, "--from", "x@sender.example", "--to", alice.Address, "--header", "Subject: via swaks", "--body", "swaks body")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got := e.del.all()
		if len(got) != 1 || got[0].to != alice || !strings.Contains(got[0].msg, "swaks body") || !strings.Contains(got[0].msg, "spf=pass") {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("mx unknown user", func(t *testing.T) {
		out, err := swaks(t, "--server", e.mx, "--from", "x@sender.example", "--to", "nobody@nexus.test")
		if err == nil || !strings.Contains(out, "550 5.1.1") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("mx relay denied", func(t *testing.T) {
		out, err := swaks(t, "--server", e.mx, "--from", "x@sender.example", "--to", "x@elsewhere.example")
		if err == nil || !strings.Contains(out, "550 5.7.1") {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("auth without tls", func(t *testing.T) {
		out, err := swaks(t, "--server", e.sub, "--from", alice.Address, "--to", "x@elsewhere.example",
			"--auth", "PLAIN", "--auth-user", alice.Address, "--auth-password", "secret")
		if err == nil {
			t.Fatalf("AUTH without TLS succeeded\n%s", out)
		}
	})
	t.Run("submission starttls auth", func(t *testing.T) {
		out, err := swaks(t, "--server", e.sub, "--tls", "--from", alice.Address, "--to", "x@elsewhere.example",
			"--auth", "PLAIN", "--auth-user", alice.Address, "--auth-password", "secret", "--body", "from swaks")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		subs := e.relay.all()
		if len(subs) != 1 || subs[0].user != alice || !strings.Contains(subs[0].msg, "from swaks") {
			t.Fatalf("%+v", subs)
		}
	})
	t.Run("submission as another", func(t *testing.T) {
		out, err := swaks(t, "--server", e.sub, "--tls", "--from", bob.Address, "--to", "x@elsewhere.example",
			"--auth", "PLAIN", "--auth-user", alice.Address, "--auth-password", "secret")
		if err == nil || !strings.Contains(out, "550 5.7.1") {
			t.Fatalf("envelope as bob: %v\n%s", err, out)
		}
		out, err = swaks(t, "--server", e.sub, "--tls", "--from", alice.Address, "--h-From", bob.Address, "--to", "x@elsewhere.example",
			"--auth", "PLAIN", "--auth-user", alice.Address, "--auth-password", "secret")
		if err == nil || !strings.Contains(out, "550 5.7.1") {
			t.Fatalf("header as bob: %v\n%s", err, out)
		}
		if n := len(e.relay.all()); n != 1 {
			t.Fatal("relayed", n)
		}
	})
}
