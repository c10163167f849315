package ledger

import (
	"crypto/ed25519"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// validOrigin reports whether origin is usable as a signed-note key name and a
// checkpoint origin line: non-empty UTF-8 with no Unicode spaces and no '+'.
func validOrigin(origin string) error {
	switch {
	case origin == "":
		return fmt.Errorf("ledger: origin is empty")
	case !utf8.ValidString(origin):
		return fmt.Errorf("ledger: origin %q is not valid UTF-8", origin)
	case strings.IndexFunc(origin, unicode.IsSpace) >= 0:
		return fmt.Errorf("ledger: origin %q contains a space", origin)
	case strings.Contains(origin, "+"):
		return fmt.Errorf("ledger: origin %q contains '+'", origin)
	case strings.IndexFunc(origin, unicode.IsControl) >= 0:
		return fmt.Errorf("ledger: origin %q contains a control character", origin)
	}
	return nil
}

// VerifierKey returns the signed-note verifier key text ("origin+hash+key")
// for an Ed25519 public key, suitable for a configuration file. It can be
// turned back into a verifier with note.NewVerifier.
func VerifierKey(origin string, pub ed25519.PublicKey) (string, error) {
	if err := validOrigin(origin); err != nil {
		return "", err
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("ledger: encode verifier key for %q: %w", origin, err)
	}
	return vkey, nil
}

// NewVerifier returns a signed-note verifier named origin for an Ed25519
// public key.
func NewVerifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := VerifierKey(origin, pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("ledger: build verifier for %q: %w", origin, err)
	}
	return v, nil
}

// NewSigner returns a signed-note signer named origin for an Ed25519 private
// key. Its key hash is the one note.NewEd25519VerifierKey assigns to the
// matching public key, so notes it signs verify with [NewVerifier].
func NewSigner(origin string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ledger: new signer for %q: private key is %d bytes, want %d", origin, len(key), ed25519.PrivateKeySize)
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("ledger: new signer for %q: unexpected public key type", origin)
	}
	vkey, err := VerifierKey(origin, pub)
	if err != nil {
		return nil, err
	}
	// vkey is "name+hash+key" and name cannot contain '+'.
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("ledger: new signer for %q: malformed verifier key", origin)
	}
	hash, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("ledger: new signer for %q: parse key hash: %w", origin, err)
	}
	return &ed25519Signer{name: origin, hash: uint32(hash), key: key}, nil
}

// ed25519Signer is a note.Signer over an in-memory Ed25519 key.
type ed25519Signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *ed25519Signer) Name() string    { return s.name }
func (s *ed25519Signer) KeyHash() uint32 { return s.hash }
func (s *ed25519Signer) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(s.key, msg), nil
}
