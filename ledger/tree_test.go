package ledger

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// referenceRoot is the RFC 6962 Merkle tree hash, computed recursively from
// the definition (section 2.1): split at the largest power of two below n.
func referenceRoot(leaves [][32]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := referenceRoot(leaves[:k]), referenceRoot(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func TestTreeAgainstReference(t *testing.T) {
	var tr tree
	var leaves [][32]byte
	for n := range 130 {
		if n > 0 {
			leaf := LeafHash(uint64(n-1), fmt.Appendf(nil, "leaf %d", n-1))
			leaves = append(leaves, leaf)
			tr.append(leaf)
		}
		root, err := tr.rootAt(uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceRoot(leaves); root != want {
			t.Fatalf("root at %d = %x, want %x", n, root, want)
		}
		for i := range n {
			p, err := tr.inclusion(uint64(i), uint64(n))
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(n), leaves[i][:], toSlices(p), root[:]); err != nil {
				t.Fatalf("inclusion %d in %d: %v", i, n, err)
			}
		}
		for m := range n + 1 {
			old, _ := tr.rootAt(uint64(m))
			p, err := tr.consistency(uint64(m), uint64(n))
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), toSlices(p), old[:], root[:]); err != nil {
				t.Fatalf("consistency %d -> %d: %v", m, n, err)
			}
		}
	}
	// Truncation undoes appends exactly.
	want, _ := tr.rootAt(77)
	tr.truncate(77)
	if tr.size() != 77 {
		t.Fatalf("size after truncate = %d", tr.size())
	}
	for i := 77; i < 129; i++ {
		tr.append(leaves[i])
	}
	got, _ := tr.rootAt(77)
	full, _ := tr.rootAt(129)
	if got != want || full != referenceRoot(leaves) {
		t.Fatal("tree differs after truncate and re-append")
	}
	if _, err := tr.rootAt(130); err == nil {
		t.Fatal("rootAt beyond size succeeded")
	}
}

func TestLeafHashCommitsToIndex(t *testing.T) {
	d := []byte("same data")
	if LeafHash(1, d) == LeafHash(2, d) {
		t.Fatal("leaf hash does not depend on the index")
	}
	// SHA-256(0x00 || be64(5) || data)
	want := sha256.Sum256(append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 5}, d...))
	if LeafHash(5, d) != want {
		t.Fatal("leaf hash is not RFC 6962 over index||data")
	}
}
