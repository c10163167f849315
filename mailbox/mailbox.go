// Package mailbox owns the mailboxes of IMVUs as the ledger records them: which
// addresses exist, which identity each is bound to, their password hashes, and
// each mail domain's active DKIM selector. It registers the action kinds that
// change them (mail.add, mail.passwd, mail.rm, mail.dkim.rotate).
//
// Passwords reach it only as argon2id hashes made on the user's side; it never
// sees or stores a plaintext password, and never changes a mailbox except
// inside an applier the engine runs.
package mailbox

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// The kinds this package registers.
const (
	KindAdd    = "mail.add"
	KindPasswd = "mail.passwd"
	KindRemove = "mail.rm"
	KindRotate = "mail.dkim.rotate"
	// KindRestore puts a staged archive of messages into a mailbox (import).
	KindRestore = "mail.restore"
	// KindMX sets the address the IMVU's MX target (mail.<zone>) points to:
	// the owner signs where its mail goes, so no edit of the node's config
	// reroutes it.
	KindMX = "mail.mx"
)

// Resource is the resource kind of mailboxes.
const Resource = "mail"

// Box is one mailbox.
type Box struct {
	Address  string             `json:"address"`
	Identity identity.PublicKey `json:"identity"`           // the owner or a member of the IMVU
	Password string             `json:"password,omitempty"` // argon2id PHC string; empty: no login yet
}

// Mail is an IMVU's mail state, stored among its resources.
type Mail struct {
	Boxes     map[string]Box    `json:"boxes"`     // address -> mailbox
	Selectors map[string]string `json:"selectors"` // domain -> active DKIM selector
	// Restores are the message archives put into mailboxes by mail.restore,
	// in ledger order. The daemon unpacks each staged archive once.
	Restores []Restore `json:"restores,omitempty"`
	// MX is the address of the IMVU's mail exchanger, as the owner signed
	// it; "" until mail.mx.
	MX string `json:"mx,omitempty"`
	// Keys are the DKIM public keys each domain's owner signed with
	// mail.dkim.rotate.
	Keys map[string]DKIM `json:"keys,omitempty"`
}

// Restore is one archive of messages (a gzip'd tar of a Maildir, as an exit
// bundle holds it) restored into a mailbox.
type Restore struct {
	Address string `json:"address"`
	Blob    string `json:"blob"` // SHA-256 of the staged archive
	Bytes   uint64 `json:"bytes"`
	Index   uint64 `json:"index"` // ledger index of the action
}

const key = "mail"

// AddParams creates a mailbox bound to an identity of the IMVU.
type AddParams struct {
	Address  string             `json:"address"`
	Identity identity.PublicKey `json:"identity"`
	Password string             `json:"password,omitempty"`
}

// PasswdParams sets a mailbox's password hash.
type PasswdParams struct {
	Address  string `json:"address"`
	Password string `json:"password"`
}

// RemoveParams deletes a mailbox.
type RemoveParams struct {
	Address string `json:"address"`
}

// MXParams name the address mail for the IMVU's domains is sent to.
type MXParams struct {
	Address string `json:"address"`
}

// RestoreParams name a staged message archive and the mailbox it goes into.
type RestoreParams struct {
	Address string `json:"address"`
	Blob    string `json:"blob"`  // SHA-256, hex, of the archive staged at /v1/blobs
	Bytes   uint64 `json:"bytes"` // its size: counted against the mail envelope
}

// RotateParams makes a new DKIM selector active for a domain. With the
// public keys (base64 of the raw Ed25519 key and of the PKIX RSA key, as
// the node made them for the selector), the owner signs which keys the
// domain publishes: a key file swapped on the host then publishes and signs
// nothing.
type RotateParams struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	Ed25519  string `json:"ed25519,omitempty"`
	RSA      string `json:"rsa,omitempty"`
}

// QueryKeys asks the node for the public keys of a domain's selector,
// making them if they do not exist yet: what the owner then signs with
// mail.dkim.rotate. The answer is a DKIM.
const QueryKeys = "mail.dkim.keys"

// KeysParams name a domain and a selector.
type KeysParams struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
}

// DKIM is a domain's active selector and the public keys its owner signed.
type DKIM struct {
	Selector string `json:"selector"`
	Ed25519  string `json:"ed25519"`
	RSA      string `json:"rsa"`
}

var (
	localRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,63}$`)
	selectorRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// SplitAddress checks an address and returns its local part and domain, both
// lower-case.
func SplitAddress(addr string) (local, domain string, err error) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", fmt.Errorf("address %q: want local@domain", addr)
	}
	local, domain = addr[:at], strings.TrimSuffix(addr[at+1:], ".")
	if !localRE.MatchString(local) || strings.Contains(local, "..") || strings.HasSuffix(local, ".") {
		return "", "", fmt.Errorf("address %q: local part must be 1-64 of a-z 0-9 . _ + - (no leading, trailing or double dot)", addr)
	}
	return local, domain, nil
}

// Register adds the mailbox resource and kinds to the engine.
func Register(e *handshake.Engine, exp handshake.Exporter, imp handshake.Importer) error {
	owner := []identity.Role{identity.RoleOwner}
	self := []identity.Role{identity.RoleOwner, identity.RoleMember}
	kinds := []handshake.Kind{
		{Name: KindAdd, Resource: Resource, Where: handshake.OnIMVU, Roles: owner, Prepare: prepareAdd, Apply: applyAdd},
		{Name: KindPasswd, Resource: Resource, Where: handshake.OnIMVU, Roles: self, Prepare: preparePasswd, Apply: applyPasswd},
		{Name: KindRemove, Resource: Resource, Where: handshake.OnIMVU, Roles: owner, Prepare: prepareRemove, Apply: applyRemove},
		{Name: KindRotate, Resource: Resource, Where: handshake.OnIMVU, Roles: owner, Prepare: prepareRotate, Apply: applyRotate},
		{Name: KindRestore, Resource: Resource, Where: handshake.OnIMVU, Roles: owner, Prepare: prepareRestore, Apply: applyRestore},
		// Admins are listed so that G06 asks for the owner: moving an IMVU's
		// mail to another address needs both.
		{Name: KindMX, Resource: Resource, Where: handshake.OnIMVU, Roles: []identity.Role{identity.RoleOwner, identity.RoleAdmin}, Prepare: prepareMX, Apply: applyMX},
	}
	return e.RegisterService(handshake.Resource{Name: Resource, Exporter: exp, Importer: imp}, kinds...)
}

// Of returns the mail state of an IMVU.
func Of(m *handshake.IMVU) Mail {
	mail := Mail{Boxes: map[string]Box{}, Selectors: map[string]string{}}
	if raw, ok := m.Resources[key]; ok {
		_ = jsonUnmarshal(raw, &mail)
	}
	if mail.Boxes == nil {
		mail.Boxes = map[string]Box{}
	}
	if mail.Selectors == nil {
		mail.Selectors = map[string]string{}
	}
	return mail
}

func load(tx *handshake.Tx) (Mail, error) {
	mail := Mail{Boxes: map[string]Box{}, Selectors: map[string]string{}}
	if _, err := tx.Load(key, &mail); err != nil {
		return mail, err
	}
	if mail.Boxes == nil {
		mail.Boxes = map[string]Box{}
	}
	if mail.Selectors == nil {
		mail.Selectors = map[string]string{}
	}
	return mail, nil
}

func prepareAdd(r *handshake.Request) error {
	p, err := handshake.DecodeParams[AddParams](r)
	if err != nil {
		return err
	}
	_, domain, err := SplitAddress(p.Address)
	if err != nil {
		return err
	}
	p.Address = strings.ToLower(p.Address)
	if p.Password != "" {
		if _, err := parseHash(p.Password); err != nil {
			return err
		}
	}
	m := r.IMVU()
	if m == nil {
		return fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	if _, ok := r.State.RoleOf(p.Identity, m.ID); !ok {
		return fmt.Errorf("%s is not an identity of %s: a mailbox belongs to the owner or a member", p.Identity, m.ID)
	}
	r.Domains = append(r.Domains, domain)      // G12: the domain is the IMVU's
	r.MailFrom = append(r.MailFrom, p.Address) // G13: it will send as this address
	r.Names = append(r.Names, handshake.Name{Type: "mailbox", ID: p.Address, Use: handshake.Create})
	r.Demand = handshake.Resources{Mailboxes: 1}
	return nil
}

func applyAdd(tx *handshake.Tx) error {
	p := tx.Params().(*AddParams)
	mail, err := load(tx)
	if err != nil {
		return err
	}
	mail.Boxes[p.Address] = Box{Address: p.Address, Identity: p.Identity, Password: p.Password}
	if err := tx.Bind(handshake.Name{Type: "mailbox", ID: p.Address}); err != nil {
		return err
	}
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	m.Used.Mailboxes++
	return tx.Store(key, mail)
}

func preparePasswd(r *handshake.Request) error {
	p, err := handshake.DecodeParams[PasswdParams](r)
	if err != nil {
		return err
	}
	p.Address = strings.ToLower(p.Address)
	if _, err := parseHash(p.Password); err != nil {
		return err
	}
	m := r.IMVU()
	if m == nil {
		return fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	box, ok := Of(m).Boxes[p.Address]
	if !ok {
		return fmt.Errorf("no mailbox %s in %s", p.Address, m.ID)
	}
	// The owner sets any password of its IMVU; a member only its own.
	if r.Action.Actor != m.Owner && r.Action.Actor != box.Identity {
		return fmt.Errorf("%s may set only its own mailbox's password", r.Action.Actor)
	}
	r.Names = append(r.Names, handshake.Name{Type: "mailbox", ID: p.Address, Use: handshake.Own})
	return nil
}

func applyPasswd(tx *handshake.Tx) error {
	p := tx.Params().(*PasswdParams)
	mail, err := load(tx)
	if err != nil {
		return err
	}
	b := mail.Boxes[p.Address]
	b.Password = p.Password
	mail.Boxes[p.Address] = b
	return tx.Store(key, mail)
}

func prepareRemove(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RemoveParams](r)
	if err != nil {
		return err
	}
	p.Address = strings.ToLower(p.Address)
	r.Names = append(r.Names, handshake.Name{Type: "mailbox", ID: p.Address, Use: handshake.Own})
	return nil
}

func applyRemove(tx *handshake.Tx) error {
	p := tx.Params().(*RemoveParams)
	mail, err := load(tx)
	if err != nil {
		return err
	}
	delete(mail.Boxes, p.Address)
	if err := tx.Unbind(handshake.Name{Type: "mailbox", ID: p.Address}); err != nil {
		return err
	}
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	if m.Used.Mailboxes > 0 {
		m.Used.Mailboxes--
	}
	return tx.Store(key, mail)
}

func prepareRotate(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RotateParams](r)
	if err != nil {
		return err
	}
	p.Domain = strings.TrimSuffix(strings.ToLower(p.Domain), ".")
	if !selectorRE.MatchString(p.Selector) {
		return fmt.Errorf("selector %q: want 1-63 of a-z 0-9 -", p.Selector)
	}
	if (p.Ed25519 == "") != (p.RSA == "") {
		return errors.New("dkim keys: give both the Ed25519 and the RSA public key, or neither")
	}
	if p.Ed25519 != "" {
		if b, err := base64.StdEncoding.DecodeString(p.Ed25519); err != nil || len(b) != ed25519.PublicKeySize {
			return fmt.Errorf("dkim ed25519 key: want the base64 of %d bytes", ed25519.PublicKeySize)
		}
		b, err := base64.StdEncoding.DecodeString(p.RSA)
		if err != nil {
			return fmt.Errorf("dkim rsa key: %w", err)
		}
		k, err := x509.ParsePKIXPublicKey(b)
		if rk, ok := k.(*rsa.PublicKey); err != nil || !ok || rk.N.BitLen() < 2048 {
			return errors.New("dkim rsa key: want the base64 of a PKIX RSA public key of 2048 bits or more")
		}
	}
	r.Domains = append(r.Domains, p.Domain)
	return nil
}

func applyRotate(tx *handshake.Tx) error {
	p := tx.Params().(*RotateParams)
	mail, err := load(tx)
	if err != nil {
		return err
	}
	mail.Selectors[p.Domain] = p.Selector
	if mail.Keys == nil {
		mail.Keys = map[string]DKIM{}
	}
	if p.Ed25519 != "" {
		mail.Keys[p.Domain] = DKIM{Selector: p.Selector, Ed25519: p.Ed25519, RSA: p.RSA}
	} else {
		delete(mail.Keys, p.Domain) // the node's keys for the selector, unsigned
	}
	return tx.Store(key, mail)
}

var blobRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func prepareRestore(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RestoreParams](r)
	if err != nil {
		return err
	}
	p.Address = strings.ToLower(p.Address)
	if !blobRE.MatchString(p.Blob) {
		return fmt.Errorf("blob %q: want the SHA-256 (64 lower-case hex digits) of a staged archive", p.Blob)
	}
	m := r.IMVU()
	if m == nil {
		return fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	if _, ok := Of(m).Boxes[p.Address]; !ok && !r.Replay {
		return fmt.Errorf("no mailbox %s in %s", p.Address, m.ID)
	}
	r.Names = append(r.Names, handshake.Name{Type: "mailbox", ID: p.Address, Use: handshake.Own})
	r.Demand = handshake.Resources{MailBytes: p.Bytes}
	return nil
}

func applyRestore(tx *handshake.Tx) error {
	p := tx.Params().(*RestoreParams)
	mail, err := load(tx)
	if err != nil {
		return err
	}
	mail.Restores = append(mail.Restores, Restore{Address: p.Address, Blob: p.Blob, Bytes: p.Bytes, Index: tx.Index()})
	return tx.Store(key, mail)
}

func prepareMX(r *handshake.Request) error {
	p, err := handshake.DecodeParams[MXParams](r)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(p.Address)
	if err != nil || a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("mx address %q: want a unicast IP address", p.Address)
	}
	p.Address = a.String()
	if r.IMVU() == nil {
		return fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	return nil
}

func applyMX(tx *handshake.Tx) error {
	p := tx.Params().(*MXParams)
	mail, err := load(tx)
	if err != nil {
		return err
	}
	mail.MX = p.Address
	return tx.Store(key, mail)
}

// Addresses lists an IMVU's mailbox addresses, sorted.
func (m Mail) Addresses() []string {
	out := make([]string, 0, len(m.Boxes))
	for a := range m.Boxes {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// The argon2id parameters new hashes use (RFC 9106's second recommended
// option, tuned down in memory for a small host).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// Hash makes an argon2id PHC string for password with a random salt.
func Hash(password string, salt []byte) string {
	k := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k))
}

type phc struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func parseHash(s string) (phc, error) {
	var h phc
	var v int
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return h, errors.New("password: want an argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash), made on the user's side")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return h, fmt.Errorf("password: argon2 version %q, want v=%d", parts[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &h.threads); err != nil {
		return h, fmt.Errorf("password: parameters %q", parts[3])
	}
	if h.memory < 19*1024 || h.time < 2 || h.threads < 1 || h.memory > 1<<20 || h.time > 16 {
		return h, fmt.Errorf("password: parameters m=%d,t=%d below OWASP's minimum (m=19456,t=2) or absurd", h.memory, h.time)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 16 {
		return h, errors.New("password: salt must be at least 16 bytes of unpadded base64")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 {
		return h, errors.New("password: hash must be at least 16 bytes of unpadded base64")
	}
	return h, nil
}

// Check reports whether password matches the PHC string, in constant time.
func Check(hash, password string) bool {
	h, err := parseHash(hash)
	if err != nil {
		return false
	}
	k := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}
