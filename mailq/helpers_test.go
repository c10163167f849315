package mailq

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// ---- remote MX made with go-smtp's server ----

type received struct {
	from  string
	rcpts []string
	data  []byte
}

type mxServer struct {
	t   *testing.T
	srv *smtp.Server
	ip  string

	mu    sync.Mutex
	msgs  []received
	tlsOK int // messages received over TLS
	// rcptFn, if set, decides each RCPT; n counts calls for that recipient.
	rcptFn func(rcpt string, n int) error
	rcptN  map[string]int
}

type mxSession struct {
	c     *smtp.Conn
	s     *mxServer
	from  string
	rcpts []string
}

func (s *mxSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *mxSession) Logout() error { return nil }
func (s *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.s.mu.Lock()
	s.s.rcptN[to]++
	n, fn := s.s.rcptN[to], s.s.rcptFn
	s.s.mu.Unlock()
	if fn != nil {
		if err := fn(to, n); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *mxSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.s.mu.Lock()
	if _, ok := s.c.TLSConnectionState(); ok {
		s.s.tlsOK++
	}
	s.s.msgs = append(s.s.msgs, received{from: s.from, rcpts: append([]string(nil), s.rcpts...), data: b})
	s.s.mu.Unlock()
	return nil
}

// startMX starts an SMTP server on ip:port (port 0 picks one).
func startMX(t *testing.T, ip string, port int) (*mxServer, int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("listen %s:%d: %v", ip, port, err)
	}
	m := &mxServer{t: t, ip: ip, rcptN: map[string]int{}}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &mxSession{c: c, s: m}, nil }))
	m.srv.Domain = "mx." + ip
	m.srv.ReadTimeout = 10 * time.Second
	m.srv.WriteTimeout = 10 * time.Second
	go m.srv.Serve(l)
	t.Cleanup(func() { m.srv.Close() })
	return m, l.Addr().(*net.TCPAddr).Port
}

func (m *mxServer) messages() []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]received(nil), m.msgs...)
}

// countFor is how many messages the server accepted for rcpt.
func (m *mxServer) countFor(rcpt string) int {
	n := 0
	for _, r := range m.messages() {
		for _, x := range r.rcpts {
			if x == rcpt {
				n++
			}
		}
	}
	return n
}

// freePort returns a port free on 127.0.0.1, used on every 127.0.0.x.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- fake resolver ----

type fakeResolver struct {
	mu    sync.Mutex
	mx    map[string][]*net.MX
	hosts map[string][]string
	down  bool
	calls int
}

func newResolver() *fakeResolver {
	return &fakeResolver{mx: map[string][]*net.MX{}, hosts: map[string][]string{}}
}

func (r *fakeResolver) setDown(d bool) { r.mu.Lock(); r.down = d; r.mu.Unlock() }

func (r *fakeResolver) LookupMX(_ context.Context, d string) ([]*net.MX, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.down {
		return nil, &net.DNSError{Err: "server misbehaving", Name: d, IsTemporary: true}
	}
	mx, ok := r.mx[d]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: d, IsNotFound: true}
	}
	return mx, nil
}

func (r *fakeResolver) LookupHost(_ context.Context, h string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return nil, &net.DNSError{Err: "server misbehaving", Name: h, IsTemporary: true}
	}
	a, ok := r.hosts[h]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: h, IsNotFound: true}
	}
	return a, nil
}

// ---- keys ----

type testKeys struct {
	ed  ed25519.PrivateKey
	rsa *rsa.PrivateKey
	txt map[string]string // "<sel>._domainkey.<domain>" -> TXT
}

var (
	keysOnce sync.Once
	theKeys  *testKeys
)

func getKeys(t *testing.T) *testKeys {
	keysOnce.Do(func() {
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
		if err != nil {
			panic(err)
		}
		k := &testKeys{ed: ed, rsa: rk, txt: map[string]string{}}
		for _, d := range []string{"example.com", "other.example", "mx.nexus.test"} {
			k.txt["ed._domainkey."+d] = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(ed.Public().(ed25519.PublicKey))
			k.txt["rsa._domainkey."+d] = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
		}
		theKeys = k
	})
	return theKeys
}

// keysFor gives both selectors for the domains in the txt table.
func (k *testKeys) keysFor(_ string, domain string) []Key {
	if _, ok := k.txt["ed._domainkey."+domain]; !ok {
		return nil
	}
	return []Key{{Selector: "ed", Signer: k.ed}, {Selector: "rsa", Signer: k.rsa}}
}

func (k *testKeys) lookupTXT(name string) ([]string, error) {
	if v, ok := k.txt[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// ---- local mailboxes ----

type mailboxes struct {
	mu    sync.Mutex
	boxes map[string][][]byte
}

func newMailboxes(addrs ...string) *mailboxes {
	m := &mailboxes{boxes: map[string][][]byte{}}
	for _, a := range addrs {
		m.boxes[a] = nil
	}
	return m
}

func (m *mailboxes) local(_ context.Context, rcpt string) (func([]byte) error, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.boxes[rcpt]; !ok {
		return nil, false
	}
	return func(b []byte) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.boxes[rcpt] = append(m.boxes[rcpt], append([]byte(nil), b...))
		return nil
	}, true
}

func (m *mailboxes) get(rcpt string) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.boxes[rcpt]...)
}

// ---- queue harness ----

type harness struct {
	t     *testing.T
	root  string
	res   *fakeResolver
	keys  *testKeys
	boxes *mailboxes
	port  int
	imvus []string
	now   func() time.Time
	back  []time.Duration
	tls   *tls.Config
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, root: t.TempDir(), res: newResolver(), keys: getKeys(t),
		boxes: newMailboxes("alice@example.com"), port: freePort(t),
		imvus: []string{"imvu-a", "imvu-b"}, back: []time.Duration{50 * time.Millisecond}}
}

func (h *harness) dir(imvu string) (string, error) {
	if strings.ContainsAny(imvu, "/\\") || imvu == "" || imvu == "." || imvu == ".." {
		return "", errors.New("bad imvu")
	}
	return filepath.Join(h.root, "imvu", imvu, "mail", "queue"), nil
}

func (h *harness) queue() *Queue {
	h.t.Helper()
	q, err := New(Config{
		Dir: h.dir, IMVUs: func() []string { return h.imvus }, Resolver: h.res,
		Keys: h.keys.keysFor, Local: h.boxes.local, Hostname: "mx.nexus.test", Port: h.port,
		Backoff: h.back, TLS: h.tls, MaxAge: time.Hour, Now: h.now,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return q
}

// run starts q.Run and returns a stop function that waits for it to end.
func (h *harness) run(q *Queue) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

func testMsg(from, to, subject string) []byte {
	return []byte("From: Alice <" + from + ">\nTo: <" + to + ">\nSubject: " + subject +
		"\nDate: Mon, 02 Jan 2006 15:04:05 +0000\nMessage-ID: <" + subject + "@example.com>\n\nHello " + to + ".\nBye.\n")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pending(t *testing.T, q *Queue, imvu string) int {
	t.Helper()
	n, err := q.Pending(imvu)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
