package mailq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestDeliverSignedEndToEnd(t *testing.T) {
	h := newHarness(t)
	mx, _ := startMX(t, "127.0.0.2", h.port)
	h.res.mx["remote.test"] = []*net.MX{{Host: "mx.remote.test.", Pref: 10}}
	h.res.hosts["mx.remote.test"] = []string{"127.0.0.2"}
	q := h.queue()
	h.run(q)

	id, err := q.Enqueue(context.Background(), "imvu-a", "alice@example.com", []string{"bob@remote.test"},
		testMsg("alice@example.com", "bob@remote.test", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return len(mx.messages()) == 1 })
	waitFor(t, "queue empty", func() bool { return pending(t, q, "imvu-a") == 0 })

	got := mx.messages()[0]
	if got.from != "alice@example.com" || len(got.rcpts) != 1 || got.rcpts[0] != "bob@remote.test" {
		t.Fatalf("envelope at receiver: %+v", got)
	}
	if !bytes.Contains(got.data, []byte("a=ed25519-sha256")) || !bytes.Contains(got.data, []byte("a=rsa-sha256")) {
		t.Fatalf("want Ed25519 and RSA signatures:\n%s", got.data)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got.data), &dkim.VerifyOptions{LookupTXT: h.keys.lookupTXT})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("%d signatures, want 2", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "example.com" {
			t.Errorf("signature d=%s: %v", v.Domain, v.Err)
		}
	}
	u := q.Counts()["imvu-a"]
	if u.Messages != 1 || u.Bytes < int64(len(got.data))-5 {
		t.Errorf("Counts = %+v, received %d bytes", u, len(got.data))
	}
	// The envelope goes first, the message file right after it.
	waitFor(t, "message file removed", func() bool {
		_, err := os.Stat(filepath.Join(h.root, "imvu", "imvu-a", "mail", "queue", id+msgExt))
		return os.IsNotExist(err)
	})
	pythonVerify(t, got.data, 2, h.keys.txt)
}

// pythonVerify checks every DKIM signature with Debian's python3-dkim.
func pythonVerify(t *testing.T, msg []byte, n int, txt map[string]string) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import dkim, nacl").Run(); err != nil {
		testenv.Missing(t, "python3-dkim (with python3-nacl for Ed25519) not installed: %v", err)
	}
	f := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(f, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	tj, _ := json.Marshal(txt)
	script := `
import dkim, json, sys
msg = open(sys.argv[1], 'rb').read()
txt = json.loads(sys.argv[2])
def dnsfunc(name, timeout=5):
    return txt.get(name.decode().rstrip('.'), '').encode()
d = dkim.DKIM(msg)
print(all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(int(sys.argv[3]))))
`
	out, err := exec.Command(py, "-c", script, f, string(tj), strconv.Itoa(n)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "True" {
		t.Fatalf("python3-dkim verify: %v\n%s", err, out)
	}
}

func TestMXPreferenceAndFallback(t *testing.T) {
	h := newHarness(t)
	low, _ := startMX(t, "127.0.0.3", h.port)
	high, _ := startMX(t, "127.0.0.4", h.port)
	bare, _ := startMX(t, "127.0.0.6", h.port)
	// pref.test: both up, the lower preference wins.
	h.res.mx["pref.test"] = []*net.MX{{Host: "b.pref.test", Pref: 20}, {Host: "a.pref.test", Pref: 10}}
	h.res.hosts["a.pref.test"] = []string{"127.0.0.3"}
	h.res.hosts["b.pref.test"] = []string{"127.0.0.4"}
	// down.test: the preferred exchanger refuses connections (nothing
	// listens on 127.0.0.5), the next one takes the message.
	h.res.mx["down.test"] = []*net.MX{{Host: "a.down.test", Pref: 5}, {Host: "b.down.test", Pref: 50}}
	h.res.hosts["a.down.test"] = []string{"127.0.0.5"}
	h.res.hosts["b.down.test"] = []string{"127.0.0.4"}
	// bare.test: no MX at all, its own address is used (RFC 5321 5.1).
	h.res.hosts["bare.test"] = []string{"127.0.0.6"}
	q := h.queue()
	h.run(q)
	ctx := context.Background()
	for _, to := range []string{"x@pref.test", "y@down.test", "z@bare.test"} {
		if _, err := q.Enqueue(ctx, "imvu-a", "alice@example.com", []string{to}, testMsg("alice@example.com", to, "mx")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all delivered", func() bool { return pending(t, q, "imvu-a") == 0 })
	if low.countFor("x@pref.test") != 1 || high.countFor("x@pref.test") != 0 {
		t.Errorf("preference: low %d high %d", low.countFor("x@pref.test"), high.countFor("x@pref.test"))
	}
	if high.countFor("y@down.test") != 1 {
		t.Errorf("fallback MX got %d", high.countFor("y@down.test"))
	}
	if bare.countFor("z@bare.test") != 1 {
		t.Errorf("implicit MX got %d", bare.countFor("z@bare.test"))
	}
}

func TestTempFailureRetriedWithoutDuplicate(t *testing.T) {
	h := newHarness(t)
	a, _ := startMX(t, "127.0.0.7", h.port)
	b, _ := startMX(t, "127.0.0.8", h.port)
	b.rcptFn = func(rcpt string, n int) error {
		if n <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}
	h.res.mx["a.test"] = []*net.MX{{Host: "mx.a.test", Pref: 1}}
	h.res.mx["b.test"] = []*net.MX{{Host: "mx.b.test", Pref: 1}}
	h.res.hosts["mx.a.test"] = []string{"127.0.0.7"}
	h.res.hosts["mx.b.test"] = []string{"127.0.0.8"}
	q := h.queue()
	h.run(q)
	if _, err := q.Enqueue(context.Background(), "imvu-a", "alice@example.com", []string{"u@a.test", "v@b.test"},
		testMsg("alice@example.com", "u@a.test", "retry")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered after retries", func() bool { return pending(t, q, "imvu-a") == 0 })
	if n := a.countFor("u@a.test"); n != 1 {
		t.Errorf("a.test received %d copies, want 1", n)
	}
	if n := b.countFor("v@b.test"); n != 1 {
		t.Errorf("b.test received %d copies, want 1", n)
	}
	if n := len(h.boxes.get("alice@example.com")); n != 0 {
		t.Errorf("%d DSNs for a temporary failure", n)
	}
}

func TestPermanentFailureOneDSN(t *testing.T) {
	h := newHarness(t)
	mx, _ := startMX(t, "127.0.0.9", h.port)
	mx.rcptFn = func(rcpt string, n int) error {
		if strings.HasPrefix(rcpt, "nobody") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	h.res.mx["perm.test"] = []*net.MX{{Host: "mx.perm.test", Pref: 1}}
	h.res.hosts["mx.perm.test"] = []string{"127.0.0.9"}
	q := h.queue()
	h.run(q)
	if _, err := q.Enqueue(context.Background(), "imvu-a", "alice@example.com",
		[]string{"nobody@perm.test", "nobody2@perm.test", "ok@perm.test"}, testMsg("alice@example.com", "ok@perm.test", "perm")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "queue empty", func() bool { return pending(t, q, "imvu-a") == 0 })
	time.Sleep(200 * time.Millisecond) // room for a wrong second DSN
	dsns := h.boxes.get("alice@example.com")
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	d := string(dsns[0])
	for _, want := range []string{"From: Mail Delivery System <MAILER-DAEMON@mx.nexus.test>", "multipart/report; report-type=delivery-status",
		"Status: 5.1.1", "550 5.1.1 no such user", "Subject: perm"} {
		if !strings.Contains(d, want) {
			t.Errorf("DSN lacks %q:\n%s", want, d)
		}
	}
	if got := dsnRecipients(dsns[0]); len(got) != 2 || got[0] != "nobody@perm.test" || got[1] != "nobody2@perm.test" {
		t.Errorf("DSN recipients %v", got)
	}
	if mx.countFor("ok@perm.test") != 1 {
		t.Errorf("good recipient got %d", mx.countFor("ok@perm.test"))
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	h := newHarness(t)
	mx, _ := startMX(t, "127.0.0.10", h.port)
	mx.rcptFn = func(string, int) error { return &smtp.SMTPError{Code: 550, Message: "no"} }
	h.res.mx["perm.test"] = []*net.MX{{Host: "mx.perm.test", Pref: 1}}
	h.res.hosts["mx.perm.test"] = []string{"127.0.0.10"}
	q := h.queue()
	h.run(q)
	if _, err := q.Enqueue(context.Background(), "imvu-a", "", []string{"x@perm.test"}, testMsg("alice@example.com", "x@perm.test", "null")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "queue empty", func() bool { return pending(t, q, "imvu-a") == 0 })
	time.Sleep(100 * time.Millisecond)
	if n := len(h.boxes.get("alice@example.com")); n != 0 {
		t.Fatalf("%d DSNs for a null-sender message", n)
	}
}

func TestDNSOutageThenKick(t *testing.T) {
	h := newHarness(t)
	h.back = []time.Duration{time.Hour} // only Kick may retry
	mx, _ := startMX(t, "127.0.0.11", h.port)
	h.res.mx["dns.test"] = []*net.MX{{Host: "mx.dns.test", Pref: 1}}
	h.res.hosts["mx.dns.test"] = []string{"127.0.0.11"}
	h.res.setDown(true)
	q := h.queue()
	h.run(q)
	if _, err := q.Enqueue(context.Background(), "imvu-a", "alice@example.com", []string{"d@dns.test"}, testMsg("alice@example.com", "d@dns.test", "dns")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an attempt", func() bool { h.res.mu.Lock(); defer h.res.mu.Unlock(); return h.res.calls > 0 })
	time.Sleep(100 * time.Millisecond)
	if pending(t, q, "imvu-a") != 1 || len(mx.messages()) != 0 {
		t.Fatal("message should stay queued during the outage")
	}
	h.res.setDown(false)
	q.Kick()
	waitFor(t, "delivery after Kick", func() bool { return pending(t, q, "imvu-a") == 0 })
	q.Kick()
	time.Sleep(100 * time.Millisecond)
	if n := mx.countFor("d@dns.test"); n != 1 {
		t.Fatalf("received %d copies, want 1", n)
	}
	if n := len(h.boxes.get("alice@example.com")); n != 0 {
		t.Errorf("%d DSNs for an outage", n)
	}
}

func TestRestartDeliversExactlyOnce(t *testing.T) {
	h := newHarness(t)
	a, _ := startMX(t, "127.0.0.12", h.port)
	b, _ := startMX(t, "127.0.0.13", h.port)
	var mu sync.Mutex
	bUp := false
	b.rcptFn = func(string, int) error {
		mu.Lock()
		defer mu.Unlock()
		if !bUp {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "busy"}
		}
		return nil
	}
	h.res.mx["a.test"] = []*net.MX{{Host: "mx.a.test", Pref: 1}}
	h.res.mx["b.test"] = []*net.MX{{Host: "mx.b.test", Pref: 1}}
	h.res.hosts["mx.a.test"] = []string{"127.0.0.12"}
	h.res.hosts["mx.b.test"] = []string{"127.0.0.13"}
	h.back = []time.Duration{time.Hour}
	ctx := context.Background()

	// First life: one message half delivered (a.test accepted, b.test
	// deferred), one queued while no worker ran.
	q0 := h.queue() // never runs
	if _, err := q0.Enqueue(ctx, "imvu-b", "alice@example.com", []string{"late@a.test"}, testMsg("alice@example.com", "late@a.test", "cold")); err != nil {
		t.Fatal(err)
	}
	h.imvus = []string{"imvu-a"} // the first life only works on imvu-a
	q1 := h.queue()
	stop := h.run(q1)
	if _, err := q1.Enqueue(ctx, "imvu-a", "alice@example.com", []string{"u@a.test", "v@b.test"}, testMsg("alice@example.com", "u@a.test", "half")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a.test delivery", func() bool { return a.countFor("u@a.test") == 1 })
	waitFor(t, "b.test deferral", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.rcptN["v@b.test"] > 0 })
	stop()
	if pending(t, q1, "imvu-a") != 1 || pending(t, q1, "imvu-b") != 1 {
		t.Fatal("both messages should still be queued")
	}

	// Second life: a new Queue over the same folders.
	mu.Lock()
	bUp = true
	mu.Unlock()
	h.imvus = []string{"imvu-a", "imvu-b"}
	h.back = []time.Duration{50 * time.Millisecond}
	q2 := h.queue()
	q2.Kick() // before Run: no effect needed, must not break anything
	h.run(q2)
	q2.Kick()
	waitFor(t, "queues empty", func() bool { return pending(t, q2, "imvu-a") == 0 && pending(t, q2, "imvu-b") == 0 })
	time.Sleep(100 * time.Millisecond)
	if n := a.countFor("u@a.test"); n != 1 {
		t.Errorf("u@a.test received %d copies, want 1", n)
	}
	if n := b.countFor("v@b.test"); n != 1 {
		t.Errorf("v@b.test received %d copies, want 1", n)
	}
	if n := a.countFor("late@a.test"); n != 1 {
		t.Errorf("late@a.test received %d copies, want 1", n)
	}
}

func TestEnqueueWithoutKeysFails(t *testing.T) {
	h := newHarness(t)
	q := h.queue()
	ctx := context.Background()
	_, err := q.Enqueue(ctx, "imvu-a", "eve@nokeys.test", []string{"x@remote.test"}, testMsg("eve@nokeys.test", "x@remote.test", "nokeys"))
	if !errors.Is(err, errNoKeys) {
		t.Fatalf("err = %v, want no keys", err)
	}
	// Header From with keys but an envelope sender without: refused too.
	_, err = q.Enqueue(ctx, "imvu-a", "eve@nokeys.test", []string{"x@remote.test"}, testMsg("alice@example.com", "x@remote.test", "nokeys2"))
	if !errors.Is(err, errNoKeys) {
		t.Fatalf("err = %v, want no keys", err)
	}
	// No From header at all.
	if _, err := q.Enqueue(ctx, "imvu-a", "alice@example.com", []string{"x@remote.test"}, []byte("Subject: x\r\n\r\nbody\r\n")); err == nil {
		t.Fatal("message without From accepted")
	}
	if n := pending(t, q, "imvu-a"); n != 0 {
		t.Fatalf("pending %d", n)
	}
	dir, _ := h.dir("imvu-a")
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

func TestPerIMVUFolders(t *testing.T) {
	h := newHarness(t)
	q := h.queue() // no Run: messages stay queued
	ctx := context.Background()
	ids := map[string]string{}
	for _, imvu := range []string{"imvu-a", "imvu-b"} {
		id, err := q.Enqueue(ctx, imvu, "alice@example.com", []string{"x@remote.test"}, testMsg("alice@example.com", "x@remote.test", imvu))
		if err != nil {
			t.Fatal(err)
		}
		ids[imvu] = id
	}
	for imvu, id := range ids {
		dir, _ := h.dir(imvu)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) != 2 || names[0] != id+envExt || names[1] != id+msgExt {
			t.Errorf("%s folder holds %v, want only %s.{json,msg}", imvu, names, id)
		}
		b, _ := os.ReadFile(filepath.Join(dir, id+envExt))
		e, err := parseEnvelope(b)
		if err != nil || e.IMVU != imvu {
			t.Errorf("%s envelope: %v %+v", imvu, err, e)
		}
		if pending(t, q, imvu) != 1 {
			t.Errorf("%s pending != 1", imvu)
		}
	}
}

func TestMaxAgeBounces(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h.back = []time.Duration{time.Minute}
	h.res.setDown(true)
	q := h.queue()
	h.run(q)
	if _, err := q.Enqueue(context.Background(), "imvu-a", "alice@example.com", []string{"old@gone.test"}, testMsg("alice@example.com", "old@gone.test", "old")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an attempt", func() bool { h.res.mu.Lock(); defer h.res.mu.Unlock(); return h.res.calls > 0 })
	mu.Lock()
	now = now.Add(2 * time.Hour) // past MaxAge (1h)
	mu.Unlock()
	q.Kick()
	waitFor(t, "bounce", func() bool { return pending(t, q, "imvu-a") == 0 })
	dsns := h.boxes.get("alice@example.com")
	if len(dsns) != 1 || !strings.Contains(string(dsns[0]), "Status: 4.4.7") || !strings.Contains(string(dsns[0]), "server misbehaving") {
		t.Fatalf("want one expiry DSN, got %d: %s", len(dsns), dsns)
	}
}

func TestRemoteSenderDSNIsQueuedAndSigned(t *testing.T) {
	h := newHarness(t)
	mx, _ := startMX(t, "127.0.0.14", h.port)
	mx.rcptFn = func(rcpt string, _ int) error {
		if rcpt == "bad@perm.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"}
		}
		return nil
	}
	h.res.mx["perm.test"] = []*net.MX{{Host: "mx.perm.test", Pref: 1}}
	h.res.mx["other.example"] = []*net.MX{{Host: "mx.perm.test", Pref: 1}}
	h.res.hosts["mx.perm.test"] = []string{"127.0.0.14"}
	q := h.queue()
	h.run(q)
	// bob@other.example is not local: his DSN goes out through the queue.
	if _, err := q.Enqueue(context.Background(), "imvu-a", "bob@other.example", []string{"bad@perm.test"}, testMsg("bob@other.example", "bad@perm.test", "remote")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "DSN at the remote sender", func() bool { return mx.countFor("bob@other.example") == 1 })
	waitFor(t, "queue empty", func() bool { return pending(t, q, "imvu-a") == 0 })
	var dsn received
	for _, m := range mx.messages() {
		if len(m.rcpts) == 1 && m.rcpts[0] == "bob@other.example" {
			dsn = m
		}
	}
	if dsn.from != "" {
		t.Errorf("DSN envelope sender %q, want null", dsn.from)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(dsn.data), &dkim.VerifyOptions{LookupTXT: h.keys.lookupTXT})
	if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil || vs[0].Domain != "mx.nexus.test" {
		t.Fatalf("DSN signatures: %v %+v", err, vs)
	}
}
