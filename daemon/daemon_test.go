package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
)

// TestDNSQueriesAreMetered: answered queries become dns-meter-signed
// cumulative usage events in the ledger, and the counter keeps rising across a
// restart (no counter ever goes down, which G10 would refuse).
func TestDNSQueriesAreMetered(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		t.Fatal(err)
	}
	dir, _ := datadir.Open(root)
	cfg, err := config.Load(dir.Config())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DNS.MeterEvery = config.Duration{Duration: time.Second}
	b, _ := cfg.Encode()
	if err := os.WriteFile(dir.Config(), b, 0o644); err != nil {
		t.Fatal(err)
	}
	owner, _ := identity.Generate()
	n := start(t, root)
	c, _ := api.Dial("unix:" + n.Dir.Socket())
	offer, _ := c.Offer(ctx)
	a, _ := action.New(handshake.KindCreate, "imvu042", identity.PublicOf(owner), offer.Handshake("imvu042", identity.PublicOf(owner)))
	s, _ := action.Seal(a, owner)
	if _, err := c.Submit(ctx, s); err != nil {
		t.Fatal(err)
	}
	serial := soaSerial(t, n)
	ask(t, n, 7)
	waitCounter(t, c, owner, 8) // the SOA query counts too
	// Metering changed the IMVU's state but not its zone: same serial, no
	// NOTIFY, no re-signing.
	if got := soaSerial(t, n); got != serial {
		t.Fatalf("SOA serial moved from %d to %d without a zone change", serial, got)
	}
	waitCounter(t, c, owner, 9)
	n.Close()

	n = start(t, root)
	c, _ = api.Dial("unix:" + n.Dir.Socket())
	ask(t, n, 5)
	waitCounter(t, c, owner, 14)
}

func start(t *testing.T, root string) *daemon.Node {
	t.Helper()
	n, err := daemon.Start(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func ask(t *testing.T, n *daemon.Node, times int) {
	t.Helper()
	var addr string
	for _, l := range n.Status().Listeners {
		if l.Name == "dns" && l.Network == "udp" {
			addr = l.Address
		}
	}
	for i := 0; i < times; i++ {
		m := new(mdns.Msg)
		m.SetQuestion("imvu042.world.", mdns.TypeSOA)
		r, err := mdns.Exchange(m, addr)
		if err != nil || r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
}

func waitCounter(t *testing.T, c *api.Client, owner []byte, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m handshake.IMVU
		if err := c.Query(context.Background(), owner, api.QueryIMVU, "imvu042", nil, &m); err != nil {
			t.Fatal(err)
		}
		got := m.Counters["dns_queries/dns"].Value
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("dns_queries counter %d, want %d", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestResolverServesWorkloads: the resolver answers an attributed workload's
// lookups of platform zones from the local authority, refuses sources it cannot
// attribute, and its lookups are metered per IMVU.
func TestResolverServesWorkloads(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		t.Fatal(err)
	}
	dir, _ := datadir.Open(root)
	cfg, _ := config.Load(dir.Config())
	cfg.DNS.MeterEvery = config.Duration{Duration: time.Second}
	cfg.Resolver.Listen = "127.0.0.1:0"
	cfg.Resolver.RootHints = []string{"127.0.0.1:9"} // nothing answers: no test traffic leaves the host
	cfg.Resolver.Clients = map[string]string{"127.0.0.1/32": "imvu042"}
	b, _ := cfg.Encode()
	os.WriteFile(dir.Config(), b, 0o644)
	n := start(t, root)
	c, _ := api.Dial("unix:" + n.Dir.Socket())
	owner, _ := identity.Generate()
	offer, _ := c.Offer(ctx)
	a, _ := action.New(handshake.KindCreate, "imvu042", identity.PublicOf(owner), offer.Handshake("imvu042", identity.PublicOf(owner)))
	s, _ := action.Seal(a, owner)
	if _, err := c.Submit(ctx, s); err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, l := range n.Status().Listeners {
		if l.Name == "resolver" && l.Network == "udp" {
			addr = l.Address
		}
	}
	if addr == "" {
		t.Fatal("no resolver listener")
	}
	m := new(mdns.Msg)
	m.SetQuestion("imvu042.world.", mdns.TypeSOA)
	r, err := mdns.Exchange(m, addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("resolver answer for a platform zone: %v %v", r, err)
	}
	// From a source no IMVU owns: refused.
	cl := &mdns.Client{Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}}}
	r, _, err = cl.Exchange(m, addr)
	if err != nil || r.Rcode != mdns.RcodeRefused {
		t.Fatalf("unattributed source: %v %v, want REFUSED", r, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st handshake.IMVU
		if err := c.Query(ctx, owner, api.QueryIMVU, "imvu042", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.Counters["dns_lookups/dns"].Value == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dns_lookups counter %+v, want 1", st.Counters)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkIMVUCreate measures `imvu create` end to end as the CLI does it:
// the offer, the signed handshake over the API, the gates, two durable ledger
// entries, the state file, the registry binding, the zone with a fresh DNSSEC
// key, and the zone served. Reports p50 and p99.
func BenchmarkIMVUCreate(b *testing.B) {
	ctx := context.Background()
	root := b.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		b.Fatal(err)
	}
	n, err := daemon.Start(ctx, root, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	c, _ := api.Dial("unix:" + n.Dir.Socket())
	// Room for b.N IMVUs: the admin declares a bigger host.
	admin, _ := identity.ReadKeyFile(n.Dir.AdminKey())
	huge := handshake.Resources{CPUMilli: 1 << 40, MemoryBytes: 1 << 60, Pids: 1 << 40, DiskBytes: 1 << 60, IOBps: 1 << 60,
		IOPS: 1 << 40, NetBps: 1 << 60, DNSRecords: 1 << 40, Mailboxes: 1 << 40, MailBytes: 1 << 60, MailRate: 1 << 40}
	ca, _ := action.New(handshake.KindCapacity, identity.ScopePlatform, identity.PublicOf(admin), handshake.CapacityParams{Capacity: huge})
	cs, _ := action.Seal(ca, admin)
	if _, err := c.Submit(ctx, cs); err != nil {
		b.Fatal(err)
	}
	owners := make([][]byte, b.N)
	for i := range owners {
		owners[i], _ = identity.Generate()
	}
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		offer, err := c.Offer(ctx)
		if err != nil {
			b.Fatal(err)
		}
		owner := owners[i]
		id := fmt.Sprintf("bench%d", i)
		a, _ := action.New(handshake.KindCreate, id, identity.PublicOf(owner), offer.Handshake(id, identity.PublicOf(owner)))
		s, _ := action.Seal(a, owner)
		if _, err := c.Submit(ctx, s); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "p99-ms")
}

func soaSerial(t *testing.T, n *daemon.Node) uint32 {
	t.Helper()
	var addr string
	for _, l := range n.Status().Listeners {
		if l.Name == "dns" && l.Network == "udp" {
			addr = l.Address
		}
	}
	m := new(mdns.Msg)
	m.SetQuestion("imvu042.world.", mdns.TypeSOA)
	r, err := mdns.Exchange(m, addr)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("SOA: %v %v", r, err)
	}
	return r.Answer[0].(*mdns.SOA).Serial
}

// TestMailIsMetered: a message submitted and delivered becomes mail-meter
// usage (mail_messages, mail_bytes) in the ledger, and the exit bundle carries
// the mailbox's Maildir.
func TestMailIsMetered(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		t.Fatal(err)
	}
	dir, _ := datadir.Open(root)
	cfg, _ := config.Load(dir.Config())
	cfg.Mail.MeterEvery = config.Duration{Duration: time.Second}
	b, _ := cfg.Encode()
	os.WriteFile(dir.Config(), b, 0o600)
	n := start(t, root)
	c, _ := api.Dial("unix:" + n.Dir.Socket())
	owner, _ := identity.Generate()
	submit := func(kind string, params any) {
		t.Helper()
		a, _ := action.New(kind, "imvu042", identity.PublicOf(owner), params)
		s, _ := action.Seal(a, owner)
		if _, err := c.Submit(ctx, s); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
	}
	offer, _ := c.Offer(ctx)
	submit(handshake.KindCreate, offer.Handshake("imvu042", identity.PublicOf(owner)))
	submit(mailbox.KindAdd, mailbox.AddParams{Address: "creator@imvu042.world", Identity: identity.PublicOf(owner), Password: mailbox.Hash("pw", []byte("0123456789abcdef"))})
	submit(mailbox.KindAdd, mailbox.AddParams{Address: "team@imvu042.world", Identity: identity.PublicOf(owner)})
	var sub string
	for _, l := range n.Status().Listeners {
		if l.Name == "submission" {
			sub = l.Address
		}
	}
	sc, err := smtp.DialStartTLS(sub, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", "creator@imvu042.world", "pw")); err != nil {
		t.Fatal(err)
	}
	msg := "From: creator@imvu042.world\r\nTo: team@imvu042.world\r\nSubject: metered\r\n\r\nhi\r\n"
	if err := sc.SendMail("creator@imvu042.world", []string{"team@imvu042.world"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m handshake.IMVU
		if err := c.Query(ctx, owner, api.QueryIMVU, "imvu042", nil, &m); err != nil {
			t.Fatal(err)
		}
		if m.Counters["mail_messages/mail"].Value >= 1 && m.Counters["mail_bytes/mail"].Value >= uint64(len(msg)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail counters %+v", m.Counters)
		}
		time.Sleep(200 * time.Millisecond)
	}
	submit(handshake.KindExit, handshake.ExitParams{})
	var buf bytes.Buffer
	if err := c.Export(ctx, owner, "imvu042", &buf, nil); err != nil {
		t.Fatal(err)
	}
	bd, err := bundle.Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for name, data := range bd.Files {
		found = found || (strings.HasPrefix(name, "mail/team@imvu042.world/") && bytes.Contains(data, []byte("Subject: metered")))
	}
	if !found {
		t.Fatal("the bundle does not carry team@'s Maildir")
	}
}

// TestMailLimitsFromTheEnvelope: mail past an IMVU's envelope is refused at
// SMTP and nothing more is stored: past mail_bytes with 552 5.2.2 (full), past
// mail_per_minute with 451 (try later).
func TestMailLimitsFromTheEnvelope(t *testing.T) {
	cases := []struct {
		name     string
		limit    func(*handshake.Resources)
		accepted int // messages taken before the refusal
		code     int
	}{
		{"quota", func(r *handshake.Resources) { r.MailBytes = 3000 }, 1, 552},
		{"rate", func(r *handshake.Resources) { r.MailRate = 2 }, 2, 451},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, submit := mailIMVU(t, tc.limit)
			submit(mailbox.KindAdd, mailbox.AddParams{Address: "team@imvu042.world"})
			mx := listener(n, "smtp")
			send := func() error {
				sc, err := smtp.Dial(mx)
				if err != nil {
					t.Fatal(err)
				}
				defer sc.Close()
				msg := "From: a@example.org\r\nTo: team@imvu042.world\r\nSubject: big\r\n\r\n" + bigBody + "\r\n"
				return sc.SendMail("a@example.org", []string{"team@imvu042.world"}, strings.NewReader(msg))
			}
			for i := 0; i < tc.accepted; i++ {
				if err := send(); err != nil {
					t.Fatalf("message %d: %v", i+1, err)
				}
			}
			err := send()
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Fatalf("message past the %s: %v, want %d", tc.name, err, tc.code)
			}
			d, _ := n.Dir.IMVU("imvu042")
			stored, _ := os.ReadDir(filepath.Join(d, "mail", "team@imvu042.world", "new"))
			if len(stored) != tc.accepted {
				t.Fatalf("%d messages stored, want %d", len(stored), tc.accepted)
			}
		})
	}
}

// bigBody is ~1.6 KB in short lines.
var bigBody = strings.Repeat(strings.Repeat("x", 70)+"\r\n", 22)

// mailIMVU starts a node and creates imvu042 with the offered envelope, as
// limit changes it. submit signs an action of imvu042's owner (a mailbox's
// identity is the owner's when AddParams leaves it out) and returns the
// owner's key.
func mailIMVU(t *testing.T, limit func(*handshake.Resources)) (*daemon.Node, func(kind string, params any) identity.PublicKey) {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		t.Fatal(err)
	}
	n := start(t, root)
	c, _ := api.Dial("unix:" + n.Dir.Socket())
	owner, _ := identity.Generate()
	submit := func(kind string, params any) identity.PublicKey {
		t.Helper()
		if p, ok := params.(mailbox.AddParams); ok && p.Identity == (identity.PublicKey{}) {
			p.Identity = identity.PublicOf(owner)
			params = p
		}
		a, _ := action.New(kind, "imvu042", identity.PublicOf(owner), params)
		s, _ := action.Seal(a, owner)
		if _, err := c.Submit(ctx, s); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		return identity.PublicOf(owner)
	}
	offer, _ := c.Offer(ctx)
	limit(&offer.Envelope)
	submit(handshake.KindCreate, offer.Handshake("imvu042", identity.PublicOf(owner)))
	return n, submit
}

// listener is the address of the node's listener by name.
func listener(n *daemon.Node, name string) string {
	for _, l := range n.Status().Listeners {
		if l.Name == name {
			return l.Address
		}
	}
	return ""
}

// TestIMAPQuotaIsTheIMVUs: an IMAP APPEND counts against the IMVU's
// mail_bytes over all its mailboxes, as delivery does, not against the one
// mailbox it goes into.
func TestIMAPQuotaIsTheIMVUs(t *testing.T) {
	n, submit := mailIMVU(t, func(r *handshake.Resources) { r.MailBytes = 3000 })
	salt := []byte("0123456789abcdef")
	submit(mailbox.KindAdd, mailbox.AddParams{Address: "team@imvu042.world"})
	submit(mailbox.KindAdd, mailbox.AddParams{Address: "creator@imvu042.world", Password: mailbox.Hash("pw", salt)})
	msg := "From: a@example.org\r\nTo: team@imvu042.world\r\nSubject: big\r\n\r\n" + bigBody + "\r\n"
	sc, err := smtp.Dial(listener(n, "smtp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.SendMail("a@example.org", []string{"team@imvu042.world"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("the first message: %v", err)
	}
	sc.Close()
	ic, err := imapclient.DialStartTLS(listener(n, "imap"), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("creator@imvu042.world", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	up := ic.Append("INBOX", int64(len(msg)), nil)
	up.Write([]byte(msg))
	up.Close()
	if _, err := up.Wait(); err == nil || !strings.Contains(strings.ToUpper(err.Error()), "OVERQUOTA") {
		t.Fatalf("APPEND into an empty mailbox of an IMVU whose mail is full: %v, want OVERQUOTA", err)
	}
}
