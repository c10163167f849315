package ledger

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("ledger: log is closed")
	// ErrFailed is returned by appends after a commit failed in a way that
	// leaves the on-disk state unknown (COMMIT itself failed, e.g. fsync).
	// Reopen the log to recover; Open re-checks the file.
	ErrFailed = errors.New("ledger: log failed; reopen it")
	// ErrOutOfRange is returned for an index or tree size the newest
	// checkpoint does not cover.
	ErrOutOfRange = errors.New("ledger: out of range")
	// ErrNotFound is returned when a stored object (such as a checkpoint at a
	// given size) does not exist.
	ErrNotFound = errors.New("ledger: not found")
	// ErrEmptyBatch is returned by AppendBatch with no entries.
	ErrEmptyBatch = errors.New("ledger: empty batch")
	// ErrEntryTooLarge is returned for an entry over Options.MaxEntrySize.
	ErrEntryTooLarge = errors.New("ledger: entry too large")
	// ErrInvalidProof is wrapped by receipt and consistency verification
	// failures.
	ErrInvalidProof = errors.New("ledger: invalid proof")
	// ErrBadSignature is wrapped when a checkpoint's signature does not
	// verify.
	ErrBadSignature = errors.New("ledger: bad checkpoint signature")
	// ErrTampered matches every *TamperError with errors.Is.
	ErrTampered = errors.New("ledger: tampering detected")
)

// TamperKind classifies a TamperError.
type TamperKind int

const (
	// TamperLeafMismatch: a row's data (with its index) does not hash to its
	// stored leaf hash, or to the leaf the tree committed to. Caused by an
	// edited, moved or swapped row.
	TamperLeafMismatch TamperKind = iota + 1
	// TamperMissing: an index below the newest checkpoint has no row.
	TamperMissing
	// TamperDuplicate: a row with an index already seen or out of order.
	TamperDuplicate
	// TamperUnsignedTail: a row at or beyond the newest checkpoint's size,
	// which no signature covers.
	TamperUnsignedTail
	// TamperTruncated: fewer rows than the newest checkpoint covers.
	TamperTruncated
	// TamperRootMismatch: the root recomputed over the rows disagrees with a
	// signed checkpoint (data and leaf hash rewritten consistently).
	TamperRootMismatch
	// TamperBadSignature: a checkpoint's signature does not verify.
	TamperBadSignature
	// TamperCheckpoint: a checkpoint row is malformed or its columns disagree
	// with its signed note, or there is no checkpoint at all.
	TamperCheckpoint
)

func (k TamperKind) String() string {
	switch k {
	case TamperLeafMismatch:
		return "leaf mismatch"
	case TamperMissing:
		return "missing entry"
	case TamperDuplicate:
		return "duplicate entry"
	case TamperUnsignedTail:
		return "unsigned tail"
	case TamperTruncated:
		return "truncated"
	case TamperRootMismatch:
		return "root mismatch"
	case TamperBadSignature:
		return "bad checkpoint signature"
	case TamperCheckpoint:
		return "bad checkpoint"
	}
	return fmt.Sprintf("TamperKind(%d)", int(k))
}

// TamperError reports stored data that does not match what the log signed.
// Index is the first entry index found to be bad (for checkpoint problems,
// the first index the checkpoint covers beyond its predecessor).
type TamperError struct {
	Index uint64
	Kind  TamperKind
	// Checkpoint is the tree size of the checkpoint involved, when there is
	// one (root mismatch, bad signature, bad checkpoint, truncation).
	Checkpoint uint64
	Reason     string
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("ledger: tampering detected at index %d (%s): %s", e.Index, e.Kind, e.Reason)
}

// Is makes errors.Is(err, ErrTampered) true for every *TamperError.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }
