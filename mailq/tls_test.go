package mailq

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

func selfSigned(t *testing.T) tls.Certificate {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.tls.test"},
		DNSNames: []string{"mx.tls.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// Opportunistic STARTTLS: used when offered, plain text when not offered.
func TestOpportunisticSTARTTLS(t *testing.T) {
	h := newHarness(t)
	h.tls = &tls.Config{InsecureSkipVerify: true} // opportunistic: no authentication
	withTLS, _ := startMX(t, "127.0.0.15", h.port)
	withTLS.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	plain, _ := startMX(t, "127.0.0.16", h.port)
	h.res.mx["tls.test"] = []*net.MX{{Host: "mx.tls.test", Pref: 1}}
	h.res.mx["plain.test"] = []*net.MX{{Host: "mx.plain.test", Pref: 1}}
	h.res.hosts["mx.tls.test"] = []string{"127.0.0.15"}
	h.res.hosts["mx.plain.test"] = []string{"127.0.0.16"}
	q := h.queue()
	h.run(q)
	for _, to := range []string{"a@tls.test", "b@plain.test"} {
		if _, err := q.Enqueue(context.Background(), "imvu-a", "alice@example.com", []string{to}, testMsg("alice@example.com", to, "tls")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "delivery", func() bool { return pending(t, q, "imvu-a") == 0 })
	withTLS.mu.Lock()
	n := withTLS.tlsOK
	withTLS.mu.Unlock()
	if n != 1 || withTLS.countFor("a@tls.test") != 1 {
		t.Errorf("TLS server: %d over TLS, %d copies", n, withTLS.countFor("a@tls.test"))
	}
	if plain.countFor("b@plain.test") != 1 {
		t.Errorf("plain server got %d", plain.countFor("b@plain.test"))
	}
}
