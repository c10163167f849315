package smtpd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// pipeListener hands out one connection, then blocks until closed.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// panicLog fails the fuzz run when go-smtp reports a recovered panic.
type panicLog struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicLog) Printf(f string, v ...any) { p.Println(fmt.Sprintf(f, v...)) }
func (p *panicLog) Println(v ...any) {
	s := fmt.Sprint(v...)
	if strings.Contains(s, "panic") {
		p.mu.Lock()
		p.panics = append(p.panics, s)
		p.mu.Unlock()
	}
}

func FuzzSession(f *testing.F) {
	e := startServer(f, nil)
	e.dns.setTXT("sender.example", "v=spf1 ip4:127.0.0.1 -all")
	seeds := []string{
		"EHLO a\r\nMAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@nexus.test>\r\nDATA\r\nFrom: x@sender.example\r\n\r\nhi\r\n.\r\n",
		"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@nexus.test>\r\nRCPT TO:<a@b>\r\nRSET\r\nNOOP\r\n",
		"EHLO a\r\nAUTH PLAIN AGFsaWNlQG5leHVzLnRlc3QAc2VjcmV0\r\nMAIL FROM:<alice@nexus.test>\r\n",
		"EHLO a\r\nMAIL FROM:<x@y> SIZE=99999999999\r\nBDAT 5 LAST\r\nhello",
		"EHLO a\r\nMAIL FROM:<x@y>\r\nRCPT TO:<alice@nexus.test>\r\nBDAT 10\r\n0123456789BDAT 0 LAST\r\n",
		"EHLO a\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
	}
	for i, s := range seeds {
		f.Add(byte(i%2), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which byte, in []byte) {
		be := smtp.BackendFunc(e.srv.newMXSession)
		if which%2 == 1 {
			be = e.srv.newSubmissionSession
		}
		srv := e.srv.newSMTP(be, "fuzz")
		srv.TLSConfig = e.tlsConf
		srv.ReadTimeout, srv.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
		pl := &panicLog{}
		srv.ErrorLog = pl
		client, server := net.Pipe()
		l := &pipeListener{ch: make(chan net.Conn, 1), done: make(chan struct{})}
		l.ch <- server
		served := make(chan struct{})
		go func() { srv.Serve(l); close(served) }()

		go func() {
			client.Write(in)
			client.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		client.SetReadDeadline(time.Now().Add(3 * time.Second))
		out, _ := io.ReadAll(client)
		client.Close()
		srv.Close()
		l.Close()
		<-served
		if !bytes.HasPrefix(out, []byte("220 ")) {
			t.Fatalf("no greeting: %q", out)
		}
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if len(pl.panics) > 0 {
			t.Fatalf("panic: %s", pl.panics[0])
		}
	})
}

func FuzzMessageChecks(f *testing.F) {
	d := newFakeDNS()
	d.setTXT("pass.example", "v=spf1 ip4:127.0.0.1 -all")
	d.setTXT("_dmarc.reject.example", "v=DMARC1; p=reject")
	d.setTXT("_dmarc.quarantine.example", "v=DMARC1; p=quarantine; pct=50")
	key := publishDKIM(d, "s1", "signed.example")
	s, err := New(Config{MXAddr: "127.0.0.1:0", Hostname: testHost, Router: fakeRouter{}, Deliverer: &memDeliverer{}, Checker: d.checker()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	msg := message("a@signed.example", alice.Address, "s", "body")
	f.Add("a@pass.example", []byte(signDKIM(f, key, "signed.example", msg)))
	f.Add("", []byte(msg))
	f.Add("a@pass.example", []byte("Authentication-Results: "+testHost+"; dmarc=pass\r\nFrom: ceo@reject.example\r\n\r\nx"))
	f.Add("a@x", []byte(" x\r\nFrom: \"a\" <b@quarantine.example>, c@d\r\nX-Nexus-Quarantine: 1\r\n\r\n"))
	f.Add("a@x", []byte("From: =?utf-8?q?=C3=A9?= <b@c.example>\nDKIM-Signature: v=1; a=rsa-sha256; d=x; s=y; h=from; bh=; b=\n\nbody"))
	f.Fuzz(func(t *testing.T, mailFrom string, msg []byte) {
		in := checkInput{ip: net.IPv4(127, 0, 0, 1), helo: "sender.example", mailFrom: mailFrom, msg: msg}
		out, v := s.inbound(context.Background(), in, false, []Mailbox{alice})
		if v.action != actAccept && v.action != actQuarantine {
			if out != nil {
				t.Fatal("rejected message has output")
			}
			return
		}
		// The only fields of ours in the stored header are the ones we added.
		fields, _ := splitHeader(out)
		ours, quarantine := 0, 0
		for _, fl := range fields {
			if forged(fl, testHost) {
				if strings.EqualFold(fl.name, "X-Nexus-Quarantine") {
					quarantine++
				} else {
					ours++
				}
			}
		}
		wantQ := 0
		if v.action == actQuarantine {
			wantQ = 1
		}
		if ours != 1 || quarantine != wantQ {
			t.Fatalf("header has %d of our Authentication-Results, %d quarantine marks (want 1, %d):\n%q", ours, quarantine, wantQ, out)
		}
		if !bytes.HasSuffix(out, stripHeaders(msg, testHost)) {
			t.Fatal("message body changed")
		}
	})
}
