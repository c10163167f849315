package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// emptyRoot returns the RFC 6962 root of the empty tree, SHA-256("").
func emptyRoot() [32]byte { return sha256.Sum256(nil) }

// LeafHash returns the leaf hash committed for entry index with the given
// data: SHA-256(0x00 || uint64be(index) || data), RFC 6962 leaf hashing over
// the index-prefixed data.
func LeafHash(index uint64, data []byte) [32]byte {
	buf := make([]byte, 0, 8+len(data))
	return leafHashBuf(&buf, index, data)
}

// leafHashBuf is LeafHash with a caller-owned scratch buffer.
func leafHashBuf(buf *[]byte, index uint64, data []byte) [32]byte {
	b := binary.BigEndian.AppendUint64((*buf)[:0], index)
	b = append(b, data...)
	*buf = b
	return to32(rfc6962.DefaultHasher.HashLeaf(b))
}

func hashChildren(l, r [32]byte) [32]byte {
	return to32(rfc6962.DefaultHasher.HashChildren(l[:], r[:]))
}

func to32(b []byte) [32]byte {
	var h [32]byte
	copy(h[:], b)
	return h
}

// tree is an in-memory RFC 6962 Merkle tree stored as per-level slices of
// perfect-subtree hashes: levels[0] are the leaf hashes, levels[k][i] is the
// root of the perfect subtree over leaves [i*2^k, (i+1)*2^k). Only complete
// subtrees are stored, so levels[k] has size>>k elements and every node a
// proof needs for a tree size up to size is present. It uses about 64 bytes
// per leaf.
//
// tree is not synchronized; Log guards it.
type tree struct {
	levels [][][32]byte
}

func (t *tree) size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]))
}

// append adds a leaf hash and the perfect-subtree roots it completes.
func (t *tree) append(leaf [32]byte) {
	if len(t.levels) == 0 {
		t.levels = append(t.levels, make([][32]byte, 0, 1024))
	}
	t.levels[0] = append(t.levels[0], leaf)
	for lvl := 0; len(t.levels[lvl])%2 == 0; lvl++ {
		n := len(t.levels[lvl])
		parent := hashChildren(t.levels[lvl][n-2], t.levels[lvl][n-1])
		if lvl+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[lvl+1] = append(t.levels[lvl+1], parent)
	}
}

// truncate shrinks the tree back to size leaves, undoing appends.
func (t *tree) truncate(size uint64) {
	for lvl := range t.levels {
		n := size >> uint(lvl)
		if uint64(len(t.levels[lvl])) > n {
			t.levels[lvl] = t.levels[lvl][:n]
		}
	}
}

// node returns the hash of a perfect subtree. The node must lie within the
// tree.
func (t *tree) node(id compact.NodeID) ([32]byte, error) {
	if id.Level >= uint(len(t.levels)) || id.Index >= uint64(len(t.levels[id.Level])) {
		return [32]byte{}, fmt.Errorf("ledger: tree node (level %d, index %d) beyond tree of size %d", id.Level, id.Index, t.size())
	}
	return t.levels[id.Level][id.Index], nil
}

// rootAt returns the root of the tree over the first size leaves.
// size must not exceed t.size().
func (t *tree) rootAt(size uint64) ([32]byte, error) {
	if size > t.size() {
		return [32]byte{}, fmt.Errorf("ledger: root at size %d beyond tree of size %d", size, t.size())
	}
	if size == 0 {
		return emptyRoot(), nil
	}
	// The perfect subtrees covering [0, size), left to right, are one per set
	// bit of size, largest first. Fold them right to left.
	var subtrees [64][32]byte
	n := 0
	begin := uint64(0)
	for lvl := bits.Len64(size) - 1; lvl >= 0; lvl-- {
		if size&(1<<uint(lvl)) == 0 {
			continue
		}
		subtrees[n] = t.levels[lvl][begin>>uint(lvl)]
		n++
		begin += 1 << uint(lvl)
	}
	root := subtrees[n-1]
	for i := n - 2; i >= 0; i-- {
		root = hashChildren(subtrees[i], root)
	}
	return root, nil
}

// inclusion returns the inclusion proof of leaf index in the tree of the given
// size.
func (t *tree) inclusion(index, size uint64) ([][32]byte, error) {
	if size > t.size() {
		return nil, fmt.Errorf("ledger: inclusion proof at size %d beyond tree of size %d", size, t.size())
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("ledger: inclusion proof for %d at size %d: %w", index, size, err)
	}
	return t.rehash(nodes)
}

// consistency returns the consistency proof between two tree sizes.
func (t *tree) consistency(size1, size2 uint64) ([][32]byte, error) {
	if size2 > t.size() {
		return nil, fmt.Errorf("ledger: consistency proof to size %d beyond tree of size %d", size2, t.size())
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("ledger: consistency proof %d to %d: %w", size1, size2, err)
	}
	return t.rehash(nodes)
}

// rehash fetches the nodes a proof needs and folds the ephemeral one.
func (t *tree) rehash(nodes proof.Nodes) ([][32]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := t.node(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h[:] // h is a copy; Rehash may reuse the slice
	}
	p, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("ledger: rehash proof: %w", err)
	}
	out := make([][32]byte, len(p))
	for i, h := range p {
		out[i] = to32(h)
	}
	return out, nil
}

func toSlices(hs [][32]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}
