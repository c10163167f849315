package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
)

// fixedPort returns a loopback port free for TCP and UDP, below Linux's
// ephemeral range so no other process is handed it by the kernel while the
// test holds it across restarts.
func fixedPort(t *testing.T) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return p
	}
	t.Fatal("no free loopback port")
	return 0
}

// TestMailAcrossNodes: two nodes with their own TLDs and their own DNS. A
// message from creator@imvu042.world to creator@imvu043.earth is routed by
// an MX lookup through node A's resolver (forwarding to node B's authority)
// and arrives with SPF, DKIM and DMARC passing. Then node B goes away (its DNS
// and its MX: a DNS outage for A), A queues the next message, A restarts,
// B comes back, and the message is delivered exactly once.
func TestMailAcrossNodes(t *testing.T) {
	t.Parallel()
	swaks := need(t, "swaks", "swaks")
	dnsA, dnsB, mxA, mxB := fixedPort(t), fixedPort(t), fixedPort(t), fixedPort(t)
	wire := func(ownDNS, peerDNS, ownMX, peerMX int) func(*config.Config) {
		return func(c *config.Config) {
			c.DNS.Listen = fmt.Sprintf("127.0.0.1:%d", ownDNS)
			c.Mail.MX = fmt.Sprintf("127.0.0.1:%d", ownMX)
			c.Mail.RemotePort = peerMX
			c.Resolver.Listen = "127.0.0.1:0"
			c.Resolver.Forwarders = []string{fmt.Sprintf("127.0.0.1:%d", peerDNS)}
			c.Resolver.TrustAnchors = nil
			c.Mail.Retry = []config.Duration{{Duration: 300 * time.Millisecond}, {Duration: 700 * time.Millisecond}}
		}
	}
	a := newNodeWith(t, nodeOptions{edit: wire(dnsA, dnsB, mxA, mxB)})
	b := newNodeWith(t, nodeOptions{tlds: []string{"earth"}, edit: wire(dnsB, dnsA, mxB, mxA)})
	a.createViaCLI(t, "imvu042")
	b.createViaCLI(t, "imvu043")
	a.passwd(t, "creator@imvu042.world", a.keyFile("imvu042"), "pw-a")
	b.passwd(t, "creator@imvu043.earth", b.keyFile("imvu043"), "pw-b")

	submit := func(subject string) {
		t.Helper()
		out, err := exec.Command(swaks, "--timeout", "20", "--server", a.listener(t, "submission"), "--tls",
			"--auth", "PLAIN", "--auth-user", "creator@imvu042.world", "--auth-password", "pw-a",
			"--from", "creator@imvu042.world", "--to", "creator@imvu043.earth", "--header", "Subject: "+subject).CombinedOutput()
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, tail(string(out), 1500))
		}
	}
	inbox := func(want int) [][]byte {
		t.Helper()
		var msgs [][]byte
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if msgs, _ = imapFetch(t, b.listener(t, "imap"), "creator@imvu043.earth", "pw-b"); len(msgs) >= want {
				break
			}
		}
		if len(msgs) != want {
			t.Fatalf("creator@imvu043.earth holds %d messages, want %d", len(msgs), want)
		}
		return msgs
	}

	submit("across nodes")
	got := inbox(1)[0]
	for _, want := range []string{"Subject: across nodes", "spf=pass", "dkim=pass", "dmarc=pass"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Fatalf("delivered message lacks %q:\n%s", want, tail(string(got), 2000))
		}
	}

	// Outage: B's DNS and MX are gone. A accepts the message and keeps it.
	b.stop(t)
	submit("through the outage")
	queue := filepath.Join(a.dir, "imvu", "imvu042", "mail", "queue")
	deadline := time.Now().Add(10 * time.Second)
	for queued(t, queue) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing in %s while the peer is down", queue)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a few failed attempts
	if queued(t, queue) == 0 {
		t.Fatal("the queued message vanished while the peer was down")
	}
	a.restart(t) // the queue survives a restart of the sender
	b.start(t)
	inbox(2)
	time.Sleep(2 * time.Second) // a duplicate would land by now
	if msgs := inbox(2); !bytes.Contains(msgs[1], []byte("Subject: through the outage")) {
		t.Fatalf("second message:\n%s", tail(string(msgs[1]), 1500))
	}
	for deadline := time.Now().Add(10 * time.Second); queued(t, queue) != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the delivered message is still queued")
		}
	}
}

// passwd sets a mailbox's password with `nexus mail passwd --password-stdin`.
func (n *node) passwd(t testing.TB, addr, key, pw string) {
	t.Helper()
	cmd := exec.Command(nexusBin, "mail", "passwd", addr, "--key", key, "--password-stdin", "--data", n.dir)
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mail passwd %s: %v\n%s", addr, err, out)
	}
}

// queued counts the message files in a queue folder.
func queued(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json") {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRevokedMemberLosesMail: a member's mailbox answers its password over
// IMAP and submission until the owner revokes the member; then neither does.
func TestRevokedMemberLosesMail(t *testing.T) {
	t.Parallel()
	swaks := need(t, "swaks", "swaks")
	n := newNode(t, "")
	owner := n.createViaCLI(t, "imvu042")
	member := n.newKey(t, "member")
	now := time.Now()
	n.must(t, owner, handshake.KindIssue, "imvu042", issueParams(t, owner, pub(member), "imvu042", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)))
	n.cliOK(t, "mail", "add", "team@imvu042.world", "--identity", pub(member).String(), "--key", n.keyFile("imvu042"))
	n.passwd(t, "team@imvu042.world", n.keyFile("member"), "pw-member")
	login := func() string {
		_, failed := imapFetch(t, n.listener(t, "imap"), "team@imvu042.world", "pw-member")
		return failed
	}
	submit := func() error {
		out, err := exec.Command(swaks, "--timeout", "20", "--server", n.listener(t, "submission"), "--tls", "--auth", "PLAIN",
			"--auth-user", "team@imvu042.world", "--auth-password", "pw-member", "--from", "team@imvu042.world",
			"--to", "creator@imvu042.world").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, tail(string(out), 300))
		}
		return nil
	}
	if failed := login(); failed != "" {
		t.Fatalf("the member's login failed before the revocation: %s", failed)
	}
	if err := submit(); err != nil {
		t.Fatalf("the member's submission failed before the revocation: %v", err)
	}
	n.must(t, owner, handshake.KindRevoke, "imvu042", handshake.RevokeParams{Key: pub(member)})
	if failed := login(); failed == "" {
		t.Fatal("a revoked member still logs in to its mailbox over IMAP")
	}
	if err := submit(); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("a revoked member still submits mail: %v", err)
	}
}

// TestMXFollowsTheOwner: the address an IMVU's mail exchanger points to is
// the one its owner signed (mail.mx at imvu create). An admin alone cannot
// move it, and neither can an edit of nexus.toml; owner and admin together can.
func TestMXFollowsTheOwner(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.createViaCLI(t, "imvu042")
	mxA := func() string {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion("mail.imvu042.world.", mdns.TypeA)
		r, err := mdns.Exchange(m, n.listener(t, "dns"))
		if err != nil {
			t.Fatal(err)
		}
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				return a.A.String()
			}
		}
		return ""
	}
	if got := mxA(); got != "127.0.0.1" {
		t.Fatalf("mail.imvu042.world A %q after create, want the offered 127.0.0.1", got)
	}
	n.run(t, []hostile{
		{name: "admin moves the IMVU's mail alone", gate: "G06", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, mailbox.KindMX, "imvu042", mailbox.MXParams{Address: "127.0.0.66"})
			}},
	})
	n.stop(t)
	n.editConfig(t, func(c *config.Config) { c.Mail.Address = "127.0.0.9" })
	n.start(t)
	if got := mxA(); got != "127.0.0.1" {
		t.Fatalf("an edit of nexus.toml moved imvu042's MX to %q", got)
	}
	n.must(t, n.admin, mailbox.KindMX, "imvu042", mailbox.MXParams{Address: "127.0.0.9"}, o42)
	if got := mxA(); got != "127.0.0.9" {
		t.Fatalf("after the owner signed the move, mail.imvu042.world A is %q", got)
	}
}

// TestPasswordGuessingIsLimited: ten wrong passwords for a mailbox, over any
// number of connections, and even the right one is refused for a while; other
// mailboxes are not affected.
func TestPasswordGuessingIsLimited(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	key := n.keyFile("imvu042")
	n.passwd(t, "creator@imvu042.world", key, "right")
	n.cliOK(t, "mail", "add", "team@imvu042.world", "--key", key)
	n.passwd(t, "team@imvu042.world", key, "team-pw")
	imap := n.listener(t, "imap")
	login := func(user, pass string) error {
		c, err := imapclient.DialStartTLS(imap, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login(user, pass).Wait()
	}
	if err := login("creator@imvu042.world", "right"); err != nil {
		t.Fatalf("the right password before any guess: %v", err)
	}
	for i := range 10 {
		if err := login("creator@imvu042.world", fmt.Sprintf("guess-%d", i)); err == nil {
			t.Fatal("a wrong password logged in")
		}
	}
	if err := login("creator@imvu042.world", "right"); err == nil {
		t.Fatal("after ten wrong passwords the right one still logs in at once: guessing is unlimited")
	}
	if err := login("team@imvu042.world", "team-pw"); err != nil {
		t.Fatalf("another mailbox is locked out by the guesses: %v", err)
	}
}

// TestDKIMKeysAreTheOwners: the DKIM keys a domain publishes are the ones
// its owner signed (imvu create signs s1; rotate signs the new selector). A
// key file swapped on the host changes neither the published record nor
// what mail is signed with: submission answers 451 until it is put right.
func TestDKIMKeysAreTheOwners(t *testing.T) {
	t.Parallel()
	swaks := need(t, "swaks", "swaks")
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	key := n.keyFile("imvu042")
	var mail mailbox.Mail
	if err := json.Unmarshal([]byte(n.cliOK(t, "mail", "ls", "imvu042", "--key", key, "-o", "json")), &mail); err != nil {
		t.Fatal(err)
	}
	signed, ok := mail.Keys["imvu042.world"]
	if !ok || signed.Selector != "s1" || signed.Ed25519 == "" {
		t.Fatalf("imvu create left no signed DKIM keys: %+v", mail.Keys)
	}
	txt := func(name string) string {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeTXT)
		r, err := mdns.Exchange(m, n.listener(t, "dns"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range r.Answer {
			if tx, ok := rr.(*mdns.TXT); ok {
				out = append(out, strings.Join(tx.Txt, ""))
			}
		}
		return strings.Join(out, " ")
	}
	if got := txt("s1-ed._domainkey.imvu042.world"); !strings.Contains(got, "p="+signed.Ed25519) {
		t.Fatalf("s1-ed publishes %q, not the signed key", got)
	}

	// The host's key file is swapped for another key.
	_, other, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(other)
	file := filepath.Join(n.dir, "imvu", "imvu042", "dkim", "imvu042.world", "s1-ed.key")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	n.restart(t)
	if got := txt("s1-ed._domainkey.imvu042.world"); !strings.Contains(got, "p="+signed.Ed25519) {
		t.Fatalf("after the swap s1-ed publishes %q, not the signed key", got)
	}
	n.passwd(t, "creator@imvu042.world", key, "pw")
	out, err := exec.Command(swaks, "--timeout", "20", "--server", n.listener(t, "submission"), "--tls", "--auth", "PLAIN",
		"--auth-user", "creator@imvu042.world", "--auth-password", "pw", "--from", "creator@imvu042.world",
		"--to", "creator@imvu042.world", "--header", "Subject: after the swap").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "451") {
		t.Fatalf("mail after the key swap: %v, want a temporary refusal (451): nothing signed by a key the domain never published\n%s", err, tail(string(out), 800))
	}

	// Rotation signs the new selector's keys, which the zone then publishes.
	n.cliOK(t, "mail", "dkim", "rotate", "imvu042.world", "--selector", "s2", "--key", key)
	if err := json.Unmarshal([]byte(n.cliOK(t, "mail", "ls", "imvu042", "--key", key, "-o", "json")), &mail); err != nil {
		t.Fatal(err)
	}
	s2 := mail.Keys["imvu042.world"]
	if s2.Selector != "s2" || !strings.Contains(txt("s2-ed._domainkey.imvu042.world"), "p="+s2.Ed25519) {
		t.Fatalf("after rotating to s2: %+v, published %q", s2, txt("s2-ed._domainkey.imvu042.world"))
	}
}
