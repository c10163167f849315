package smtpd

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const testHost = "mx.nexus.test"

var (
	alice = Mailbox{Address: "alice@nexus.test", IMVU: "imvu1"}
	bob   = Mailbox{Address: "bob@nexus.test", IMVU: "imvu2"}
	carol = Mailbox{Address: "carol@nexus.test", IMVU: "limited"} // Allow says no
)

func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: testHost},
		DNSNames:     []string{testHost},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func clientTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true, ServerName: testHost} }

// fakeDNS answers from maps; everything else is NXDOMAIN.
type fakeDNS struct {
	mu  sync.Mutex
	txt map[string][]string
	ip  map[string][]net.IP
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func newFakeDNS() *fakeDNS {
	return &fakeDNS{txt: map[string][]string{}, ip: map[string][]net.IP{}}
}

func (d *fakeDNS) setTXT(name string, v ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[strings.ToLower(strings.TrimSuffix(name, "."))] = v
}

func (d *fakeDNS) checker() *Checker {
	return &Checker{
		LookupTXT: func(_ context.Context, name string) ([]string, error) {
			d.mu.Lock()
			defer d.mu.Unlock()
			if v, ok := d.txt[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
				return v, nil
			}
			return nil, notFound(name)
		},
		LookupIP: func(_ context.Context, host string) ([]net.IP, error) {
			d.mu.Lock()
			defer d.mu.Unlock()
			if v, ok := d.ip[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
				return v, nil
			}
			return nil, notFound(host)
		},
		LookupMX: func(_ context.Context, name string) ([]*net.MX, error) { return nil, notFound(name) },
	}
}

type fakeRouter struct{}

func (fakeRouter) Local(_ context.Context, rcpt string) (Mailbox, error) {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 || !strings.EqualFold(rcpt[at+1:], "nexus.test") {
		return Mailbox{}, ErrNotLocal
	}
	for _, m := range []Mailbox{alice, bob, carol} {
		if strings.EqualFold(m.Address, rcpt) {
			return m, nil
		}
	}
	return Mailbox{}, ErrNoMailbox
}

type delivery struct {
	to  Mailbox
	msg string
}

type memDeliverer struct {
	mu   sync.Mutex
	msgs []delivery
}

func (d *memDeliverer) Deliver(_ context.Context, to Mailbox, msg []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgs = append(d.msgs, delivery{to, string(msg)})
	return nil
}

func (d *memDeliverer) all() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.msgs...)
}

// fsyncDeliverer writes and fsyncs one file per message.
type fsyncDeliverer struct {
	dir string
	mu  sync.Mutex
	n   int
}

func (d *fsyncDeliverer) Deliver(_ context.Context, _ Mailbox, msg []byte) error {
	d.mu.Lock()
	d.n++
	name := filepath.Join(d.dir, time.Now().Format("150405.000000000")+"-"+big.NewInt(int64(d.n)).String())
	d.mu.Unlock()
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(msg); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, user, pass string) (Mailbox, error) {
	if user == alice.Address && pass == "secret" {
		return alice, nil
	}
	if user == carol.Address && pass == "secret" {
		return carol, nil
	}
	return Mailbox{}, errors.New("bad credentials")
}

type submission struct {
	user  Mailbox
	from  string
	rcpts []string
	msg   string
}

type fakeRelay struct {
	mu   sync.Mutex
	subs []submission
}

func (r *fakeRelay) Submit(_ context.Context, user Mailbox, from string, rcpts []string, msg []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs = append(r.subs, submission{user, from, rcpts, string(msg)})
	return nil
}

func (r *fakeRelay) all() []submission {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]submission(nil), r.subs...)
}

type env struct {
	srv             *Server
	dns             *fakeDNS
	del             *memDeliverer
	relay           *fakeRelay
	mx, sub, subTLS string
	tlsConf         *tls.Config
}

func startServer(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	e := &env{dns: newFakeDNS(), del: &memDeliverer{}, relay: &fakeRelay{}, tlsConf: selfSigned(t)}
	cfg := Config{
		MXAddr: "127.0.0.1:0", SubmissionAddr: "127.0.0.1:0", SubmissionTLSAddr: "127.0.0.1:0",
		Hostname: testHost, TLS: e.tlsConf,
		MaxMessageBytes: 64 << 10, MaxRecipients: 5, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		Allow:  func(imvu string) bool { return imvu != "limited" },
		Router: fakeRouter{}, Deliverer: e.del, Auth: fakeAuth{}, Relay: e.relay, Checker: e.dns.checker(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.srv = srv
	e.mx, e.sub, e.subTLS = srv.Addrs()
	return e
}

// send runs one transaction with go-smtp's client and returns the first error.
func send(t testing.TB, c *smtp.Client, from string, rcpts []string, msg string) error {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

func dialMX(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("sender.example"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func wantCode(t *testing.T, err error, want int, what string) {
	t.Helper()
	if got := code(err); got != want {
		t.Fatalf("%s: got %v (code %d), want code %d", what, err, got, want)
	}
}

func message(from, to, subject, body string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + base64.RawURLEncoding.EncodeToString([]byte(subject)) + "@test>\r\n\r\n" + body + "\r\n"
}

// publishDKIM makes an ed25519 key, publishes it at sel._domainkey.domain.
func publishDKIM(d *fakeDNS, sel, domain string) ed25519.PrivateKey {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d.setTXT(sel+"._domainkey."+domain, "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	return priv
}
