package smtpd

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"net"
	"net/textproto"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMXDeliverLocal(t *testing.T) {
	e := startServer(t, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
	e.dns.setTXT("sender.example", "v=spf1 ip4:127.0.0.1 -all")
	c := dialMX(t, e.mx)
	msg := message("x@sender.example", alice.Address, "hello", "hi alice")
	if err := send(t, c, "x@sender.example", []string{alice.Address, "ALICE@nexus.test", bob.Address}, msg); err != nil {
		t.Fatal(err)
	}
	got := e.del.all()
	if len(got) != 2 || got[0].to != alice || got[1].to != bob {
		t.Fatalf("deliveries %+v", got)
	}
	m := got[0].msg
	if !strings.HasPrefix(m, "Authentication-Results: "+testHost+";") {
		t.Fatalf("no Authentication-Results first:\n%s", m)
	}
	for _, want := range []string{"spf=pass", "dkim=none", "dmarc=none", "\r\nReceived: from sender.example ([127.0.0.1])", "by " + testHost + " with ESMTP id", "Subject: hello\r\n", "hi alice"} {
		if !strings.Contains(m, want) {
			t.Errorf("missing %q in\n%s", want, m)
		}
	}
	u := e.srv.Counts()
	if u["imvu1"].MessagesIn != 1 || u["imvu2"].MessagesIn != 1 || u["imvu1"].BytesIn != int64(len(m)) {
		t.Fatalf("counts %+v", u)
	}
}

func TestMXRecipientErrors(t *testing.T) {
	e := startServer(t, nil)
	c := dialMX(t, e.mx)
	var err error
	if err := c.Mail("x@sender.example", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Rcpt("nobody@nexus.test", nil), 550, "unknown user")
	err = c.Rcpt("someone@elsewhere.example", nil)
	wantCode(t, err, 550, "relay")
	if se := err.(*smtp.SMTPError); se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("relay enhanced code %v", se.EnhancedCode)
	}
	wantCode(t, c.Rcpt(carol.Address, nil), 451, "rate limit")
	if n := len(e.del.all()); n != 0 {
		t.Fatal("delivered", n)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("MX advertises AUTH")
	}
	c, err = smtp.DialStartTLS(e.mx, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("MX advertises AUTH over TLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", alice.Address, "secret")); err == nil {
		t.Fatal("MX accepted AUTH")
	}
}

func TestMXLimits(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxMessageBytes = 4096; c.MaxRecipients = 2 })
	c := dialMX(t, e.mx)
	big := message("x@sender.example", alice.Address, "big", strings.Repeat(strings.Repeat("a", 70)+"\r\n", 100))
	wantCode(t, send(t, c, "x@sender.example", []string{alice.Address}, big), 552, "size")
	c.Reset()
	if err := c.Mail("x@sender.example", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{alice.Address, bob.Address} {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, c.Rcpt(alice.Address, nil), 452, "recipients")
	if n := len(e.del.all()); n != 0 {
		t.Fatal("delivered", n)
	}

	// A command line over MaxLineLength closes the connection with 500.
	conn, err := net.Dial("tcp", e.mx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	tp.PrintfLine("EHLO %s", strings.Repeat("a", 1200))
	if _, _, err := tp.ReadResponse(250); code2(err) != 500 {
		t.Fatalf("long line: %v", err)
	}

	// A DATA line over the limit fails the transaction.
	c2 := dialMX(t, e.mx)
	long := message("x@sender.example", alice.Address, "long", strings.Repeat("b", 1500))
	if err := send(t, c2, "x@sender.example", []string{alice.Address}, long); err == nil {
		t.Fatal("long DATA line accepted")
	}
	if n := len(e.del.all()); n != 0 {
		t.Fatal("delivered", n)
	}
}

func code2(err error) int {
	if te, ok := err.(*textproto.Error); ok {
		return te.Code
	}
	return 0
}

func TestSubmissionAuthNeedsTLS(t *testing.T) {
	e := startServer(t, nil)
	conn, err := net.Dial("tcp", e.sub)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	tp.ReadResponse(220)
	tp.PrintfLine("EHLO client.test")
	_, ext, err := tp.ReadResponse(250)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ext, "AUTH") || !strings.Contains(ext, "STARTTLS") {
		t.Fatalf("EHLO before TLS: %s", ext)
	}
	tp.PrintfLine("AUTH PLAIN AGFsaWNlQG5leHVzLnRlc3QAc2VjcmV0")
	if _, _, err := tp.ReadResponse(235); code2(err) != 523 {
		t.Fatalf("AUTH before STARTTLS: %v", err)
	}
	tp.PrintfLine("MAIL FROM:<%s>", alice.Address)
	if _, _, err := tp.ReadResponse(250); code2(err) != 530 {
		t.Fatalf("MAIL unauthenticated: %v", err)
	}
	if n := len(e.relay.all()); n != 0 {
		t.Fatal(n)
	}
}

func dialSubmission(t *testing.T, e *env, user, pass string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(e.sub, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if ok, params := c.Extension("AUTH"); !ok || params != "PLAIN" {
		t.Fatalf("AUTH after TLS: %v %q", ok, params)
	}
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSubmission(t *testing.T) {
	e := startServer(t, nil)
	c := dialSubmission(t, e, alice.Address, "secret")
	msg := message(alice.Address, "friend@elsewhere.example", "out", "hello world")
	if err := send(t, c, alice.Address, []string{"friend@elsewhere.example", bob.Address}, msg); err != nil {
		t.Fatal(err)
	}
	subs := e.relay.all()
	if len(subs) != 1 || subs[0].user != alice || subs[0].from != alice.Address || len(subs[0].rcpts) != 2 || !strings.HasSuffix(subs[0].msg, msg) {
		t.Fatalf("relay got %+v", subs)
	}
	if n := len(e.del.all()); n != 0 {
		t.Fatal("submission delivered locally", n)
	}
	// Envelope as someone else.
	wantCode(t, c.Mail(bob.Address, nil), 550, "envelope as bob")
	wantCode(t, c.Mail("", nil), 550, "null sender")
	// Header From as someone else.
	c.Reset()
	wantCode(t, send(t, c, alice.Address, []string{"x@elsewhere.example"}, message(bob.Address, "x@elsewhere.example", "spoof", "x")), 550, "header From as bob")
	wantCode(t, send(t, c, alice.Address, []string{"x@elsewhere.example"}, "Sender: "+bob.Address+"\r\n"+message(alice.Address, "x@elsewhere.example", "spoof", "x")), 550, "header Sender as bob")
	wantCode(t, send(t, c, alice.Address, []string{"x@elsewhere.example"}, "From: "+alice.Address+"\r\n"+message(alice.Address, "x@elsewhere.example", "two", "x")), 550, "two From")
	if n := len(e.relay.all()); n != 1 {
		t.Fatal("relayed", n)
	}
	if u := e.srv.Counts()["imvu1"]; u.MessagesSubmitted != 1 || u.BytesSubmitted != int64(len(subs[0].msg)) {
		t.Fatalf("counts %+v", u)
	}

	// Rate limit on MAIL FROM.
	cc := dialSubmission(t, e, carol.Address, "secret")
	wantCode(t, cc.Mail(carol.Address, nil), 451, "rate limit")

	// Bad password, then implicit TLS.
	c3, err := smtp.DialStartTLS(e.sub, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	wantCode(t, c3.Auth(sasl.NewPlainClient("", alice.Address, "wrong")), 535, "bad password")

	c4, err := smtp.DialTLS(e.subTLS, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if err := c4.Auth(sasl.NewPlainClient("", alice.Address, "secret")); err != nil {
		t.Fatal(err)
	}
	if err := send(t, c4, alice.Address, []string{"y@elsewhere.example"}, msg); err != nil {
		t.Fatal(err)
	}
	if n := len(e.relay.all()); n != 2 {
		t.Fatal("relayed", n)
	}
}

func signDKIM(t testing.TB, key ed25519.PrivateKey, domain, msg string) string {
	t.Helper()
	var b bytes.Buffer
	if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "s1", Signer: key}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestInboundAuthentication(t *testing.T) {
	e := startServer(t, nil)
	d := e.dns
	d.setTXT("pass.example", "v=spf1 ip4:127.0.0.1 -all")
	d.setTXT("fail.example", "v=spf1 ip4:192.0.2.1 -all")
	d.setTXT("_dmarc.reject.example", "v=DMARC1; p=reject")
	d.setTXT("_dmarc.quarantine.example", "v=DMARC1; p=quarantine")
	d.setTXT("_dmarc.signed.example", "v=DMARC1; p=reject; adkim=s")
	key := publishDKIM(d, "s1", "signed.example")

	cases := []struct {
		name, mailFrom, msg string
		code                int
		want, notWant       []string
	}{
		{name: "spf pass", mailFrom: "a@pass.example", msg: message("a@pass.example", alice.Address, "1", "x"), want: []string{"spf=pass", "smtp.mailfrom=a@pass.example"}},
		{name: "spf fail", mailFrom: "a@fail.example", msg: message("a@fail.example", alice.Address, "2", "x"), want: []string{"spf=fail"}},
		{name: "dkim pass", mailFrom: "a@fail.example", msg: signDKIM(t, key, "signed.example", message("a@signed.example", alice.Address, "3", "signed body")),
			want: []string{"dkim=pass", "header.d=signed.example", "dmarc=pass", "header.from=signed.example"}},
		{name: "dkim fail tampered", mailFrom: "a@fail.example", msg: strings.Replace(signDKIM(t, key, "signed.example", message("a@signed.example", alice.Address, "4", "signed body")), "signed body", "evil body", 1),
			code: 550},
		{name: "dmarc reject", mailFrom: "a@fail.example", msg: message("ceo@reject.example", alice.Address, "5", "x"), code: 550},
		{name: "dmarc quarantine", mailFrom: "a@fail.example", msg: message("ceo@quarantine.example", alice.Address, "6", "x"),
			want: []string{"X-Nexus-Quarantine: dmarc\r\n", "dmarc=fail"}},
		{name: "dmarc subdomain via org", mailFrom: "a@fail.example", msg: message("ceo@mail.reject.example", alice.Address, "7", "x"), code: 550},
		{name: "forged results stripped", mailFrom: "a@pass.example",
			msg:     "Authentication-Results: " + testHost + "; dmarc=pass\r\nX-Nexus-Quarantine: no\r\nAuthentication-Results: other.example; spf=pass\r\n" + message("a@pass.example", alice.Address, "8", "x"),
			want:    []string{"Authentication-Results: other.example; spf=pass"},
			notWant: []string{"dmarc=pass", "X-Nexus-Quarantine"}},
		{name: "no From", mailFrom: "a@pass.example", msg: "Subject: x\r\n\r\nbody\r\n", code: 550},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.del.all())
			c := dialMX(t, e.mx)
			err := send(t, c, tc.mailFrom, []string{alice.Address}, tc.msg)
			got := e.del.all()
			if tc.code != 0 {
				wantCode(t, err, tc.code, tc.name)
				if len(got) != before {
					t.Fatal("delivered despite rejection")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != before+1 {
				t.Fatal("not delivered")
			}
			m := got[len(got)-1].msg
			if !strings.Contains(m, "Authentication-Results: "+testHost) {
				t.Fatalf("no Authentication-Results:\n%s", m)
			}
			for _, w := range tc.want {
				if !strings.Contains(m, w) {
					t.Errorf("missing %q in\n%s", w, m)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(m, w) {
					t.Errorf("unexpected %q in\n%s", w, m)
				}
			}
		})
	}
	// DKIM fail is recorded when the policy lets the message through.
	d.setTXT("_dmarc.signed.example", "v=DMARC1; p=none")
	msg := strings.Replace(signDKIM(t, key, "signed.example", message("a@signed.example", alice.Address, "9", "signed body")), "signed body", "evil body", 1)
	if err := send(t, dialMX(t, e.mx), "a@fail.example", []string{alice.Address}, msg); err != nil {
		t.Fatal(err)
	}
	got := e.del.all()
	if m := got[len(got)-1].msg; !strings.Contains(m, "dkim=fail") || !strings.Contains(m, "dmarc=fail") || strings.Contains(m, "X-Nexus-Quarantine") {
		t.Fatalf("tampered, p=none:\n%s", m)
	}
}

func TestHeaderAddressFallback(t *testing.T) {
	fields, _ := splitHeader([]byte("From: \"Br\xffoken\" <a@b.example>\r\n\r\n"))
	a, err := headerAddress(fields, "From", true)
	if err != nil || a != "a@b.example" {
		t.Fatalf("%q %v", a, err)
	}
	if orgDomain("a.b.example.com.") != "example.com" || orgDomain("example") != "example" {
		t.Fatal("orgDomain")
	}
	// A leading continuation line must not hide a forged field from stripping.
	out := stripHeaders([]byte(" x\r\nAuthentication-Results: "+testHost+"; dmarc=pass\r\n\r\nb"), testHost)
	if bytes.Contains(out, []byte("dmarc=pass")) {
		t.Fatalf("not stripped: %q", out)
	}
}

func TestCloseIdempotent(t *testing.T) {
	e := startServer(t, nil)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", e.mx); err == nil {
		t.Fatal("still listening")
	}
	_ = bufio.NewReader
}
