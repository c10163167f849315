package ledger_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/nexus-core/nexus/ledger"
)

// fuzzSeeds returns a real receipt and checkpoint to seed the corpora.
func fuzzSeeds(f *testing.F) (receipt, checkpoint []byte) {
	ctx := context.Background()
	l, _ := openTemp(f)
	for i := range 5 {
		if _, err := l.Append(ctx, []byte{byte(i)}); err != nil {
			f.Fatal(err)
		}
	}
	r, err := l.Receipt(ctx, 2)
	if err != nil {
		f.Fatal(err)
	}
	r.Extra = []byte("extra")
	text, err := r.MarshalText()
	if err != nil {
		f.Fatal(err)
	}
	return text, r.Checkpoint.Note
}

func FuzzParseReceipt(f *testing.F) {
	receipt, cp := fuzzSeeds(f)
	f.Add(receipt)
	f.Add(append([]byte("c2sp.org/tlog-proof@v1\nindex 0\n\n"), cp...))
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 0\n"))
	v := testVerifier(f)
	f.Fuzz(func(t *testing.T, text []byte) {
		r, err := ledger.ParseReceipt(text, v)
		var un ledger.Receipt
		unErr := un.UnmarshalText(text)
		if err != nil {
			return
		}
		if unErr != nil {
			t.Fatalf("ParseReceipt accepted what UnmarshalText rejects: %v", unErr)
		}
		if r.Index >= r.Checkpoint.Size {
			t.Fatalf("accepted index %d at size %d", r.Index, r.Checkpoint.Size)
		}
		// Whatever parses re-encodes to something that parses identically.
		again, err := r.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText of a parsed receipt: %v", err)
		}
		r2, err := ledger.ParseReceipt(again, v)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if r2.Index != r.Index || len(r2.Proof) != len(r.Proof) || r2.Checkpoint.Root != r.Checkpoint.Root || !bytes.Equal(r2.Extra, r.Extra) {
			t.Fatal("round trip changed the receipt")
		}
		// Verification must not panic, whatever the proof.
		_ = ledger.VerifyReceipt(r, []byte{2}, v)
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	_, cp := fuzzSeeds(f)
	f.Add(cp)
	f.Add([]byte(testOrigin + "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— " + testOrigin + " AAAA\n"))
	v := testVerifier(f)
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ledger.ParseCheckpoint(text, v)
		var un ledger.Checkpoint
		unErr := un.UnmarshalText(text)
		if err != nil {
			return
		}
		if unErr != nil {
			t.Fatalf("ParseCheckpoint accepted what UnmarshalText rejects: %v", unErr)
		}
		if c.Origin != testOrigin || un.Size != c.Size || un.Root != c.Root {
			t.Fatalf("parsers disagree: %+v vs %+v", c, un)
		}
	})
}
