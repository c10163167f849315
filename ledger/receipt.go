package ledger

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

const (
	// receiptHeader is the first line of a c2sp.org/tlog-proof.
	receiptHeader = "c2sp.org/tlog-proof@v1"
	// maxProofHashes is the longest inclusion proof in a tree of 2^64 leaves.
	maxProofHashes = 64
	// maxExtra bounds the opaque extra data of a receipt.
	maxExtra = 4 << 10
	// maxReceiptSize bounds the text the receipt parsers accept.
	maxReceiptSize = maxNoteSize + 4096 + 2*maxExtra
)

// Receipt is an inclusion proof for one entry against a signed checkpoint.
// Its text form is c2sp.org/tlog-proof@v1.
type Receipt struct {
	Index      uint64
	LeafHash   [32]byte // zero when parsed from text: the format does not carry it
	Proof      [][32]byte
	Checkpoint Checkpoint
	// Extra is the proof's optional opaque extra data. It is not
	// authenticated by anything.
	Extra []byte
}

// MarshalText encodes the receipt as a c2sp.org/tlog-proof@v1 proof:
//
//	c2sp.org/tlog-proof@v1
//	[extra <base64>]
//	index <decimal>
//	<base64 hash>        (zero or more, leaf's sibling first)
//	<empty line>
//	<signed checkpoint note, verbatim>
func (r Receipt) MarshalText() ([]byte, error) {
	if len(r.Checkpoint.Note) == 0 {
		return nil, errors.New("ledger: marshal receipt: checkpoint has no signed note")
	}
	if len(r.Proof) > maxProofHashes {
		return nil, fmt.Errorf("ledger: marshal receipt: %d proof hashes, limit %d", len(r.Proof), maxProofHashes)
	}
	if len(r.Extra) > maxExtra {
		return nil, fmt.Errorf("ledger: marshal receipt: %d bytes of extra data, limit %d", len(r.Extra), maxExtra)
	}
	var b bytes.Buffer
	b.Grow(64 + 45*len(r.Proof) + len(r.Checkpoint.Note) + 2*len(r.Extra))
	b.WriteString(receiptHeader + "\n")
	if len(r.Extra) > 0 {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(r.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatUint(r.Index, 10) + "\n")
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(r.Checkpoint.Note)
	return b.Bytes(), nil
}

// UnmarshalText parses a c2sp.org/tlog-proof@v1 proof WITHOUT verifying the
// checkpoint's signature or the inclusion proof. Use [ParseReceipt] and
// [VerifyReceipt] for anything that came from outside the process.
func (r *Receipt) UnmarshalText(text []byte) error {
	parsed, cpNote, err := parseReceiptText(text)
	if err != nil {
		return err
	}
	if err := parsed.Checkpoint.UnmarshalText(cpNote); err != nil {
		return fmt.Errorf("ledger: parse receipt: %w", err)
	}
	if parsed.Index >= parsed.Checkpoint.Size {
		return fmt.Errorf("ledger: parse receipt: index %d is not below checkpoint size %d", parsed.Index, parsed.Checkpoint.Size)
	}
	*r = parsed
	return nil
}

// ParseReceipt parses a c2sp.org/tlog-proof@v1 proof and verifies its
// checkpoint's signature by v. It does not verify the inclusion proof, which
// needs the entry's data: call [VerifyReceipt] for that.
func ParseReceipt(text []byte, v note.Verifier) (Receipt, error) {
	r, cpNote, err := parseReceiptText(text)
	if err != nil {
		return Receipt{}, err
	}
	cp, err := ParseCheckpoint(cpNote, v)
	if err != nil {
		return Receipt{}, fmt.Errorf("ledger: parse receipt: %w", err)
	}
	if r.Index >= cp.Size {
		return Receipt{}, fmt.Errorf("ledger: parse receipt: index %d is not below checkpoint size %d", r.Index, cp.Size)
	}
	r.Checkpoint = cp
	return r, nil
}

// parseReceiptText splits a proof into its fields and the checkpoint note.
func parseReceiptText(text []byte) (Receipt, []byte, error) {
	var r Receipt
	if len(text) > maxReceiptSize {
		return r, nil, fmt.Errorf("ledger: parse receipt: %d bytes, limit %d", len(text), maxReceiptSize)
	}
	rest := text
	next := func() (string, bool) {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return "", false
		}
		line := string(rest[:i])
		rest = rest[i+1:]
		return line, true
	}
	line, ok := next()
	if !ok || line != receiptHeader {
		return r, nil, fmt.Errorf("ledger: parse receipt: first line is not %q", receiptHeader)
	}
	if line, ok = next(); !ok {
		return r, nil, errors.New("ledger: parse receipt: truncated after header")
	}
	if extra, found := strings.CutPrefix(line, "extra "); found {
		if len(extra) > base64.StdEncoding.EncodedLen(maxExtra) {
			return r, nil, errors.New("ledger: parse receipt: extra data too long")
		}
		b, err := base64.StdEncoding.Strict().DecodeString(extra)
		if err != nil || len(b) == 0 {
			return r, nil, errors.New("ledger: parse receipt: extra line is not non-empty base64")
		}
		r.Extra = b
		if line, ok = next(); !ok {
			return r, nil, errors.New("ledger: parse receipt: truncated after extra line")
		}
	}
	idx, found := strings.CutPrefix(line, "index ")
	if !found {
		return r, nil, errors.New("ledger: parse receipt: missing index line")
	}
	var err error
	if r.Index, err = parseDecimal(idx); err != nil {
		return r, nil, fmt.Errorf("ledger: parse receipt index: %w", err)
	}
	for {
		if line, ok = next(); !ok {
			return r, nil, errors.New("ledger: parse receipt: missing blank line before checkpoint")
		}
		if line == "" {
			break
		}
		if len(r.Proof) == maxProofHashes {
			return r, nil, fmt.Errorf("ledger: parse receipt: more than %d proof hashes", maxProofHashes)
		}
		h, err := parseHash(line)
		if err != nil {
			return r, nil, fmt.Errorf("ledger: parse receipt proof hash %d: %w", len(r.Proof), err)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return r, nil, errors.New("ledger: parse receipt: missing checkpoint")
	}
	return r, rest, nil
}

// VerifyReceipt checks that data is entry r.Index of the log: it verifies the
// checkpoint's signature by v, checks that the receipt's parsed checkpoint
// fields match its signed note, recomputes the leaf hash from the index and
// data, and verifies the inclusion proof against the signed root.
func VerifyReceipt(r Receipt, data []byte, v note.Verifier) error {
	cp, err := ParseCheckpoint(r.Checkpoint.Note, v)
	if err != nil {
		return fmt.Errorf("ledger: verify receipt for %d: %w", r.Index, err)
	}
	if cp.Origin != r.Checkpoint.Origin || cp.Size != r.Checkpoint.Size || cp.Root != r.Checkpoint.Root {
		return fmt.Errorf("ledger: verify receipt for %d: %w: checkpoint fields do not match its signed note", r.Index, ErrInvalidProof)
	}
	leaf := LeafHash(r.Index, data)
	if r.LeafHash != ([32]byte{}) && r.LeafHash != leaf {
		return fmt.Errorf("ledger: verify receipt for %d: %w: data does not hash to the receipt's leaf hash", r.Index, ErrInvalidProof)
	}
	if r.Index >= cp.Size {
		return fmt.Errorf("ledger: verify receipt for %d: %w: index not below checkpoint size %d", r.Index, ErrInvalidProof, cp.Size)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, r.Index, cp.Size, leaf[:], toSlices(r.Proof), cp.Root[:]); err != nil {
		return fmt.Errorf("ledger: verify receipt for %d at size %d: %w: %w", r.Index, cp.Size, ErrInvalidProof, err)
	}
	return nil
}

// VerifyConsistency checks that newer is an append-only extension of older,
// using a consistency proof from [Log.Consistency]. It checks the proof
// against the checkpoints' roots; it does not check their signatures, so
// obtain both with [ParseCheckpoint] first.
func VerifyConsistency(older, newer Checkpoint, proofHashes [][32]byte) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("ledger: verify consistency: %w: origins %q and %q differ", ErrInvalidProof, older.Origin, newer.Origin)
	}
	if older.Size > newer.Size {
		return fmt.Errorf("ledger: verify consistency: %w: older size %d exceeds newer size %d", ErrInvalidProof, older.Size, newer.Size)
	}
	// The library accepts any root for a size-0 tree; a checkpoint for the
	// empty tree must carry the empty root.
	if (older.Size == 0 && older.Root != emptyRoot()) || (newer.Size == 0 && newer.Root != emptyRoot()) {
		return fmt.Errorf("ledger: verify consistency: %w: size-0 checkpoint with a non-empty root", ErrInvalidProof)
	}
	if len(proofHashes) > maxProofHashes {
		return fmt.Errorf("ledger: verify consistency: %w: %d proof hashes", ErrInvalidProof, len(proofHashes))
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, toSlices(proofHashes), older.Root[:], newer.Root[:]); err != nil {
		return fmt.Errorf("ledger: verify consistency %d to %d: %w: %w", older.Size, newer.Size, ErrInvalidProof, err)
	}
	return nil
}
