// Package action owns the wire form of every request to Nexus: Actions, which ask for
// a change of state, and Queries, which ask to read inside one scope.
//
// Both are signed over their exact body bytes under a domain-separated context
// (identity.ContextAction, identity.ContextQuery), so a signature can never be
// replayed as another kind of message and no re-encoding can change what was signed.
// This package checks shape and signatures only; whether the signers may do what they
// ask is the handshake engine's business, and this package must never decide it.
package action

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/nexus-core/nexus/identity"
)

// MaxBody bounds the body of one action or query.
const MaxBody = 1 << 20

// Action is one requested change of state.
type Action struct {
	Kind      string               `json:"kind"`
	Scope     string               `json:"scope"`
	Actor     identity.PublicKey   `json:"actor"`
	Cosigners []identity.PublicKey `json:"cosigners,omitempty"`
	Params    json.RawMessage      `json:"params"`
	Nonce     string               `json:"nonce"`
	IssuedAt  time.Time            `json:"issued_at"`
}

var (
	kindRE  = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z][a-z0-9-]*)+$`)
	nonceRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// New builds an action with a fresh random nonce, issued now.
func New(kind, scope string, actor identity.PublicKey, params any) (*Action, error) {
	p, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("action %s: encode params: %w", kind, err)
	}
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("action %s: nonce: %w", kind, err)
	}
	a := &Action{Kind: kind, Scope: scope, Actor: actor, Params: p,
		Nonce: hex.EncodeToString(n[:]), IssuedAt: time.Now().UTC().Truncate(time.Millisecond)}
	return a, a.Check()
}

// Check reports the first malformed field.
func (a *Action) Check() error {
	switch {
	case !kindRE.MatchString(a.Kind):
		return fmt.Errorf("action kind %q: want dotted lowercase words like \"dns.set\"", a.Kind)
	case a.Actor.IsZero():
		return errors.New("action: actor key is empty")
	case !nonceRE.MatchString(a.Nonce):
		return fmt.Errorf("action nonce %q: want 32 lowercase hex digits", a.Nonce)
	case a.IssuedAt.IsZero():
		return errors.New("action: issued_at is missing")
	case len(a.Params) == 0 || !json.Valid(a.Params):
		return errors.New("action: params are not valid JSON")
	}
	// encoding/json reads times it cannot write (a zone offset of +24:00), and an
	// opened action must be re-encodable.
	if _, err := a.IssuedAt.MarshalText(); err != nil {
		return fmt.Errorf("action issued_at: %w", err)
	}
	seen := map[identity.PublicKey]bool{a.Actor: true}
	for _, c := range a.Cosigners {
		if c.IsZero() {
			return errors.New("action: cosigner key is empty")
		}
		if seen[c] {
			return fmt.Errorf("action: signer %s listed twice", c)
		}
		seen[c] = true
	}
	return identity.ValidScope(a.Scope)
}

// Signers lists the actor, then the cosigners.
func (a *Action) Signers() []identity.PublicKey {
	return append([]identity.PublicKey{a.Actor}, a.Cosigners...)
}

// Decode parses params strictly into v: unknown fields are an error.
func (a *Action) Decode(v any) error {
	return decodeStrict(a.Params, v)
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// dec.More is not enough here: it reports false for a stray ']' or '}'.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// Sig is one signer's signature over a body.
type Sig struct {
	Key identity.PublicKey `json:"key"`
	Sig []byte             `json:"sig"`
}

// Signed is an action as it travels: the exact body bytes and their signatures.
type Signed struct {
	Body []byte `json:"body"`
	Sigs []Sig  `json:"sigs"`
}

// Seal encodes a and signs it with key, which should be the actor's.
func Seal(a *Action, key ed25519.PrivateKey) (*Signed, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode action %s: %w", a.Kind, err)
	}
	s := &Signed{Body: body}
	return s, s.Sign(key)
}

// Sign adds key's signature (a cosignature when key is not the actor's).
func (s *Signed) Sign(key ed25519.PrivateKey) error {
	sig, err := identity.Sign(key, identity.ContextAction, s.Body)
	if err != nil {
		return err
	}
	pub := identity.PublicOf(key)
	for i := range s.Sigs {
		if s.Sigs[i].Key == pub {
			s.Sigs[i].Sig = sig
			return nil
		}
	}
	s.Sigs = append(s.Sigs, Sig{Key: pub, Sig: sig})
	return nil
}

// Open parses the body. It does not check signatures: see Verify.
func (s *Signed) Open() (*Action, error) {
	if len(s.Body) == 0 || len(s.Body) > MaxBody {
		return nil, fmt.Errorf("action body: %d bytes, want 1..%d", len(s.Body), MaxBody)
	}
	var a Action
	if err := decodeStrict(s.Body, &a); err != nil {
		return nil, fmt.Errorf("action body: %w", err)
	}
	if err := a.Check(); err != nil {
		return nil, err
	}
	return &a, nil
}

// Verify reports which keys validly signed the body. Signatures by keys that are
// not signers of the action, and signatures that do not verify, are returned as
// errors in bad; the caller decides what a missing signer means. A body that does
// not open (so has no signers) is reported in bad, and then nothing is good.
func (s *Signed) Verify() (good map[identity.PublicKey]bool, bad []error) {
	good = make(map[identity.PublicKey]bool, len(s.Sigs))
	a, err := s.Open()
	if err != nil {
		return good, []error{err}
	}
	signer := make(map[identity.PublicKey]bool, 1+len(a.Cosigners))
	for _, k := range a.Signers() {
		signer[k] = true
	}
	for _, sg := range s.Sigs {
		switch {
		case !signer[sg.Key]:
			bad = append(bad, fmt.Errorf("signature of %s, which is not a signer of the action", sg.Key))
		case identity.Verify(sg.Key, identity.ContextAction, s.Body, sg.Sig):
			good[sg.Key] = true
		default:
			bad = append(bad, fmt.Errorf("signature of %s does not verify", sg.Key))
		}
	}
	return good, bad
}

// ID is the action's identity for logs and receipts: hex SHA-256 of the body.
func (s *Signed) ID() string { return hashHex(s.Body) }
