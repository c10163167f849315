// Package ledger is the platform's tamper-evident, append-only Merkle log,
// in the style of Certificate Transparency, stored in a single SQLite file.
//
// # What it owns
//
// A [Log] owns one SQLite database file (and its -wal/-shm companions) and is
// the only writer of it. It owns:
//
//   - the entries: opaque byte strings, numbered 0, 1, 2, … in append order;
//   - the RFC 6962 Merkle tree over those entries, kept in memory as
//     per-level slices of perfect-subtree hashes so that inclusion and
//     consistency proofs cost O(log n);
//   - the signed checkpoints (c2sp.org/tlog-checkpoint signed notes), one per
//     committed batch, each committing to the tree size and root after that
//     batch;
//   - the text formats that leave the process: checkpoints and receipts
//     (c2sp.org/tlog-proof@v1 inclusion proofs), and their parsers, which face
//     the network and treat their input as hostile.
//
// # What it must never do
//
//   - Never rewrite or delete an entry or a checkpoint. The package only ever
//     INSERTs; the schema also carries triggers that abort UPDATE and DELETE
//     on both tables, as a guard against accidents (not against an attacker
//     with write access to the file, who can drop them: that is what the
//     Merkle tree and signatures are for).
//   - Never acknowledge an append before it is durable. [Log.Append] and
//     [Log.AppendBatch] return only after the rows and a signed checkpoint
//     covering them are committed in one transaction and that commit has been
//     fsynced (journal_mode=WAL, synchronous=FULL).
//   - Never sign a checkpoint that is inconsistent with an earlier one: the
//     tree only grows, and a checkpoint is signed over the root computed from
//     every stored leaf.
//
// # Leaves
//
// The leaf data committed for entry i is the 8-byte big-endian encoding of i
// followed by the entry's bytes, and the leaf hash is the RFC 6962 leaf hash
// SHA-256(0x00 || leafdata) (see [LeafHash]). Committing the index into the
// leaf means a row that is moved to another index, or two rows whose contents
// are swapped, no longer hash to what the tree committed to.
//
// # Group commit
//
// All appends go through one writer goroutine. It drains every append that is
// waiting (up to Options.MaxBatch entries) into one transaction: insert the
// rows, extend the tree, sign one checkpoint, insert it, commit. One fsync then
// answers every caller in the batch, so concurrent appenders share the cost of
// a sync. After a commit that answered several callers, the writer lingers
// until as many entries are queued again, for at most 200µs and never longer
// than that commit took, so the callers it just answered share the next
// commit instead of trickling into small ones; a lone appender never waits.
//
// A commit that fails before COMMIT is rolled back and reported to the callers
// of that batch; the log stays usable. A failure of COMMIT itself (for example
// an fsync error) leaves the on-disk state unknown, so the Log stops accepting
// appends ([ErrFailed]) and must be reopened, which re-checks the file.
//
// # Schema
//
//	ledger_meta(key TEXT PRIMARY KEY, value TEXT)        -- schema_version, origin
//	entries(idx INTEGER PRIMARY KEY, data BLOB, leaf_hash BLOB)
//	checkpoints(size INTEGER PRIMARY KEY, root BLOB, note BLOB, created_ns INTEGER)
//
// A new database gets a signed checkpoint for the empty tree (size 0), so a
// Log always has a checkpoint to serve.
//
// # Tamper evidence, and its limits
//
// [Open] loads the stored leaf hashes, rebuilds the tree, checks that the
// rows are numbered 0..n-1 without gaps, that no row lies beyond the newest
// checkpoint, that the newest checkpoint's signature verifies and that the
// rebuilt root equals its root; otherwise it refuses to open. It does not read
// the entry data (that would make opening O(total bytes)); instead every
// [Log.Read] and [Log.Scan] recomputes the leaf hash of the row it returns and
// compares it with the tree, so an edited row is never served as genuine.
//
// [Verify] checks a database file offline, in one O(n) pass over the rows in
// index order plus every checkpoint, and returns a [*TamperError] naming the
// first bad index. What it detects, and how it names the index:
//
//   - a row's data edited: the recomputed leaf hash differs from the stored
//     leaf_hash column (TamperLeafMismatch, the row's index);
//   - rows reordered or swapped (data and leaf hash moved together): the leaf
//     commits to its index, so the recomputed hash differs
//     (TamperLeafMismatch, the first affected index);
//   - a row deleted from the middle: a gap (TamperMissing, the missing index);
//   - a row inserted: indexes are the primary key so an insert can only add a
//     new index; any row at or beyond the newest checkpoint's size is not
//     covered by any signature. The writer commits rows and their checkpoint
//     in the same transaction, so a genuine log never has such rows: they are
//     reported as an "unsigned tail" (TamperUnsignedTail, the first such
//     row's index). A duplicate or out-of-order index, possible only if the
//     schema was altered, is TamperDuplicate;
//   - truncation below the newest checkpoint (TamperTruncated, the first
//     missing index);
//   - a checkpoint whose signature does not verify, or whose size/root
//     columns disagree with its signed note (TamperBadSignature /
//     TamperCheckpoint, the first index that checkpoint covers);
//   - data AND its stored leaf hash rewritten consistently: every row looks
//     self-consistent, but the root recomputed over the rows disagrees with a
//     signed checkpoint. Verify reports the first checkpoint whose range
//     [previous checkpoint size, checkpoint size) disagrees, naming the first
//     index of that range (TamperRootMismatch). Because a checkpoint is
//     signed per commit batch, this is exact for entries that were appended
//     alone, and accurate to one batch otherwise: the rewritten row is
//     somewhere in the named batch, not necessarily at its first index.
//
// What Verify cannot detect on its own: a consistent rollback, in which an
// attacker deletes the newest rows together with every checkpoint that covers
// them. The remaining file is a genuine, older state of the log. Detecting
// that needs a checkpoint remembered outside the file (by a client, a monitor
// or a witness); [VerifyAgainst] takes one. Likewise, deleting a middle
// checkpoint row loses localization, not data, and is not reported.
//
// # Concurrency and files
//
// A Log is safe for concurrent use. Only one Log (one process) may write a
// database file at a time; a second writer cannot corrupt the log (indexes
// and checkpoint sizes are primary keys, so its rows collide) but makes
// appends fail. Verify opens the file read-only and may run while a Log has
// it open. Durability against process crashes (SIGKILL) is tested; durability
// against power loss relies on the disk honouring fsync.
package ledger
