package imapd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/nexus-core/nexus/maildir"
)

var (
	certOnce sync.Once
	certVal  tls.Certificate
)

// testCert returns a self-signed certificate for 127.0.0.1.
func testCert(tb testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "127.0.0.1"},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			tb.Fatal(err)
		}
		certVal = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return certVal
}

type fakeAuth struct {
	mu    sync.Mutex
	users map[string]Account // username -> account
	pass  string
}

func (a *fakeAuth) Login(_ context.Context, user, pass string) (Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acct, ok := a.users[user]
	if !ok || pass != a.pass {
		return Account{}, errors.New("bad credentials")
	}
	return acct, nil
}

type env struct {
	dir  string
	auth *fakeAuth
	srv  *Server
	cfg  Config
}

func newEnv(tb testing.TB, implicit bool) *env {
	tb.Helper()
	dir := tb.TempDir()
	e := &env{dir: dir, auth: &fakeAuth{pass: "secret", users: map[string]Account{
		"alice": {Address: "alice@example.org", Path: filepath.Join(dir, "alice")},
		"bob":   {Address: "bob@example.org", Path: filepath.Join(dir, "bob")},
		"tiny":  {Address: "tiny@example.org", Path: filepath.Join(dir, "tiny"), Quota: 300},
	}}}
	e.cfg = Config{
		Addr:        "127.0.0.1:0",
		TLS:         &tls.Config{Certificates: []tls.Certificate{testCert(tb)}},
		ImplicitTLS: implicit,
		Auth:        e.auth,
	}
	e.start(tb)
	return e
}

func (e *env) start(tb testing.TB) {
	tb.Helper()
	srv, err := New(e.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	e.srv = srv
	tb.Cleanup(func() { srv.Close() })
}

func (e *env) mailbox(tb testing.TB, user string) *maildir.Mailbox {
	tb.Helper()
	m, err := maildir.Open(e.auth.users[user].Path)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func testMsg(i int) string {
	return fmt.Sprintf("From: Sender %d <sender%d@example.net>\r\nTo: alice@example.org\r\nSubject: hello %d\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%d@example.net>\r\n\r\nbody number %d\r\n", i, i, i, i, i)
}

func deliver(tb testing.TB, m *maildir.Mailbox, n int) {
	tb.Helper()
	for i := 1; i <= n; i++ {
		if _, err := m.Deliver(strings.NewReader(testMsg(i)), 1<<20); err != nil {
			tb.Fatal(err)
		}
	}
}

func (e *env) dial(tb testing.TB, opts *imapclient.Options) *imapclient.Client {
	tb.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	var c *imapclient.Client
	var err error
	if e.cfg.ImplicitTLS {
		c, err = imapclient.DialTLS(e.srv.Addr(), opts)
	} else {
		c, err = imapclient.DialStartTLS(e.srv.Addr(), opts)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func (e *env) login(tb testing.TB, user string, opts *imapclient.Options) *imapclient.Client {
	tb.Helper()
	c := e.dial(tb, opts)
	if err := c.Login(user, "secret").Wait(); err != nil {
		tb.Fatalf("login %s: %v", user, err)
	}
	return c
}

// rawLine sends one command on a plaintext connection and returns the
// tagged reply.
func rawCommand(tb testing.TB, addr string, cmds ...string) []string {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := br.ReadString('\n'); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for i, cmd := range cmds {
		tag := fmt.Sprintf("t%d", i)
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, strings.TrimRight(line, "\r\n"))
			if strings.HasPrefix(line, tag+" ") {
				break
			}
		}
	}
	return out
}
