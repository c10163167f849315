package action

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nexus-core/nexus/identity"
)

// Query asks to read state inside one scope. It is signed by the reader so every
// read is attributable and answered only within the reader's scope.
type Query struct {
	Kind     string             `json:"kind"`
	Scope    string             `json:"scope"`
	Reader   identity.PublicKey `json:"reader"`
	Params   json.RawMessage    `json:"params"`
	Nonce    string             `json:"nonce"`
	IssuedAt time.Time          `json:"issued_at"`
}

// SignedQuery is a query as it travels.
type SignedQuery struct {
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`
}

// NewQuery builds and signs a query.
func NewQuery(key ed25519.PrivateKey, kind, scope string, params any) (*SignedQuery, error) {
	p, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("query %s: encode params: %w", kind, err)
	}
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, err
	}
	q := Query{Kind: kind, Scope: scope, Reader: identity.PublicOf(key), Params: p,
		Nonce: hex.EncodeToString(n[:]), IssuedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := q.Check(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	sig, err := identity.Sign(key, identity.ContextQuery, body)
	if err != nil {
		return nil, err
	}
	return &SignedQuery{Body: body, Sig: sig}, nil
}

// Check reports the first malformed field.
func (q *Query) Check() error {
	switch {
	case !kindRE.MatchString(q.Kind):
		return fmt.Errorf("query kind %q: want dotted lowercase words like \"imvu.show\"", q.Kind)
	case q.Reader.IsZero():
		return errors.New("query: reader key is empty")
	case !nonceRE.MatchString(q.Nonce):
		return fmt.Errorf("query nonce %q: want 32 lowercase hex digits", q.Nonce)
	case len(q.Params) == 0 || !json.Valid(q.Params):
		return errors.New("query: params are not valid JSON")
	}
	if _, err := q.IssuedAt.MarshalText(); err != nil {
		return fmt.Errorf("query issued_at: %w", err)
	}
	return identity.ValidScope(q.Scope)
}

// Decode parses params strictly into v.
func (q *Query) Decode(v any) error { return decodeStrict(q.Params, v) }

// Open parses the body and checks the reader's signature.
func (s *SignedQuery) Open() (*Query, error) {
	if len(s.Body) == 0 || len(s.Body) > MaxBody {
		return nil, fmt.Errorf("query body: %d bytes, want 1..%d", len(s.Body), MaxBody)
	}
	var q Query
	if err := decodeStrict(s.Body, &q); err != nil {
		return nil, fmt.Errorf("query body: %w", err)
	}
	if err := q.Check(); err != nil {
		return nil, err
	}
	if !identity.Verify(q.Reader, identity.ContextQuery, s.Body, s.Sig) {
		return nil, fmt.Errorf("query: signature of %s does not verify", q.Reader)
	}
	return &q, nil
}

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
