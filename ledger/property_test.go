package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-core/nexus/ledger"
	"pgregory.net/rapid"
)

// TestConsistencyProperty appends random batches to a real log and checks
// that consistency proofs between any two of its checkpoints verify, and that
// corrupting the proof or either root makes them fail.
func TestConsistencyProperty(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	v := testVerifier(t)
	iter := 0
	rapid.Check(t, func(rt *rapid.T) {
		iter++
		dir := filepath.Join(base, fmt.Sprint(iter))
		if err := os.Mkdir(dir, 0o700); err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		l, err := ledger.Open(ctx, filepath.Join(dir, "l.db"), testOptions(t))
		if err != nil {
			rt.Fatal(err)
		}
		defer l.Close()

		batches := rapid.SliceOfN(rapid.IntRange(1, 40), 1, 10).Draw(rt, "batches")
		cps := []ledger.Checkpoint{l.Checkpoint()}
		for b, n := range batches {
			data := make([][]byte, n)
			for i := range data {
				data[i] = fmt.Appendf(nil, "b%d-%d", b, i)
			}
			if _, err := l.AppendBatch(ctx, data); err != nil {
				rt.Fatal(err)
			}
			cps = append(cps, l.Checkpoint())
		}
		i := rapid.IntRange(0, len(cps)-1).Draw(rt, "older")
		j := rapid.IntRange(i, len(cps)-1).Draw(rt, "newer")
		older, newer := cps[i], cps[j]
		for _, c := range []ledger.Checkpoint{older, newer} {
			if _, err := ledger.ParseCheckpoint(c.Note, v); err != nil {
				rt.Fatalf("checkpoint %d does not verify: %v", c.Size, err)
			}
		}
		proof, err := l.Consistency(ctx, older.Size, newer.Size)
		if err != nil {
			rt.Fatal(err)
		}
		if err := ledger.VerifyConsistency(older, newer, proof); err != nil {
			rt.Fatalf("consistency %d -> %d: %v", older.Size, newer.Size, err)
		}
		if len(proof) > 0 {
			k := rapid.IntRange(0, len(proof)-1).Draw(rt, "corrupt")
			bad := append([][32]byte(nil), proof...)
			bad[k][rapid.IntRange(0, 31).Draw(rt, "byte")] ^= 1
			if ledger.VerifyConsistency(older, newer, bad) == nil {
				rt.Fatalf("corrupted proof %d -> %d verified", older.Size, newer.Size)
			}
			if ledger.VerifyConsistency(older, newer, proof[:len(proof)-1]) == nil {
				rt.Fatalf("short proof %d -> %d verified", older.Size, newer.Size)
			}
		}
		if older.Size > 0 && older.Size < newer.Size {
			wrong := older
			wrong.Root[0] ^= 1
			if ledger.VerifyConsistency(wrong, newer, proof) == nil {
				rt.Fatal("proof verified against a wrong older root")
			}
			wrong = newer
			wrong.Root[31] ^= 1
			if ledger.VerifyConsistency(older, wrong, proof) == nil {
				rt.Fatal("proof verified against a wrong newer root")
			}
		}
		if older.Size < newer.Size && ledger.VerifyConsistency(newer, older, proof) == nil {
			rt.Fatal("reversed checkpoints verified")
		}
	})
}
