package ledger_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/nexus-core/nexus/ledger"
	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "ledger.test.nexus/log"

// testKeys returns a deterministic signer/verifier pair for origin; seed picks
// the key.
func testKeys(t testing.TB, origin, seed string) (note.Signer, note.Verifier) {
	t.Helper()
	s := sha256.Sum256([]byte(seed))
	priv := ed25519.NewKeyFromSeed(s[:])
	signer, err := ledger.NewSigner(origin, priv)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := ledger.NewVerifier(origin, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}

func testOptions(t testing.TB) ledger.Options {
	s, v := testKeys(t, testOrigin, "test")
	return ledger.Options{Origin: testOrigin, Signer: s, Verifier: v}
}

func testVerifier(t testing.TB) note.Verifier {
	_, v := testKeys(t, testOrigin, "test")
	return v
}

// openTemp opens a new log in a temporary directory and closes it at the end
// of the test.
func openTemp(t testing.TB) (*ledger.Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l := openPath(t, path)
	return l, path
}

func openPath(t testing.TB, path string) *ledger.Log {
	t.Helper()
	l, err := ledger.Open(context.Background(), path, testOptions(t))
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
