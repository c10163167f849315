package ledger

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
)

const (
	// DefaultMaxBatch is the default cap on entries per group commit.
	DefaultMaxBatch = 4096
	// DefaultMaxEntrySize is the default cap on one entry's size.
	DefaultMaxEntrySize = 1 << 20

	// maxLinger bounds how long the writer waits for the callers of the
	// previous batch to come back before committing a smaller batch. The
	// wait is also bounded by the previous commit's duration, so lingering
	// never costs more than the commit it is trying to share.
	maxLinger = 200 * time.Microsecond
	// scanChunk is how many rows Scan reads per query.
	scanChunk = 1024
)

// Options configure a Log.
type Options struct {
	// Origin names the log; it is the first line of every checkpoint and
	// must be the Signer's (and Verifier's) key name. Empty means
	// Signer.Name().
	Origin string
	// Signer signs checkpoints. Required. See NewSigner.
	Signer note.Signer
	// Verifier checks the Signer's signatures. Required; Open checks the
	// pair by signing and verifying a probe.
	Verifier note.Verifier
	// Registerer receives the Log's metrics (labelled origin=Origin). Nil
	// means no metrics. They are unregistered by Close.
	Registerer prometheus.Registerer
	// Logger receives structured logs. Nil discards them.
	Logger *slog.Logger
	// MaxBatch caps the entries the writer puts in one group commit; a
	// single AppendBatch larger than this still commits atomically.
	// Zero means DefaultMaxBatch.
	MaxBatch int
	// MaxEntrySize caps one entry's size in bytes, so one caller cannot
	// fail a whole group commit with an oversized row. Zero means
	// DefaultMaxEntrySize.
	MaxEntrySize int
}

// Entry describes an appended entry.
type Entry struct {
	Index    uint64
	LeafHash [32]byte
	// Size is the tree size of the signed checkpoint committed with this
	// entry, the smallest checkpoint that covers it.
	Size uint64
}

// Log is an open append-only Merkle log. It is safe for concurrent use.
type Log struct {
	path     string
	origin   string
	signer   note.Signer
	verifier note.Verifier
	logger   *slog.Logger
	metrics  *metrics
	maxBatch int
	maxEntry int

	wdb           *sql.DB // one connection; used only by the writer goroutine after Open
	rdb           *sql.DB // readers
	insEntry      *sql.Stmt
	insCheckpoint *sql.Stmt
	selData       *sql.Stmt
	scanData      *sql.Stmt
	selCheckpoint *sql.Stmt

	// treeMu guards tree. The writer extends the tree before it commits and
	// publishes cp after; readers only use nodes within cp.Size.
	treeMu sync.RWMutex
	tree   tree
	cp     atomic.Pointer[Checkpoint] // newest committed checkpoint

	// qmu guards the append queue and the closed/failed state.
	qmu    sync.Mutex
	queue  []*request
	queued int // entries in queue, including cancelled requests
	closed bool
	failed error
	wake   chan struct{} // capacity 1: "the queue or state changed"

	isClosed   atomic.Bool
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// request states.
const (
	stateQueued uint32 = iota
	stateTaken
	stateCancelled
)

// request is one Append/AppendBatch call waiting for the writer.
type request struct {
	data    [][]byte
	state   atomic.Uint32
	done    chan struct{} // closed after entries/err are set
	entries []Entry
	err     error
}

// Open opens the log stored at path, creating the database if it does not
// exist (journal_mode=WAL, synchronous=FULL). It loads every stored leaf hash,
// rebuilds the in-memory tree and refuses, with an error wrapping a
// *TamperError, to open a database whose rows do not match its newest signed
// checkpoint. A new database gets a signed checkpoint of the empty tree.
func Open(ctx context.Context, path string, opts Options) (*Log, error) {
	if opts.Signer == nil || opts.Verifier == nil {
		return nil, errors.New("ledger: open: Options.Signer and Options.Verifier are required")
	}
	origin := opts.Origin
	if origin == "" {
		origin = opts.Signer.Name()
	}
	if err := validOrigin(origin); err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	if opts.Signer.Name() != origin || opts.Verifier.Name() != origin {
		return nil, fmt.Errorf("ledger: open: signer %q and verifier %q must both be named after the origin %q",
			opts.Signer.Name(), opts.Verifier.Name(), origin)
	}
	if err := checkKeyPair(opts.Signer, opts.Verifier); err != nil {
		return nil, err
	}
	l := &Log{
		path:       path,
		origin:     origin,
		signer:     opts.Signer,
		verifier:   opts.Verifier,
		logger:     opts.Logger,
		maxBatch:   opts.MaxBatch,
		maxEntry:   opts.MaxEntrySize,
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	l.logger = l.logger.With("component", "ledger", "origin", origin)
	if l.maxBatch <= 0 {
		l.maxBatch = DefaultMaxBatch
	}
	if l.maxEntry <= 0 {
		l.maxEntry = DefaultMaxEntrySize
	}
	start := time.Now()
	if err := l.open(ctx); err != nil {
		l.closeDBs()
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, origin)
	if err != nil {
		l.closeDBs()
		return nil, err
	}
	l.metrics = m
	cp := l.cp.Load()
	l.metrics.setSize(cp.Size)
	go l.run()
	l.logger.InfoContext(ctx, "ledger opened", "path", path, "size", cp.Size,
		"root", fmt.Sprintf("%x", cp.Root), "elapsed", time.Since(start))
	return l, nil
}

// checkKeyPair signs a probe with s and verifies it with v.
func checkKeyPair(s note.Signer, v note.Verifier) error {
	msg, err := note.Sign(&note.Note{Text: "ledger key check\n"}, s)
	if err != nil {
		return fmt.Errorf("ledger: open: signer cannot sign: %w", err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		return fmt.Errorf("ledger: open: verifier does not accept the signer's signatures: %w", err)
	}
	return nil
}

// open does the database work of Open.
func (l *Log) open(ctx context.Context) error {
	var err error
	if l.wdb, err = openWriterDB(ctx, l.path); err != nil {
		return err
	}
	created, err := initSchema(ctx, l.wdb, l.origin)
	if err != nil {
		return fmt.Errorf("ledger: open %s: %w", l.path, err)
	}
	if created {
		if err := l.writeGenesis(ctx); err != nil {
			return err
		}
	}
	if err := l.loadTree(ctx); err != nil {
		return fmt.Errorf("ledger: open %s: %w", l.path, err)
	}
	prep := func(db *sql.DB, q string) (*sql.Stmt, error) {
		s, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("ledger: open %s: prepare %q: %w", l.path, q, err)
		}
		return s, nil
	}
	if l.insEntry, err = prep(l.wdb, sqlInsertEntry); err != nil {
		return err
	}
	if l.insCheckpoint, err = prep(l.wdb, sqlInsertCheckpoint); err != nil {
		return err
	}
	name, err := dsn(l.path, dsnReader)
	if err != nil {
		return err
	}
	if l.rdb, err = sql.Open("sqlite", name); err != nil {
		return fmt.Errorf("ledger: open %s for reading: %w", l.path, err)
	}
	l.rdb.SetMaxOpenConns(8)
	l.rdb.SetMaxIdleConns(8)
	if l.selData, err = prep(l.rdb, sqlSelectData); err != nil {
		return err
	}
	if l.scanData, err = prep(l.rdb, sqlScanData); err != nil {
		return err
	}
	if l.selCheckpoint, err = prep(l.rdb, sqlSelectCheckpoint); err != nil {
		return err
	}
	return nil
}

// writeGenesis signs and stores the checkpoint of the empty tree.
func (l *Log) writeGenesis(ctx context.Context) error {
	cp, err := signCheckpoint(l.signer, l.origin, 0, emptyRoot())
	if err != nil {
		return err
	}
	if _, err := l.wdb.ExecContext(ctx, sqlInsertCheckpoint, 0, cp.Root[:], cp.Note, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("ledger: open %s: store empty-tree checkpoint: %w", l.path, err)
	}
	l.logger.InfoContext(ctx, "ledger created", "path", l.path)
	return nil
}

// loadTree reads the newest checkpoint and every leaf hash, rebuilds the
// tree and checks them against each other.
func (l *Log) loadTree(ctx context.Context) error {
	var (
		cpSize int64
		cpNote []byte
	)
	err := l.wdb.QueryRowContext(ctx, sqlNewestCheckpoint).Scan(&cpSize, &cpNote)
	if errors.Is(err, sql.ErrNoRows) {
		return &TamperError{Index: 0, Kind: TamperCheckpoint, Reason: "the database has no signed checkpoint"}
	}
	if err != nil {
		return fmt.Errorf("read newest checkpoint: %w", err)
	}
	cp, err := ParseCheckpoint(cpNote, l.verifier)
	if err != nil {
		return &TamperError{Index: 0, Kind: TamperBadSignature, Checkpoint: uint64(cpSize),
			Reason: fmt.Sprintf("newest checkpoint (size %d) does not verify: %v; run Verify to locate the damage", cpSize, err)}
	}
	if cpSize < 0 || cp.Size != uint64(cpSize) {
		return &TamperError{Index: 0, Kind: TamperCheckpoint, Checkpoint: uint64(max(cpSize, 0)),
			Reason: fmt.Sprintf("newest checkpoint row has size %d but its note says %d", cpSize, cp.Size)}
	}

	rows, err := l.wdb.QueryContext(ctx, sqlLeafHashes)
	if err != nil {
		return fmt.Errorf("read leaf hashes: %w", err)
	}
	defer rows.Close()
	var t tree
	for rows.Next() {
		var (
			idx  int64
			leaf sql.RawBytes
		)
		if err := rows.Scan(&idx, &leaf); err != nil {
			return fmt.Errorf("read leaf hashes: %w", err)
		}
		next := t.size()
		switch {
		case idx < 0 || uint64(idx) < next:
			return &TamperError{Index: next, Kind: TamperDuplicate, Reason: fmt.Sprintf("row with index %d out of order", idx)}
		case uint64(idx) > next && next < cp.Size:
			return &TamperError{Index: next, Kind: TamperMissing, Reason: "entry row is missing"}
		case uint64(idx) >= cp.Size:
			return &TamperError{Index: uint64(idx), Kind: TamperUnsignedTail, Checkpoint: cp.Size,
				Reason: fmt.Sprintf("row beyond the newest checkpoint (size %d) is covered by no signature", cp.Size)}
		case len(leaf) != 32:
			return &TamperError{Index: next, Kind: TamperLeafMismatch, Reason: fmt.Sprintf("stored leaf hash is %d bytes", len(leaf))}
		}
		t.append([32]byte(leaf))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read leaf hashes: %w", err)
	}
	if t.size() < cp.Size {
		return &TamperError{Index: t.size(), Kind: TamperTruncated, Checkpoint: cp.Size,
			Reason: fmt.Sprintf("%d rows but the newest checkpoint covers %d", t.size(), cp.Size)}
	}
	root, err := t.rootAt(cp.Size)
	if err != nil {
		return err
	}
	if root != cp.Root {
		return &TamperError{Index: 0, Kind: TamperRootMismatch, Checkpoint: cp.Size,
			Reason: fmt.Sprintf("stored leaf hashes do not produce the root of the newest checkpoint (size %d); run Verify to locate the damage", cp.Size)}
	}
	l.tree = t
	l.cp.Store(&cp)
	return nil
}

// Append appends one entry. It returns only after the entry and a signed
// checkpoint covering it are committed and fsynced; concurrent callers share
// one commit. If ctx ends while the entry is still queued, Append returns
// ctx's error and the entry is never written; once the writer has taken it,
// Append waits for the outcome (one commit). data must not be modified until
// Append returns.
func (l *Log) Append(ctx context.Context, data []byte) (Entry, error) {
	es, err := l.AppendBatch(ctx, [][]byte{data})
	if err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

// AppendBatch appends several entries atomically, in one commit, at
// consecutive indexes. It has Append's durability and cancellation rules.
func (l *Log) AppendBatch(ctx context.Context, data [][]byte) ([]Entry, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("ledger: append: %w", ErrEmptyBatch)
	}
	for i, d := range data {
		if len(d) > l.maxEntry {
			return nil, fmt.Errorf("ledger: append: entry %d is %d bytes, limit %d: %w", i, len(d), l.maxEntry, ErrEntryTooLarge)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger: append: %w", err)
	}
	start := time.Now()
	req := &request{data: data, done: make(chan struct{})}
	l.qmu.Lock()
	switch {
	case l.closed:
		l.qmu.Unlock()
		return nil, fmt.Errorf("ledger: append: %w", ErrClosed)
	case l.failed != nil:
		err := l.failed
		l.qmu.Unlock()
		return nil, fmt.Errorf("ledger: append: %w", err)
	}
	l.queue = append(l.queue, req)
	l.queued += len(data)
	l.qmu.Unlock()
	l.signal()

	select {
	case <-req.done:
	case <-ctx.Done():
		if req.state.CompareAndSwap(stateQueued, stateCancelled) {
			return nil, fmt.Errorf("ledger: append: not written: %w", ctx.Err())
		}
		<-req.done // the writer has it; its commit is already under way
	}
	if req.err != nil {
		return nil, req.err
	}
	l.metrics.appendDone(time.Since(start))
	return req.entries, nil
}

// signal wakes the writer without blocking.
func (l *Log) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run is the writer goroutine: it turns queued requests into group commits
// until the Log is closed and the queue is empty.
func (l *Log) run() {
	defer close(l.writerDone)
	var (
		batch   []*request
		last    int           // entries in the previous commit: how many callers may come back
		lastDur time.Duration // how long the previous commit took
	)
	for {
		l.waitForWork(last, min(lastDur, maxLinger))
		var exit bool
		batch, exit = l.take(batch[:0])
		if exit {
			return
		}
		if len(batch) == 0 {
			continue
		}
		start := time.Now()
		last = l.commit(batch)
		lastDur = time.Since(start)
		clear(batch)
	}
}

// waitForWork blocks until a request is queued or the Log is closing. If the
// previous commit answered several callers, it then lingers up to linger for
// as many entries to queue up, so callers that were just answered and append
// again share the next commit instead of trickling into small ones. A lone
// appender (last <= 1) never waits.
func (l *Log) waitForWork(last int, linger time.Duration) {
	for {
		l.qmu.Lock()
		queued, closed := l.queued, l.closed
		l.qmu.Unlock()
		if queued > 0 || closed {
			break
		}
		<-l.wake
	}
	if last <= 1 || linger <= 0 {
		return
	}
	target := min(last, l.maxBatch)
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for {
		l.qmu.Lock()
		queued, closed := l.queued, l.closed
		l.qmu.Unlock()
		if queued >= target || closed {
			return
		}
		select {
		case <-l.wake:
		case <-timer.C:
			return
		}
	}
}

// take moves up to maxBatch entries' worth of requests from the queue into
// batch. Cancelled requests are dropped. exit reports that the Log is closed
// and nothing is left to write. If the Log has failed, take answers the
// requests with the failure itself.
func (l *Log) take(batch []*request) (_ []*request, exit bool) {
	l.qmu.Lock()
	n, i := 0, 0
	for ; i < len(l.queue) && n < l.maxBatch; i++ {
		r := l.queue[i]
		l.queued -= len(r.data)
		if r.state.CompareAndSwap(stateQueued, stateTaken) {
			batch = append(batch, r)
			n += len(r.data)
		}
	}
	rest := copy(l.queue, l.queue[i:])
	clear(l.queue[rest:])
	l.queue = l.queue[:rest]
	exit = l.closed && len(l.queue) == 0 && len(batch) == 0
	failed := l.failed
	more := len(l.queue) > 0
	l.qmu.Unlock()
	if more {
		l.signal()
	}
	if failed != nil {
		for _, r := range batch {
			r.err = fmt.Errorf("ledger: append: %w", failed)
			close(r.done)
		}
		return batch[:0], exit
	}
	return batch, exit
}

// commit writes one group commit and answers its requests. It returns the
// number of entries in the batch.
func (l *Log) commit(batch []*request) int {
	start := time.Now()
	n := 0
	for _, r := range batch {
		n += len(r.data)
	}
	oldSize := l.cp.Load().Size
	leaves := make([][32]byte, 0, n)
	var buf []byte
	idx := oldSize
	for _, r := range batch {
		for _, d := range r.data {
			leaves = append(leaves, leafHashBuf(&buf, idx, d))
			idx++
		}
	}

	cp, committing, err := l.write(batch, oldSize, leaves)
	if err != nil {
		l.treeMu.Lock()
		l.tree.truncate(oldSize)
		l.treeMu.Unlock()
		l.metrics.commitFailed()
		if committing {
			// COMMIT failed: the file may or may not hold the batch.
			failed := fmt.Errorf("%w: commit at size %d failed: %w", ErrFailed, oldSize, err)
			l.qmu.Lock()
			l.failed = failed
			l.qmu.Unlock()
			l.logger.Error("ledger commit failed; refusing further appends until reopened",
				"size", oldSize, "entries", n, "err", err)
			err = failed
		} else {
			l.logger.Error("ledger batch rolled back", "size", oldSize, "entries", n, "err", err)
		}
		for _, r := range batch {
			r.err = fmt.Errorf("ledger: append at size %d: %w", oldSize, err)
			close(r.done)
		}
		return n
	}

	l.treeMu.Lock()
	l.cp.Store(&cp)
	l.treeMu.Unlock()
	elapsed := time.Since(start)
	l.metrics.committed(n, elapsed, cp.Size)
	l.logger.Debug("ledger commit", "size", cp.Size, "entries", n, "requests", len(batch), "elapsed", elapsed)

	k := 0
	for _, r := range batch {
		r.entries = make([]Entry, len(r.data))
		for j := range r.data {
			r.entries[j] = Entry{Index: oldSize + uint64(k), LeafHash: leaves[k], Size: cp.Size}
			k++
		}
		close(r.done)
	}
	return n
}

// write runs the transaction of one group commit: insert the rows, extend the
// tree, sign a checkpoint over the new root, insert it, commit. committing
// reports that the failure, if any, came from COMMIT itself.
func (l *Log) write(batch []*request, oldSize uint64, leaves [][32]byte) (_ Checkpoint, committing bool, err error) {
	// The transaction is shared by every caller in the batch, so no single
	// caller's context may abandon it half way.
	ctx := context.Background()
	tx, err := l.wdb.BeginTx(ctx, nil)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil && !committing {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				l.logger.Error("ledger rollback failed", "err", rbErr)
			}
		}
	}()
	ins := tx.StmtContext(ctx, l.insEntry)
	k := 0
	for _, r := range batch {
		for _, d := range r.data {
			if d == nil {
				d = []byte{} // NOT NULL: store an empty entry as an empty blob
			}
			if _, err := ins.ExecContext(ctx, int64(oldSize)+int64(k), d, leaves[k][:]); err != nil {
				return Checkpoint{}, false, fmt.Errorf("insert entry %d: %w", oldSize+uint64(k), err)
			}
			k++
		}
	}

	l.treeMu.Lock()
	for _, leaf := range leaves {
		l.tree.append(leaf)
	}
	l.treeMu.Unlock()
	newSize := oldSize + uint64(len(leaves))
	// Only this goroutine mutates the tree, so reading it unlocked is safe.
	root, err := l.tree.rootAt(newSize)
	if err != nil {
		return Checkpoint{}, false, err
	}
	cp, err := signCheckpoint(l.signer, l.origin, newSize, root)
	if err != nil {
		return Checkpoint{}, false, err
	}
	if _, err := tx.StmtContext(ctx, l.insCheckpoint).ExecContext(ctx, int64(newSize), root[:], cp.Note, time.Now().UnixNano()); err != nil {
		return Checkpoint{}, false, fmt.Errorf("insert checkpoint at size %d: %w", newSize, err)
	}
	if err := tx.Commit(); err != nil {
		return Checkpoint{}, true, fmt.Errorf("commit at size %d: %w", newSize, err)
	}
	return cp, false, nil
}

// Size returns the tree size of the newest signed checkpoint: the number of
// durably appended entries.
func (l *Log) Size() uint64 { return l.cp.Load().Size }

// Checkpoint returns the newest signed checkpoint.
func (l *Log) Checkpoint() Checkpoint {
	cp := *l.cp.Load()
	cp.Note = bytes.Clone(cp.Note)
	return cp
}

// CheckpointAt returns the stored checkpoint of the given tree size, verified.
// Checkpoints exist for the sizes at which batches were committed; other
// sizes return ErrNotFound.
func (l *Log) CheckpointAt(ctx context.Context, size uint64) (Checkpoint, error) {
	if l.isClosed.Load() {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint at %d: %w", size, ErrClosed)
	}
	if size > l.Size() {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint at %d: %w", size, ErrOutOfRange)
	}
	var msg []byte
	err := l.selCheckpoint.QueryRowContext(ctx, int64(size)).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint at %d: %w", size, ErrNotFound)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: read checkpoint at %d: %w", size, err)
	}
	cp, err := ParseCheckpoint(msg, l.verifier)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: stored checkpoint at size %d: %w: %w", size, ErrTampered, err)
	}
	if cp.Size != size {
		return Checkpoint{}, fmt.Errorf("ledger: %w: checkpoint row for size %d holds a note for size %d", ErrTampered, size, cp.Size)
	}
	return cp, nil
}

// leafAt returns the committed leaf hash of index.
func (l *Log) leafAt(index uint64) [32]byte {
	l.treeMu.RLock()
	defer l.treeMu.RUnlock()
	return l.tree.levels[0][index]
}

// Read returns entry index. It recomputes the entry's leaf hash and returns a
// *TamperError if the stored row does not match what the log committed to.
func (l *Log) Read(ctx context.Context, index uint64) ([]byte, error) {
	if l.isClosed.Load() {
		return nil, fmt.Errorf("ledger: read %d: %w", index, ErrClosed)
	}
	if size := l.Size(); index >= size {
		return nil, fmt.Errorf("ledger: read %d of %d: %w", index, size, ErrOutOfRange)
	}
	var data []byte
	err := l.selData.QueryRowContext(ctx, int64(index)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &TamperError{Index: index, Kind: TamperMissing, Reason: "committed entry row is missing"}
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read %d: %w", index, err)
	}
	if LeafHash(index, data) != l.leafAt(index) {
		return nil, &TamperError{Index: index, Kind: TamperLeafMismatch, Reason: "stored data does not match the committed leaf hash"}
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// Scan calls fn for entries start, start+1, …, end-1 in order, with the same
// check as Read. end may not exceed Size(). fn must not retain data after it
// returns; an error from fn stops the scan and is returned as is.
func (l *Log) Scan(ctx context.Context, start, end uint64, fn func(index uint64, data []byte) error) error {
	if l.isClosed.Load() {
		return fmt.Errorf("ledger: scan: %w", ErrClosed)
	}
	if size := l.Size(); start > end || end > size {
		return fmt.Errorf("ledger: scan [%d, %d) of %d: %w", start, end, size, ErrOutOfRange)
	}
	var buf []byte
	leaves := make([][32]byte, 0, scanChunk)
	for lo := start; lo < end; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ledger: scan at %d: %w", lo, err)
		}
		hi := min(end, lo+scanChunk)
		l.treeMu.RLock()
		leaves = append(leaves[:0], l.tree.levels[0][lo:hi]...)
		l.treeMu.RUnlock()
		next, err := l.scanChunk(ctx, lo, hi, leaves, &buf, fn)
		if err != nil {
			return err
		}
		lo = next
	}
	return nil
}

// scanChunk scans [lo, hi) in one query and returns hi.
func (l *Log) scanChunk(ctx context.Context, lo, hi uint64, leaves [][32]byte, buf *[]byte, fn func(uint64, []byte) error) (uint64, error) {
	rows, err := l.scanData.QueryContext(ctx, int64(lo), int64(hi))
	if err != nil {
		return lo, fmt.Errorf("ledger: scan [%d, %d): %w", lo, hi, err)
	}
	defer rows.Close()
	next := lo
	for rows.Next() {
		var (
			idx  int64
			data sql.RawBytes
		)
		if err := rows.Scan(&idx, &data); err != nil {
			return next, fmt.Errorf("ledger: scan at %d: %w", next, err)
		}
		if idx < 0 || uint64(idx) != next {
			return next, &TamperError{Index: next, Kind: TamperMissing, Reason: "committed entry row is missing"}
		}
		if leafHashBuf(buf, next, data) != leaves[next-lo] {
			return next, &TamperError{Index: next, Kind: TamperLeafMismatch, Reason: "stored data does not match the committed leaf hash"}
		}
		if data == nil {
			data = sql.RawBytes{}
		}
		if err := fn(next, data); err != nil {
			return next, err
		}
		next++
	}
	if err := rows.Err(); err != nil {
		return next, fmt.Errorf("ledger: scan at %d: %w", next, err)
	}
	if next != hi {
		return next, &TamperError{Index: next, Kind: TamperMissing, Reason: "committed entry row is missing"}
	}
	return hi, nil
}

// Receipt returns an inclusion proof of entry index against the newest
// checkpoint.
func (l *Log) Receipt(ctx context.Context, index uint64) (Receipt, error) {
	if l.isClosed.Load() {
		return Receipt{}, fmt.Errorf("ledger: receipt for %d: %w", index, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return Receipt{}, fmt.Errorf("ledger: receipt for %d: %w", index, err)
	}
	l.treeMu.RLock()
	cp := *l.cp.Load()
	if index >= cp.Size {
		l.treeMu.RUnlock()
		return Receipt{}, fmt.Errorf("ledger: receipt for %d at size %d: %w", index, cp.Size, ErrOutOfRange)
	}
	leaf := l.tree.levels[0][index]
	p, err := l.tree.inclusion(index, cp.Size)
	l.treeMu.RUnlock()
	if err != nil {
		return Receipt{}, err
	}
	cp.Note = bytes.Clone(cp.Note)
	return Receipt{Index: index, LeafHash: leaf, Proof: p, Checkpoint: cp}, nil
}

// Consistency returns a proof that the tree at newSize extends the tree at
// oldSize; 0 <= oldSize <= newSize <= Size(). Verify it with
// VerifyConsistency.
func (l *Log) Consistency(ctx context.Context, oldSize, newSize uint64) ([][32]byte, error) {
	if l.isClosed.Load() {
		return nil, fmt.Errorf("ledger: consistency %d to %d: %w", oldSize, newSize, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger: consistency %d to %d: %w", oldSize, newSize, err)
	}
	l.treeMu.RLock()
	defer l.treeMu.RUnlock()
	if size := l.cp.Load().Size; oldSize > newSize || newSize > size {
		return nil, fmt.Errorf("ledger: consistency %d to %d at size %d: %w", oldSize, newSize, size, ErrOutOfRange)
	}
	return l.tree.consistency(oldSize, newSize)
}

// Close stops accepting appends, waits for every queued append to be
// committed and answered, stops the writer and closes the database. It is
// safe to call more than once.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.qmu.Lock()
		l.closed = true
		l.qmu.Unlock()
		l.signal()
		<-l.writerDone
		l.isClosed.Store(true)
		l.metrics.unregister()
		l.closeErr = l.closeDBs()
		l.logger.Info("ledger closed", "path", l.path, "size", l.Size())
	})
	return l.closeErr
}

// closeDBs closes statements and databases that were opened.
func (l *Log) closeDBs() error {
	var errs []error
	for _, s := range []*sql.Stmt{l.insEntry, l.insCheckpoint, l.selData, l.scanData, l.selCheckpoint} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	if l.rdb != nil {
		errs = append(errs, l.rdb.Close())
	}
	if l.wdb != nil {
		errs = append(errs, l.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ledger: close %s: %w", l.path, err)
	}
	return nil
}
