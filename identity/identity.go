// Package identity owns Nexus identities: Ed25519 keys, the signed statements that
// bind a key to a scope and role, proofs of possession, and key files.
//
// An identity is a statement (issuer, subject key, scope, role, validity) signed by
// its issuer: the platform root key issues admins and meters, an IMVU owner issues the
// IMVU's members. Whether an identity is still in force (issued through the ledger,
// not revoked) is decided by the handshake engine from ledgered state; this package
// only checks signatures and validity windows.
//
// This package must never hold or transmit a private key it did not generate for
// its caller: a creator's key stays on the creator's side.
package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// Context separates the messages one key signs, so a signature made for one purpose
// can never be replayed as another (RFC 8032 Ed25519ctx).
type Context string

// The signing contexts used by Nexus.
const (
	ContextIdentity Context = "nexus/identity/v1"
	ContextAction   Context = "nexus/action/v1"
	ContextQuery    Context = "nexus/query/v1"
	ContextProof    Context = "nexus/proof/v1"
	// ContextCountersign is the platform's countersignature of a handshake.
	ContextCountersign Context = "nexus/countersign/v1"
	// ContextBundle signs an exit bundle's manifest.
	ContextBundle Context = "nexus/bundle/v1"
	// ContextTransfer signs the hand-over of an exiting IMVU's domains.
	ContextTransfer Context = "nexus/transfer/v1"
)

// Sign signs msg with key under ctx.
func Sign(key ed25519.PrivateKey, ctx Context, msg []byte) ([]byte, error) {
	sig, err := key.Sign(nil, msg, &ed25519.Options{Context: string(ctx)})
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ctx, err)
	}
	return sig, nil
}

// Verify reports whether sig is pub's signature of msg under ctx.
func Verify(pub PublicKey, ctx Context, msg, sig []byte) bool {
	return ed25519.VerifyWithOptions(pub[:], msg, sig, &ed25519.Options{Context: string(ctx)}) == nil
}

// PublicKey is an Ed25519 public key. It is comparable, so it can key a map, and
// its text form is "ed25519:" followed by unpadded base64url.
type PublicKey [ed25519.PublicKeySize]byte

const keyPrefix = "ed25519:"

// PublicOf returns the public half of key.
func PublicOf(key ed25519.PrivateKey) PublicKey {
	var p PublicKey
	copy(p[:], key.Public().(ed25519.PublicKey))
	return p
}

// String returns the key's text form.
func (p PublicKey) String() string {
	return keyPrefix + base64.RawURLEncoding.EncodeToString(p[:])
}

// IsZero reports whether p is unset.
func (p PublicKey) IsZero() bool { return p == PublicKey{} }

// MarshalText implements encoding.TextMarshaler.
func (p PublicKey) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *PublicKey) UnmarshalText(b []byte) error {
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*p = k
	return nil
}

// ParsePublicKey parses the text form of a public key.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok {
		return p, fmt.Errorf("public key %q: want prefix %q", abbrev(s), keyPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != len(p) {
		return p, fmt.Errorf("public key %q: want %d bytes of unpadded base64url", abbrev(s), len(p))
	}
	copy(p[:], b)
	// The decoder ignores CR/LF and unused trailing bits; accept only the one
	// canonical spelling, so a key has exactly one text form.
	if p.String() != s {
		return PublicKey{}, fmt.Errorf("public key %q: not in canonical form %q", abbrev(s), p.String())
	}
	return p, nil
}

func abbrev(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// Role is what an identity may do within its scope.
type Role string

// The roles. Platform is the daemon's own ledger key.
const (
	RolePlatform Role = "platform"
	RoleAdmin    Role = "admin"
	RoleOwner    Role = "owner"
	RoleMember   Role = "member"
	RoleMeter    Role = "meter"
)

func (r Role) valid() bool {
	switch r {
	case RolePlatform, RoleAdmin, RoleOwner, RoleMember, RoleMeter:
		return true
	}
	return false
}

// ScopePlatform is the scope of platform-wide identities and actions. Every other
// scope is one IMVU's id.
const ScopePlatform = "platform"

var scopeRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ValidScope reports an error unless s is "platform" or a well-formed IMVU id.
func ValidScope(s string) error {
	if !scopeRE.MatchString(s) {
		return fmt.Errorf("scope %q: want %q or an IMVU id (lowercase letter, then up to 62 of a-z 0-9 -)", abbrev(s), ScopePlatform)
	}
	return nil
}

// Statement is what an issuer asserts about a subject key.
type Statement struct {
	Issuer    PublicKey `json:"iss"`
	Subject   PublicKey `json:"sub"`
	Scope     string    `json:"scope"`
	Role      Role      `json:"role"`
	Name      string    `json:"name,omitempty"`
	NotBefore time.Time `json:"nbf"`
	NotAfter  time.Time `json:"exp"`
}

// Check reports the first malformed field of s.
func (s Statement) Check() error {
	switch {
	case s.Issuer.IsZero():
		return errors.New("statement: issuer key is empty")
	case s.Subject.IsZero():
		return errors.New("statement: subject key is empty")
	case !s.Role.valid():
		return fmt.Errorf("statement: unknown role %q", s.Role)
	case !s.NotAfter.After(s.NotBefore):
		return fmt.Errorf("statement: validity ends (%s) before it starts (%s)", s.NotAfter.Format(time.RFC3339), s.NotBefore.Format(time.RFC3339))
	case len(s.Name) > 254:
		return errors.New("statement: name longer than 254 bytes")
	}
	// encoding/json reads times it cannot write (a zone offset of +24:00).
	for _, t := range []time.Time{s.NotBefore, s.NotAfter} {
		if _, err := t.MarshalText(); err != nil {
			return fmt.Errorf("statement: validity: %w", err)
		}
	}
	return ValidScope(s.Scope)
}

// Identity is a statement and its issuer's signature over the exact body bytes.
type Identity struct {
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`

	st Statement
}

// Issue signs st with issuer, whose public key must be st.Issuer.
func Issue(issuer ed25519.PrivateKey, st Statement) (Identity, error) {
	if PublicOf(issuer) != st.Issuer {
		return Identity{}, errors.New("issue identity: signing key is not the statement's issuer")
	}
	if err := st.Check(); err != nil {
		return Identity{}, fmt.Errorf("issue identity: %w", err)
	}
	body, err := json.Marshal(st)
	if err != nil {
		return Identity{}, fmt.Errorf("issue identity: %w", err)
	}
	sig, err := Sign(issuer, ContextIdentity, body)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Body: body, Sig: sig, st: st}, nil
}

// UnmarshalJSON decodes an identity and checks its issuer signature, so an
// Identity value always carries a verified statement.
func (id *Identity) UnmarshalJSON(b []byte) error {
	var raw struct {
		Body []byte `json:"body"`
		Sig  []byte `json:"sig"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(raw.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("identity statement: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("identity statement: trailing data after JSON value")
	}
	if err := st.Check(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if !Verify(st.Issuer, ContextIdentity, raw.Body, raw.Sig) {
		return fmt.Errorf("identity of %s: issuer signature does not verify", st.Subject)
	}
	*id = Identity{Body: raw.Body, Sig: raw.Sig, st: st}
	return nil
}

// Statement returns the verified statement.
func (id Identity) Statement() Statement { return id.st }

// ValidAt reports an error unless t falls inside the identity's validity window.
func (id Identity) ValidAt(t time.Time) error {
	switch {
	case t.Before(id.st.NotBefore):
		return fmt.Errorf("identity of %s is not valid before %s", id.st.Subject, id.st.NotBefore.Format(time.RFC3339))
	case !t.Before(id.st.NotAfter):
		return fmt.Errorf("identity of %s expired at %s", id.st.Subject, id.st.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// Proof shows possession of a key: its signature over a challenge the verifier
// chose, bound to the verifier's audience string.
type Proof struct {
	Key       PublicKey `json:"key"`
	Audience  string    `json:"aud"`
	Challenge []byte    `json:"challenge"`
	Sig       []byte    `json:"sig"`
}

// proofMessage joins audience and challenge with a NUL, so an audience must not
// contain one: ("a\x00", "b") and ("a", "\x00b") would sign the same message.
func proofMessage(aud string, challenge []byte) []byte {
	return append([]byte(aud+"\x00"), challenge...)
}

// Prove answers challenge for audience with key.
func Prove(key ed25519.PrivateKey, audience string, challenge []byte) (Proof, error) {
	if strings.ContainsRune(audience, 0) {
		return Proof{}, errors.New("proof: audience contains a NUL byte")
	}
	sig, err := Sign(key, ContextProof, proofMessage(audience, challenge))
	if err != nil {
		return Proof{}, err
	}
	return Proof{Key: PublicOf(key), Audience: audience, Challenge: challenge, Sig: sig}, nil
}

// VerifyProof checks p against the challenge and audience the verifier issued.
func VerifyProof(p Proof, audience string, challenge []byte) error {
	if strings.ContainsRune(audience, 0) {
		return errors.New("proof: audience contains a NUL byte")
	}
	if p.Audience != audience || !bytes.Equal(p.Challenge, challenge) {
		return errors.New("proof: answers a different challenge or audience")
	}
	if !Verify(p.Key, ContextProof, proofMessage(audience, challenge), p.Sig) {
		return fmt.Errorf("proof: signature of %s does not verify", p.Key)
	}
	return nil
}
