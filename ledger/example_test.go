package ledger_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/ledger"
)

func ExampleLog_Append() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ledger-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A real deployment loads its key from a secret store.
	seed := sha256.Sum256([]byte("example seed, not secret"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	const origin = "example.com/audit-log"
	signer, err := ledger.NewSigner(origin, priv)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := ledger.NewVerifier(origin, priv.Public().(ed25519.PublicKey))
	if err != nil {
		log.Fatal(err)
	}

	l, err := ledger.Open(ctx, filepath.Join(dir, "audit.db"), ledger.Options{
		Origin: origin, Signer: signer, Verifier: verifier,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	e, err := l.Append(ctx, []byte("user 42 rotated their API key"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("entry %d is covered by the checkpoint of size %d\n", e.Index, e.Size)

	// Hand the caller a receipt; anyone with the verifier key can check it
	// offline against the entry's bytes.
	r, err := l.Receipt(ctx, e.Index)
	if err != nil {
		log.Fatal(err)
	}
	text, err := r.MarshalText()
	if err != nil {
		log.Fatal(err)
	}
	parsed, err := ledger.ParseReceipt(text, verifier)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("genuine entry:", ledger.VerifyReceipt(parsed, []byte("user 42 rotated their API key"), verifier) == nil)
	fmt.Println("altered entry:", ledger.VerifyReceipt(parsed, []byte("user 43 rotated their API key"), verifier) == nil)
	// Output:
	// entry 0 is covered by the checkpoint of size 1
	// genuine entry: true
	// altered entry: false
}
