package ledger

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

const (
	// verifyChunk is how many checkpoints are signature-checked in parallel
	// at a time.
	verifyChunk = 4096
	// progressEvery is how many rows pass between progress callbacks and
	// context checks.
	progressEvery = 1 << 14
)

// Report summarizes an offline verification.
type Report struct {
	// Entries is the number of rows checked, in index order.
	Entries uint64
	// Checkpoints is the number of checkpoints whose signature was verified
	// and whose root was recomputed from the rows.
	Checkpoints uint64
	// Root is the root of the tree over the Entries rows; when verification
	// succeeds it is the newest checkpoint's root.
	Root [32]byte
}

// Verify checks a ledger database file offline, without a running Log: it
// opens the file read-only, verifies every checkpoint's signature by v, walks
// every row in index order recomputing its leaf hash from (index, data), and
// recomputes the tree root at every checkpoint size with a compact range, in
// one O(n) pass. It returns a *TamperError naming the first bad index (see
// the package documentation for what is detected and how it is named), or
// another error if the file cannot be read. The returned Report covers what
// was checked before any failure.
//
// Cost: one SHA-256 per entry plus about two per internal node, one SQLite
// row read per entry, and one signature verification per checkpoint; the
// signature checks run on all CPUs, so v must be safe for concurrent use.
// progress, if not nil, is called periodically with the rows done and the
// total row count.
func Verify(ctx context.Context, path string, v note.Verifier, progress func(done, total uint64)) (Report, error) {
	return verifyFile(ctx, path, v, nil, progress)
}

// VerifyAgainst is Verify plus a check against a checkpoint remembered
// outside the file (by a client, monitor or witness): the file must still
// hold trusted.Size entries whose root is trusted.Root. This catches a
// consistent rollback (newest rows and the checkpoints covering them deleted
// together), which Verify alone cannot see. trusted.Note must verify with v.
func VerifyAgainst(ctx context.Context, path string, v note.Verifier, trusted Checkpoint, progress func(done, total uint64)) (Report, error) {
	if v == nil {
		return Report{}, errors.New("ledger: verify: nil verifier")
	}
	cp, err := ParseCheckpoint(trusted.Note, v)
	if err != nil {
		return Report{}, fmt.Errorf("ledger: verify: trusted checkpoint: %w", err)
	}
	return verifyFile(ctx, path, v, &cp, progress)
}

// cpHead is a verified checkpoint's tree head.
type cpHead struct {
	size uint64
	root [32]byte
}

func verifyFile(ctx context.Context, path string, v note.Verifier, trusted *Checkpoint, progress func(done, total uint64)) (Report, error) {
	if v == nil {
		return Report{}, errors.New("ledger: verify: nil verifier")
	}
	if _, err := os.Stat(path); err != nil {
		return Report{}, fmt.Errorf("ledger: verify: %w", err)
	}
	name, err := dsn(path, dsnReadOnly)
	if err != nil {
		return Report{}, err
	}
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return Report{}, fmt.Errorf("ledger: verify: open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// One read transaction: a consistent snapshot even if a Log is appending.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Report{}, fmt.Errorf("ledger: verify: begin read of %s: %w", path, err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to undo

	origin, err := readOrigin(ctx, tx)
	if err != nil {
		return Report{}, fmt.Errorf("ledger: verify %s: %w", path, err)
	}
	if origin != v.Name() {
		return Report{}, fmt.Errorf("ledger: verify %s: the database is log %q but the verifier is for %q", path, origin, v.Name())
	}
	heads, cpErr, err := loadCheckpoints(ctx, tx, v)
	if err != nil {
		return Report{}, fmt.Errorf("ledger: verify %s: %w", path, err)
	}
	var total uint64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM entries`).Scan(&total); err != nil {
		return Report{}, fmt.Errorf("ledger: verify %s: count entries: %w", path, err)
	}
	w := walker{heads: heads, trusted: trusted, limit: math.MaxUint64, total: total, progress: progress}
	if cpErr != nil {
		// Rows at or after the first index the bad checkpoint covers cannot
		// produce an earlier finding.
		w.limit = cpErr.Index
	}
	if len(heads) > 0 {
		w.signed = heads[len(heads)-1].size
	}
	rep, tamper, err := w.walk(ctx, tx)
	if err != nil {
		return rep, fmt.Errorf("ledger: verify %s: %w", path, err)
	}
	if tamper != nil {
		return rep, tamper
	}
	if cpErr != nil {
		return rep, cpErr
	}
	if len(heads) == 0 {
		return rep, &TamperError{Index: 0, Kind: TamperCheckpoint, Reason: "the database has no signed checkpoint"}
	}
	return rep, nil
}

// loadCheckpoints reads every checkpoint in size order and verifies it. It
// stops at the first bad one and returns it as a *TamperError alongside the
// heads verified before it.
func loadCheckpoints(ctx context.Context, tx *sql.Tx, v note.Verifier) ([]cpHead, *TamperError, error) {
	rows, err := tx.QueryContext(ctx, `SELECT size, root, note FROM checkpoints ORDER BY size`)
	if err != nil {
		return nil, nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	type rawCP struct {
		size   int64
		root   []byte
		note   []byte
		parsed Checkpoint
		err    error
	}
	var (
		heads []cpHead
		chunk = make([]rawCP, 0, verifyChunk)
		prev  uint64
	)
	flush := func() *TamperError {
		workers := min(runtime.GOMAXPROCS(0), len(chunk))
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for j := w; j < len(chunk); j += workers {
					chunk[j].parsed, chunk[j].err = ParseCheckpoint(chunk[j].note, v)
				}
			})
		}
		wg.Wait()
		for _, c := range chunk {
			switch {
			case c.size < 0:
				return &TamperError{Index: prev, Kind: TamperCheckpoint, Reason: fmt.Sprintf("checkpoint row with negative size %d", c.size)}
			case c.err != nil && errors.Is(c.err, ErrBadSignature):
				return &TamperError{Index: prev, Kind: TamperBadSignature, Checkpoint: uint64(c.size),
					Reason: fmt.Sprintf("checkpoint at size %d (covering indexes [%d, %d)) does not verify: %v", c.size, prev, c.size, c.err)}
			case c.err != nil:
				return &TamperError{Index: prev, Kind: TamperCheckpoint, Checkpoint: uint64(c.size),
					Reason: fmt.Sprintf("checkpoint at size %d is malformed: %v", c.size, c.err)}
			case c.parsed.Size != uint64(c.size) || !bytes.Equal(c.root, c.parsed.Root[:]):
				return &TamperError{Index: prev, Kind: TamperCheckpoint, Checkpoint: uint64(c.size),
					Reason: fmt.Sprintf("checkpoint row (size %d) disagrees with its signed note (size %d)", c.size, c.parsed.Size)}
			}
			heads = append(heads, cpHead{size: uint64(c.size), root: c.parsed.Root})
			prev = uint64(c.size)
		}
		clear(chunk)
		chunk = chunk[:0]
		return nil
	}
	for rows.Next() {
		var c rawCP
		if err := rows.Scan(&c.size, &c.root, &c.note); err != nil {
			return nil, nil, fmt.Errorf("read checkpoints: %w", err)
		}
		chunk = append(chunk, c)
		if len(chunk) == verifyChunk {
			if t := flush(); t != nil {
				return heads, t, nil
			}
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read checkpoints: %w", err)
	}
	if t := flush(); t != nil {
		return heads, t, nil
	}
	return heads, nil, nil
}

// walker recomputes the tree over the rows and compares it with the
// verified checkpoints.
type walker struct {
	heads    []cpHead
	trusted  *Checkpoint
	signed   uint64 // newest verified checkpoint size
	limit    uint64 // stop before this index
	total    uint64
	progress func(done, total uint64)

	cr   *compact.Range
	next int    // next head to check
	i    uint64 // rows done
}

func (w *walker) root() ([32]byte, error) {
	if w.i == 0 {
		return emptyRoot(), nil
	}
	r, err := w.cr.GetRootHash(nil)
	if err != nil {
		return [32]byte{}, fmt.Errorf("compute root at %d: %w", w.i, err)
	}
	return to32(r), nil
}

// checkHeads compares the root over the first w.i rows with every checkpoint
// (and the trusted one) of that size.
func (w *walker) checkHeads() (*TamperError, error) {
	for w.next < len(w.heads) && w.heads[w.next].size == w.i {
		root, err := w.root()
		if err != nil {
			return nil, err
		}
		h := w.heads[w.next]
		if root != h.root {
			first := uint64(0)
			if w.next > 0 {
				first = w.heads[w.next-1].size
			}
			return &TamperError{Index: first, Kind: TamperRootMismatch, Checkpoint: h.size,
				Reason: fmt.Sprintf("rows [%d, %d) do not produce the root signed at size %d: data and leaf hash were rewritten consistently somewhere in that range", first, h.size, h.size)}, nil
		}
		w.next++
	}
	if w.trusted != nil && w.trusted.Size == w.i {
		root, err := w.root()
		if err != nil {
			return nil, err
		}
		if root != w.trusted.Root {
			return &TamperError{Index: 0, Kind: TamperRootMismatch, Checkpoint: w.trusted.Size,
				Reason: fmt.Sprintf("the root at size %d differs from the trusted checkpoint: the file's history was rewritten or forked", w.trusted.Size)}, nil
		}
	}
	return nil, nil
}

func (w *walker) report() Report {
	root, err := w.root()
	if err != nil {
		root = [32]byte{}
	}
	return Report{Entries: w.i, Checkpoints: uint64(w.next), Root: root}
}

func (w *walker) walk(ctx context.Context, tx *sql.Tx) (Report, *TamperError, error) {
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	w.cr = rf.NewEmptyRange(0)
	if t, err := w.checkHeads(); t != nil || err != nil {
		return w.report(), t, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT idx, data, leaf_hash FROM entries ORDER BY idx`)
	if err != nil {
		return w.report(), nil, fmt.Errorf("read entries: %w", err)
	}
	defer rows.Close()
	var buf []byte
	for rows.Next() {
		if w.i >= w.limit {
			break
		}
		var (
			idx        int64
			data, leaf sql.RawBytes
		)
		if err := rows.Scan(&idx, &data, &leaf); err != nil {
			return w.report(), nil, fmt.Errorf("read entry %d: %w", w.i, err)
		}
		switch {
		case idx < 0 || uint64(idx) < w.i:
			at := w.i
			if idx >= 0 {
				at = uint64(idx)
			}
			return w.report(), &TamperError{Index: at, Kind: TamperDuplicate,
				Reason: fmt.Sprintf("row with index %d out of order or repeated", idx)}, nil
		case uint64(idx) > w.i && w.i < w.signed:
			return w.report(), &TamperError{Index: w.i, Kind: TamperMissing, Checkpoint: w.signed,
				Reason: fmt.Sprintf("entry row is missing (next row has index %d)", idx)}, nil
		case uint64(idx) >= w.signed:
			return w.report(), &TamperError{Index: uint64(idx), Kind: TamperUnsignedTail, Checkpoint: w.signed,
				Reason: fmt.Sprintf("unsigned tail: row beyond the newest checkpoint (size %d) is covered by no signature", w.signed)}, nil
		}
		computed := leafHashBuf(&buf, w.i, data)
		if len(leaf) != len(computed) || !bytes.Equal(leaf, computed[:]) {
			return w.report(), &TamperError{Index: w.i, Kind: TamperLeafMismatch,
				Reason: "leaf hash recomputed from (index, data) differs from the stored leaf hash: the row was edited, moved or swapped"}, nil
		}
		if err := w.cr.Append(computed[:], nil); err != nil {
			return w.report(), nil, fmt.Errorf("extend tree at %d: %w", w.i, err)
		}
		w.i++
		if t, err := w.checkHeads(); t != nil || err != nil {
			return w.report(), t, err
		}
		if w.i%progressEvery == 0 {
			if w.progress != nil {
				w.progress(w.i, w.total)
			}
			if err := ctx.Err(); err != nil {
				return w.report(), nil, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return w.report(), nil, fmt.Errorf("read entries: %w", err)
	}
	if w.progress != nil {
		w.progress(w.i, w.total)
	}
	if w.i >= w.limit {
		return w.report(), nil, nil // the caller reports the bad checkpoint
	}
	if w.i < w.signed {
		return w.report(), &TamperError{Index: w.i, Kind: TamperTruncated, Checkpoint: w.signed,
			Reason: fmt.Sprintf("truncated: %d rows but the newest checkpoint covers %d", w.i, w.signed)}, nil
	}
	if w.trusted != nil && w.i < w.trusted.Size {
		return w.report(), &TamperError{Index: w.i, Kind: TamperTruncated, Checkpoint: w.trusted.Size,
			Reason: fmt.Sprintf("rolled back: %d rows but the trusted checkpoint covers %d", w.i, w.trusted.Size)}, nil
	}
	return w.report(), nil, nil
}
