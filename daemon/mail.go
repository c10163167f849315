package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/imapd"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/maildir"
	"github.com/nexus-core/nexus/mailq"
	"github.com/nexus-core/nexus/smtpd"
)

// mailService runs SMTP, IMAP and the outbound queue for every IMVU's
// mailboxes as the ledger records them.
type mailService struct {
	n     *Node
	store *maildir.Store
	smtp  *smtpd.Server
	imap  *imapd.Server
	queue *mailq.Queue

	started  bool
	restore  chan struct{} // a mail.restore may be waiting to be unpacked
	usageMu  sync.Mutex
	usage    map[string]*mailUsage // IMVU -> stored mail, measured and then counted up
	rateMu   sync.Mutex
	rates    map[string]*bucket // IMVU -> its mail_per_minute allowance
	failures map[string]*bucket // login name -> its wrong-password allowance
}

// bucket is a token bucket in whole messages: rate per minute, burst one
// minute's worth.
type bucket struct {
	tokens uint64
	last   time.Time
}

func (n *Node) startMail(ctx context.Context, reg prometheus.Registerer) error {
	c := n.Config.Mail
	if c.Hostname == "" {
		return nil
	}
	tlsc, err := nodeTLS(n.Dir, c)
	if err != nil {
		return err
	}
	ms := &mailService{n: n, store: maildir.NewStore(), rates: map[string]*bucket{}, failures: map[string]*bucket{}, usage: map[string]*mailUsage{}, restore: make(chan struct{}, 1)}
	look := lookups{n: n, cache: &lookupCache{m: map[lookupKey]lookupEntry{}}}
	var retry []time.Duration
	for _, d := range c.Retry {
		retry = append(retry, d.Duration)
	}
	if ms.queue, err = mailq.New(mailq.Config{Dir: ms.queueDir, IMVUs: n.imvuIDs, Resolver: look, Keys: ms.keys,
		Local: ms.local, Hostname: c.Hostname, Port: c.RemotePort, TLS: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		Backoff: retry,
		Logger:  n.logger.With("part", "mailq"), Registerer: reg}); err != nil {
		return err
	}
	if ms.smtp, err = smtpd.New(smtpd.Config{MXAddr: c.MX, SubmissionAddr: c.Submission, SubmissionTLSAddr: c.SubmissionTLS,
		Hostname: c.Hostname, TLS: tlsc, Router: ms, Deliverer: ms, Auth: ms, Relay: ms, Allow: ms.allow,
		Checker: &smtpd.Checker{LookupTXT: look.LookupTXT, LookupIP: look.LookupIP, LookupMX: look.LookupMX},
		Logger:  n.logger.With("part", "smtpd"), Registerer: reg}); err != nil {
		return err
	}
	if ms.imap, err = imapd.New(imapd.Config{Addr: c.IMAP, TLS: tlsc, Auth: ms, Logger: n.logger.With("part", "imapd"), Registerer: reg}); err != nil {
		return err
	}
	n.mail = ms
	return nil
}

// runMail opens the mail listeners and starts the queue and the meter: after
// replay, since every one of them reads the derived state.
func (n *Node) runMail(ctx context.Context) error {
	ms := n.mail
	if ms == nil {
		return nil
	}
	if err := ms.smtp.Start(ctx); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if err := ms.imap.Start(ctx); err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	ms.started = true
	mx, sub, subTLS := ms.smtp.Addrs()
	n.listeners = append(n.listeners, api.Listener{Name: "smtp", Network: "tcp", Address: mx},
		api.Listener{Name: "submission", Network: "tcp", Address: sub}, api.Listener{Name: "imap", Network: "tcp", Address: ms.imap.Addr()})
	if subTLS != "" {
		n.listeners = append(n.listeners, api.Listener{Name: "submissions", Network: "tcp", Address: subTLS})
	}

	n.Engine.Watch(func(*handshake.State, string) {
		select {
		case ms.restore <- struct{}{}:
		default:
		}
	})
	n.wg.Add(3)
	go func() { defer n.wg.Done(); ms.queue.Run(ctx) }()
	go func() { defer n.wg.Done(); ms.runRestores(ctx) }()
	go func() {
		defer n.wg.Done()
		n.newMeter("mail", n.Config.Mail.MeterEvery.Duration, ms.meterSources).run(ctx)
	}()
	return nil
}

func (ms *mailService) close() {
	if ms.started {
		ms.smtp.Close()
		ms.imap.Close()
	}
}

func (n *Node) imvuIDs() []string {
	var ids []string
	n.Engine.View(func(st *handshake.State) error {
		for id := range st.IMVUs {
			ids = append(ids, id)
		}
		return nil
	})
	return ids
}

func (ms *mailService) imvuDir(id string) (string, error) { return ms.n.Dir.IMVU(id) }

func (ms *mailService) queueDir(id string) (string, error) {
	d, err := ms.imvuDir(id)
	return filepath.Join(d, "mail", "queue"), err
}

// box finds a mailbox by address: the IMVU it is bound to and its record.
func (ms *mailService) box(addr string) (imvu string, b mailbox.Box, quota int64, ok bool) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	ms.n.Engine.View(func(st *handshake.State) error {
		id, bound := st.BoundTo("mailbox:" + addr)
		if !bound {
			return nil
		}
		m := st.IMVUs[id]
		if m == nil || m.Status == handshake.StatusExited {
			return nil
		}
		b, ok = mailbox.Of(m).Boxes[addr]
		imvu, quota = id, int64(m.Envelope.MailBytes)
		return nil
	})
	return imvu, b, quota, ok
}

func (ms *mailService) boxPath(imvu, addr string) (string, error) {
	d, err := ms.imvuDir(imvu)
	return filepath.Join(d, "mail", strings.ToLower(addr)), err
}

// Local implements smtpd.Router.
func (ms *mailService) Local(_ context.Context, rcpt string) (smtpd.Mailbox, error) {
	if imvu, _, _, ok := ms.box(rcpt); ok {
		return smtpd.Mailbox{Address: strings.ToLower(rcpt), IMVU: imvu}, nil
	}
	_, domain, err := mailbox.SplitAddress(rcpt)
	if err != nil {
		return smtpd.Mailbox{}, smtpd.ErrNoMailbox
	}
	held := false
	ms.n.Engine.View(func(st *handshake.State) error { _, held = st.BoundTo("domain:" + domain); return nil })
	if held {
		return smtpd.Mailbox{}, smtpd.ErrNoMailbox
	}
	return smtpd.Mailbox{}, smtpd.ErrNotLocal
}

// Deliver implements smtpd.Deliverer: durable in the mailbox's Maildir before
// it returns; DMARC-quarantined mail goes to Junk.
func (ms *mailService) Deliver(_ context.Context, to smtpd.Mailbox, msg []byte) error {
	path, err := ms.boxPath(to.IMVU, to.Address)
	if err != nil {
		return err
	}
	if err := ms.fits(to.IMVU, int64(len(msg))); err != nil {
		return err
	}
	mb, err := ms.store.Open(path)
	if err != nil {
		return err
	}
	if bytes.Contains(headerOf(msg), []byte("\nX-Nexus-Quarantine:")) {
		junk, err := mb.Folder("Junk")
		if err != nil {
			if err := mb.CreateFolder("Junk"); err != nil {
				return err
			}
			if junk, err = mb.Folder("Junk"); err != nil {
				return err
			}
		}
		mb = junk
	}
	_, err = mb.DeliverWith(bytes.NewReader(msg), maildir.DeliverOptions{Max: imapd.MaxMessageSize, NoUID: true})
	return err
}

func headerOf(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return append([]byte("\n"), msg[:i]...)
	}
	return append([]byte("\n"), msg...)
}

// Authenticate implements smtpd.Authenticator.
func (ms *mailService) Authenticate(_ context.Context, user, pass string) (smtpd.Mailbox, error) {
	imvu, b, _, err := ms.login(user, pass)
	if err != nil {
		return smtpd.Mailbox{}, err
	}
	return smtpd.Mailbox{Address: b.Address, IMVU: imvu}, nil
}

// login checks a mailbox's password and that the identity the mailbox is
// bound to still stands in its IMVU: revoking a member ends its mail logins.
func (ms *mailService) login(user, pass string) (imvu string, b mailbox.Box, quota int64, err error) {
	imvu, b, quota, ok := ms.box(user)
	if !ok {
		return "", b, 0, errors.New("invalid credentials")
	}
	// Allowances exist per mailbox only, so a spray of made-up names costs
	// no memory.
	ms.rateMu.Lock()
	allowed := take(ms.failures, b.Address, loginFailures, false)
	ms.rateMu.Unlock()
	if !allowed {
		return "", b, 0, errTooManyFailures
	}
	if b.Password == "" || !mailbox.Check(b.Password, pass) {
		ms.rateMu.Lock()
		take(ms.failures, b.Address, loginFailures, true)
		ms.rateMu.Unlock()
		return "", b, 0, errors.New("invalid credentials")
	}
	standing := false
	ms.n.Engine.View(func(st *handshake.State) error {
		role, ok := st.RoleOf(b.Identity, imvu)
		standing = ok && !role.Revoked && (role.Identity == nil || role.Identity.ValidAt(time.Now()) == nil)
		return nil
	})
	if !standing {
		return "", b, 0, errors.New("invalid credentials")
	}
	return imvu, b, quota, nil
}

// Login implements imapd.Authenticator.
func (ms *mailService) Login(_ context.Context, user, pass string) (imapd.Account, error) {
	imvu, b, quota, err := ms.login(user, pass)
	if err != nil {
		return imapd.Account{}, err
	}
	path, err := ms.boxPath(imvu, b.Address)
	if err != nil {
		return imapd.Account{}, err
	}
	// APPEND and COPY count against the IMVU's mail_bytes over all its
	// mailboxes, as delivery does.
	fits := func(n int64) error {
		var se *smtp.SMTPError
		if err := ms.fits(imvu, n); errors.As(err, &se) && se.Code == 552 {
			return imapd.ErrOverQuota
		} else if err != nil {
			return err
		}
		return nil
	}
	return imapd.Account{Address: b.Address, IMVU: imvu, Path: path, Quota: quota, Fits: fits}, nil
}

// Submit implements smtpd.Relay: G13's second line (the sender is the
// authenticated mailbox, in its own IMVU's domain), then the durable queue.
func (ms *mailService) Submit(ctx context.Context, user smtpd.Mailbox, from string, rcpts []string, msg []byte) error {
	imvu, b, _, ok := ms.box(from)
	if !ok || imvu != user.IMVU || b.Address != user.Address {
		return fmt.Errorf("%s may not send as %s", user.Address, from)
	}
	_, err := ms.queue.Enqueue(ctx, imvu, from, rcpts, msg)
	return err
}

// local implements mailq.Local.
func (ms *mailService) local(ctx context.Context, rcpt string) (func([]byte) error, bool) {
	mb, err := ms.Local(ctx, rcpt)
	if err != nil {
		return nil, false
	}
	return func(msg []byte) error { return ms.Deliver(ctx, mb, msg) }, true
}

// keys implements mailq.Keys: the IMVU's DKIM keys for a domain it holds, under
// its active selector (s1 until rotated).
func (ms *mailService) keys(imvu, domain string) []mailq.Key {
	sel := ""
	var signed *mailbox.DKIM
	ms.n.Engine.View(func(st *handshake.State) error {
		m := st.IMVUs[imvu]
		if m == nil {
			return nil
		}
		if id, ok := st.BoundTo("domain:" + strings.ToLower(domain)); !ok || id != imvu {
			return nil
		}
		mail := mailbox.Of(m)
		sel = mail.Selectors[strings.ToLower(domain)]
		if sel == "" {
			sel = "s1"
		}
		if k, ok := mail.Keys[strings.ToLower(domain)]; ok && k.Selector == sel {
			signed = &k
		}
		return nil
	})
	if sel == "" {
		return nil
	}
	ed, rs, err := ms.n.dkimKeys(imvu, domain, sel)
	if err != nil {
		ms.n.logger.Error("dkim keys", "imvu", imvu, "domain", domain, "err", err)
		return nil
	}
	if signed != nil {
		// A key file that no longer holds the key the owner signed was
		// changed around the interfaces: no key is handed out, so the queue
		// refuses the mail (451) rather than sign with a key the owner
		// never signed.
		edPub, rsaPub := publicKeys(ed, rs)
		if edPub != signed.Ed25519 || rsaPub != signed.RSA {
			ms.n.logger.Warn("dkim key files differ from the keys the owner signed; not signing", "imvu", imvu, "domain", domain, "selector", sel)
			return nil
		}
	}
	return []mailq.Key{{Selector: sel + "-ed", Signer: ed}, {Selector: sel + "-rsa", Signer: rs}}
}

// publicKeys are a selector's public keys as mail.dkim.rotate carries them.
func publicKeys(ed ed25519.PrivateKey, rs *rsa.PrivateKey) (string, string) {
	der, _ := x509.MarshalPKIXPublicKey(&rs.PublicKey)
	return base64.StdEncoding.EncodeToString(ed.Public().(ed25519.PublicKey)), base64.StdEncoding.EncodeToString(der)
}

// dkimView answers mailbox.QueryKeys: the public keys of a selector of one
// of the IMVU's domains, made now if they do not exist.
func (n *Node) dkimView(_ context.Context, st *handshake.State, q *action.Query) (any, error) {
	var p mailbox.KeysParams
	if err := q.Decode(&p); err != nil {
		return nil, err
	}
	domain := strings.TrimSuffix(strings.ToLower(p.Domain), ".")
	if id, ok := st.BoundTo("domain:" + domain); !ok || id != q.Scope {
		return nil, fmt.Errorf("%s is not a domain of %s", p.Domain, q.Scope)
	}
	if !dkimSelectorRE.MatchString(p.Selector) {
		return nil, fmt.Errorf("selector %q: want 1-63 of a-z 0-9 -", p.Selector)
	}
	ed, rs, err := n.dkimKeys(q.Scope, domain, p.Selector)
	if err != nil {
		return nil, err
	}
	edPub, rsaPub := publicKeys(ed, rs)
	return mailbox.DKIM{Selector: p.Selector, Ed25519: edPub, RSA: rsaPub}, nil
}

var dkimSelectorRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// meterSources counts, per IMVU, the messages and bytes it received over MX
// and the ones its users submitted (each message once: delivery by the queue,
// local or remote, is not counted again).
func (ms *mailService) meterSources() map[string]map[string]uint64 {
	msgs, size := map[string]uint64{}, map[string]uint64{}
	for id, u := range ms.smtp.Counts() {
		msgs[id] += uint64(u.MessagesIn + u.MessagesSubmitted)
		size[id] += uint64(u.BytesIn + u.BytesSubmitted)
	}
	return map[string]map[string]uint64{"mail_messages": msgs, "mail_bytes": size}
}

// dkimKeys loads, or makes on first use, a domain's Ed25519 and RSA-2048 DKIM
// keys under the IMVU's own folder.
func (n *Node) dkimKeys(imvu, domain, sel string) (ed25519.PrivateKey, *rsa.PrivateKey, error) {
	base, err := n.Dir.IMVU(imvu)
	if err != nil {
		return nil, nil, err
	}
	d := filepath.Join(base, "dkim", strings.ToLower(domain))
	edk, err := n.keyFiles.loadOrMake(filepath.Join(d, sel+"-ed.key"), func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	})
	if err != nil {
		return nil, nil, err
	}
	rsk, err := n.keyFiles.loadOrMake(filepath.Join(d, sel+"-rsa.key"), func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	if err != nil {
		return nil, nil, err
	}
	return edk.(ed25519.PrivateKey), rsk.(*rsa.PrivateKey), nil
}

// keyFiles keeps parsed DKIM key files: every applied action (the zone's
// records) and every submitted message (signing) asks for them. A file is
// read again when its size, time or inode changes, so a file swapped on the
// host is seen at once.
type keyFiles struct {
	mu sync.Mutex
	m  map[string]keyFile
}

type keyFile struct {
	fi  os.FileInfo
	key crypto.Signer
}

func (c *keyFiles) loadOrMake(path string, make func() (crypto.Signer, error)) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err == nil {
		c.mu.Lock()
		kf, ok := c.m[path]
		c.mu.Unlock()
		if ok && os.SameFile(kf.fi, fi) && kf.fi.Size() == fi.Size() && kf.fi.ModTime().Equal(fi.ModTime()) {
			return kf.key, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: not PEM", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]keyFile{}
		}
		c.m[path] = keyFile{fi: fi, key: k.(crypto.Signer)}
		c.mu.Unlock()
		return k.(crypto.Signer), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := make()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return k, datadir.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// mailRecords are the records every mail domain of an IMVU gets: MX, the MX
// target's address, SPF, DMARC and the DKIM keys of the active selector. A
// record the owner set for the same name and type wins.
func mailRecords(n *Node, st *handshake.State, imvu string, z []dns.Record, origin string) []dns.Record {
	c := n.Config.Mail
	if c.Hostname == "" {
		return nil
	}
	m := st.IMVUs[imvu]
	sel := mailbox.Of(m).Selectors[origin]
	if sel == "" {
		sel = "s1"
	}
	ed, rs, err := n.dkimKeys(imvu, origin, sel)
	if err != nil {
		n.logger.Error("dkim keys", "imvu", imvu, "domain", origin, "err", err)
		return nil
	}
	edPub := base64.StdEncoding.EncodeToString(ed.Public().(ed25519.PublicKey))
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rs.PublicKey)
	rsaPub := base64.StdEncoding.EncodeToString(rsaDER)
	// The keys the owner signed are published, not whatever the key files
	// hold now (signing refuses keys that differ, see keys).
	if k, ok := mailbox.Of(m).Keys[origin]; ok && k.Selector == sel {
		edPub, rsaPub = k.Ed25519, k.RSA
	}
	// The MX target points where the owner signed (mail.mx); the node's
	// config only stands in for IMVUs that have signed none yet.
	mx := mailbox.Of(m).MX
	if mx == "" {
		mx = c.Address
	} else if mx != c.Address {
		n.warnMX(imvu, mx, c.Address)
	}
	aType := "A"
	if net.ParseIP(mx).To4() == nil {
		aType = "AAAA"
	}
	want := []dns.Record{
		{Name: "@", Type: "MX", TTL: 3600, Data: "10 mail"},
		{Name: "mail", Type: aType, TTL: 3600, Data: mx},
		{Name: "@", Type: "TXT", TTL: 3600, Data: `"v=spf1 mx -all"`},
		{Name: "_dmarc", Type: "TXT", TTL: 3600, Data: `"v=DMARC1; p=reject; adkim=s; aspf=s"`},
		{Name: sel + "-ed._domainkey", Type: "TXT", TTL: 3600, Data: `"v=DKIM1; k=ed25519; p=` + edPub + `"`},
		{Name: sel + "-rsa._domainkey", Type: "TXT", TTL: 3600, Data: txtChunks("v=DKIM1; k=rsa; p=" + rsaPub)},
	}
	var out []dns.Record
	for _, r := range want {
		taken := false
		for _, u := range z {
			taken = taken || (strings.EqualFold(u.Name, r.Name) && strings.EqualFold(u.Type, r.Type))
		}
		if !taken {
			out = append(out, r)
		}
	}
	return out
}

// warnMX logs, once per IMVU and address, that the node's mail address
// differs from the one the IMVU signed: its records keep the signed one.
func (n *Node) warnMX(imvu, signed, config string) {
	n.mxWarnMu.Lock()
	defer n.mxWarnMu.Unlock()
	if n.mxWarned == nil {
		n.mxWarned = map[string]bool{}
	}
	if k := imvu + "/" + config; !n.mxWarned[k] {
		n.mxWarned[k] = true
		n.logger.Warn("mail.address differs from the MX address the IMVU signed; serving the signed one",
			"imvu", imvu, "signed", signed, "config", config)
	}
}

// txtChunks splits a TXT value into quoted strings of at most 255 bytes.
func txtChunks(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// nodeTLS loads the configured certificate, or makes (once) a self-signed one
// for the mail hostname and loopback under DATA/platform/.
func nodeTLS(dir datadir.Dir, c config.Mail) (*tls.Config, error) {
	certFile, keyFile := c.Cert, c.Key
	if certFile == "" {
		certFile, keyFile = filepath.Join(dir.Platform(), "tls.crt"), filepath.Join(dir.Platform(), "tls.key")
		if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
			if err := selfSigned(certFile, keyFile, c.Hostname); err != nil {
				return nil, err
			}
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("mail TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func selfSigned(certFile, keyFile, host string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(2, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	if err := datadir.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return datadir.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// lookups answers DNS for mail: the platform's own zones from the local
// authority, others through the resolver when one runs.
type lookups struct {
	n     *Node
	cache *lookupCache
}

func (l lookups) query(ctx context.Context, name string, qt uint16) ([]mdns.RR, error) {
	name = mdns.Fqdn(name)
	k := lookupKey{strings.ToLower(name), qt}
	if e, ok := l.cache.get(k); ok {
		return e.rrs, e.err
	}
	rrs, err := l.ask(ctx, name, qt)
	l.cache.put(k, rrs, err)
	return rrs, err
}

// lookupCache keeps mail's answers (SPF, DMARC, MX and address lookups that
// every message repeats) for a few seconds, never past their TTL: a burst
// of mail from one domain asks the DNS once, and a changed record is seen
// within lookupTTL.
type lookupCache struct {
	mu sync.Mutex
	m  map[lookupKey]lookupEntry
}

type lookupKey struct {
	name string
	qt   uint16
}

type lookupEntry struct {
	rrs     []mdns.RR
	err     error
	expires time.Time
}

const (
	lookupTTL  = 5 * time.Second
	lookupKeep = 4096 // entries; past it the cache starts over
)

func (c *lookupCache) get(k lookupKey) (lookupEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || time.Now().After(e.expires) {
		return lookupEntry{}, false
	}
	return e, true
}

func (c *lookupCache) put(k lookupKey, rrs []mdns.RR, err error) {
	ttl := lookupTTL
	var de *net.DNSError
	switch {
	case err == nil:
		for _, rr := range rrs {
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	case errors.As(err, &de) && de.IsNotFound:
	default:
		return // an outage is not remembered
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= lookupKeep {
		clear(c.m)
	}
	c.m[k] = lookupEntry{rrs: rrs, err: err, expires: time.Now().Add(ttl)}
}

func (l lookups) ask(ctx context.Context, name string, qt uint16) ([]mdns.RR, error) {
	q := mdns.Question{Name: name, Qtype: qt, Qclass: mdns.ClassINET}
	var r *mdns.Msg
	if l.n.dns != nil {
		if m, ok := (localZones{addr: l.n.dns.srv.Addr(), tlds: l.n.Config.Platform.TLDs}).Resolve(ctx, q, false); ok {
			r = m
		}
	}
	if r == nil && l.n.resolver != nil {
		m, err := l.n.resolver.Lookup(ctx, name, qt)
		if err != nil && m == nil {
			return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
		}
		r = m
	}
	if r == nil {
		return nil, &net.DNSError{Err: "no resolver for this name", Name: name, IsNotFound: true}
	}
	switch r.Rcode {
	case mdns.RcodeSuccess:
	case mdns.RcodeNameError:
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	default:
		return nil, &net.DNSError{Err: mdns.RcodeToString[r.Rcode], Name: name, IsTemporary: true}
	}
	var out []mdns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qt {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such record", Name: name, IsNotFound: true}
	}
	return out, nil
}

func (l lookups) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := l.query(ctx, name, mdns.TypeTXT)
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*mdns.TXT).Txt, ""))
	}
	return out, err
}

func (l lookups) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := l.query(ctx, name, mdns.TypeMX)
	var out []*net.MX
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, err
}

func (l lookups) LookupIP(ctx context.Context, host string) ([]net.IP, error) {
	var out []net.IP
	rrs, err4 := l.query(ctx, host, mdns.TypeA)
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.A).A)
	}
	rrs, err6 := l.query(ctx, host, mdns.TypeAAAA)
	for _, rr := range rrs {
		out = append(out, rr.(*mdns.AAAA).AAAA)
	}
	if len(out) == 0 {
		if err4 != nil {
			return nil, err4
		}
		return nil, err6
	}
	return out, nil
}

func (l lookups) LookupHost(ctx context.Context, host string) ([]string, error) {
	ips, err := l.LookupIP(ctx, host)
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out, err
}

// fits refuses a message that would take the IMVU's mail past its envelope's
// mail_bytes (G07 for stored mail): 552 5.2.2, as a full mailbox answers.
// The mailboxes are measured at most every usageTTL; deliveries in between
// are added to the measure, and removals are seen at the next measure, so the
// count errs only on the full side.
func (ms *mailService) fits(imvu string, size int64) error {
	var limit int64
	var addrs []string
	ms.n.Engine.View(func(st *handshake.State) error {
		if m := st.IMVUs[imvu]; m != nil {
			limit = int64(m.Envelope.MailBytes)
			addrs = mailbox.Of(m).Addresses()
		}
		return nil
	})
	if limit <= 0 {
		return nil
	}
	ms.usageMu.Lock()
	defer ms.usageMu.Unlock()
	u := ms.usage[imvu]
	if u == nil || time.Since(u.at) > usageTTL {
		used, err := ms.measure(imvu, addrs)
		if err != nil {
			return err
		}
		u = &mailUsage{bytes: used, at: time.Now()}
		ms.usage[imvu] = u
	}
	if u.bytes+size > limit {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full: the IMVU's mail envelope is used up"}
	}
	u.bytes += size
	return nil
}

// usageTTL bounds how stale a measure of an IMVU's stored mail may be.
const usageTTL = 5 * time.Second

type mailUsage struct {
	bytes int64
	at    time.Time
}

// measure sums the bytes stored in the IMVU's mailboxes.
func (ms *mailService) measure(imvu string, addrs []string) (int64, error) {
	used := int64(0)
	for _, a := range addrs {
		path, err := ms.boxPath(imvu, a)
		if err != nil {
			return 0, err
		}
		if _, err := os.Stat(path); err != nil {
			continue
		}
		mb, err := ms.store.Open(path)
		if err != nil {
			return 0, err
		}
		n, err := mb.Size()
		if err != nil {
			return 0, err
		}
		used += n
	}
	return used, nil
}

// allow is the per-IMVU rate limit from its envelope's mail_per_minute, for mail
// in (per recipient IMVU) and out (per sender IMVU): past it, SMTP answers 451
// and the client retries later. An envelope without a rate sends nothing.
func (ms *mailService) allow(imvu string) bool {
	var rate uint64
	ms.n.Engine.View(func(st *handshake.State) error {
		if m := st.IMVUs[imvu]; m != nil {
			rate = m.Envelope.MailRate
		}
		return nil
	})
	if rate == 0 {
		return false
	}
	ms.rateMu.Lock()
	defer ms.rateMu.Unlock()
	return take(ms.rates, imvu, rate, true)
}

// take refills key's bucket in m at rate per minute (burst: one minute's
// worth) and, if spend, takes one token; it reports whether one was there.
// The caller holds the lock guarding m.
func take(m map[string]*bucket, key string, rate uint64, spend bool) bool {
	now := time.Now()
	b := m[key]
	if b == nil {
		b = &bucket{tokens: rate, last: now}
		m[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		per := max(1, uint64(time.Minute.Nanoseconds())/rate) // nanoseconds per token
		refill := uint64(elapsed.Nanoseconds()) / per
		if refill > 0 {
			b.tokens = min(rate, b.tokens+refill)
			b.last = now
		}
	}
	if b.tokens == 0 {
		return false
	}
	if spend {
		b.tokens--
	}
	return true
}

// loginFailures is how many wrong passwords a mailbox takes per minute (and
// in a burst) before its logins are refused until the allowance refills:
// guessing runs at 10 a minute, whatever the number of connections.
const loginFailures = 10

// errTooManyFailures refuses a login while its mailbox's allowance is spent.
var errTooManyFailures = errors.New("too many failed logins for this mailbox; try again in a minute")
