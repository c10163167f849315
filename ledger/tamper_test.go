package ledger_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/ledger"
	"golang.org/x/mod/sumdb/note"
)

// buildTamperLog creates a log of 10 entries appended one at a time (so
// checkpoints exist at every size 0..10) followed by one batch of 4 (indexes
// 10..13, one checkpoint at 14). It returns the path and the newest
// checkpoint.
func buildTamperLog(t *testing.T) (string, ledger.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(ctx, path, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := l.Append(ctx, fmt.Appendf(nil, "entry-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var batch [][]byte
	for i := 10; i < 14; i++ {
		batch = append(batch, fmt.Appendf(nil, "entry-%02d", i))
	}
	if _, err := l.AppendBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	cp := l.Checkpoint()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, cp
}

// rawDB opens the ledger file directly, as an attacker with file access
// would, and drops the append-only triggers.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, trig := range []string{"entries_no_update", "entries_no_delete", "checkpoints_no_update", "checkpoints_no_delete"} {
		if _, err := db.Exec("DROP TRIGGER " + trig); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	res, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s: no rows affected", q)
	}
}

func leaf(i uint64, data string) []byte {
	h := ledger.LeafHash(i, []byte(data))
	return h[:]
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name      string
		tamper    func(t *testing.T, db *sql.DB)
		wantIndex uint64
		wantKind  ledger.TamperKind
		// openFails: Open checks leaf hashes against the newest checkpoint
		// and its signature, not row data or older checkpoints.
		openFails bool
	}{
		{
			name: "a: row data edited",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE entries SET data = 'evil' WHERE idx = 3`)
			},
			wantIndex: 3, wantKind: ledger.TamperLeafMismatch,
		},
		{
			name: "b: data and leaf hash rewritten consistently (lone append)",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE entries SET data = 'evil', leaf_hash = ? WHERE idx = 3`, leaf(3, "evil"))
			},
			wantIndex: 3, wantKind: ledger.TamperRootMismatch, openFails: true,
		},
		{
			name: "b2: data and leaf hash rewritten consistently inside a batch",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE entries SET data = 'evil', leaf_hash = ? WHERE idx = 12`, leaf(12, "evil"))
			},
			wantIndex: 10, wantKind: ledger.TamperRootMismatch, openFails: true, // first index of the batch
		},
		{
			name: "c: middle row deleted",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `DELETE FROM entries WHERE idx = 5`)
			},
			wantIndex: 5, wantKind: ledger.TamperMissing, openFails: true,
		},
		{
			name: "d: extra row appended after the newest checkpoint",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `INSERT INTO entries (idx, data, leaf_hash) VALUES (14, 'forged', ?)`, leaf(14, "forged"))
			},
			wantIndex: 14, wantKind: ledger.TamperUnsignedTail, openFails: true,
		},
		{
			name: "d2: extra row inserted far beyond the end",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `INSERT INTO entries (idx, data, leaf_hash) VALUES (1000, 'forged', ?)`, leaf(1000, "forged"))
			},
			wantIndex: 1000, wantKind: ledger.TamperUnsignedTail, openFails: true,
		},
		{
			name: "d3: extra row with a negative index",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `INSERT INTO entries (idx, data, leaf_hash) VALUES (-1, 'forged', ?)`, leaf(0, "forged"))
			},
			wantIndex: 0, wantKind: ledger.TamperDuplicate, openFails: true,
		},
		{
			name: "e: two rows swapped (data and leaf hash)",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE entries SET idx = -2 WHERE idx = 2`)
				mustExec(t, db, `UPDATE entries SET idx = 2 WHERE idx = 7`)
				mustExec(t, db, `UPDATE entries SET idx = 7 WHERE idx = -2`)
			},
			wantIndex: 2, wantKind: ledger.TamperLeafMismatch, openFails: true,
		},
		{
			name: "e2: row replaced by a copy of another row (replay)",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE entries SET
					data = (SELECT data FROM entries WHERE idx = 3),
					leaf_hash = (SELECT leaf_hash FROM entries WHERE idx = 3) WHERE idx = 4`)
			},
			wantIndex: 4, wantKind: ledger.TamperLeafMismatch, openFails: true,
		},
		{
			name: "f: tail deleted",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `DELETE FROM entries WHERE idx >= 6`)
			},
			wantIndex: 6, wantKind: ledger.TamperTruncated, openFails: true,
		},
		{
			name: "g: checkpoint signature corrupted",
			tamper: func(t *testing.T, db *sql.DB) {
				var msg []byte
				if err := db.QueryRow(`SELECT note FROM checkpoints WHERE size = 5`).Scan(&msg); err != nil {
					t.Fatal(err)
				}
				mustExec(t, db, `UPDATE checkpoints SET note = ? WHERE size = 5`, flipSig(msg))
			},
			wantIndex: 4, wantKind: ledger.TamperBadSignature, // checkpoint 5 covers [4, 5)
		},
		{
			name: "g2: newest checkpoint signature corrupted",
			tamper: func(t *testing.T, db *sql.DB) {
				var msg []byte
				if err := db.QueryRow(`SELECT note FROM checkpoints WHERE size = 14`).Scan(&msg); err != nil {
					t.Fatal(err)
				}
				mustExec(t, db, `UPDATE checkpoints SET note = ? WHERE size = 14`, flipSig(msg))
			},
			wantIndex: 10, wantKind: ledger.TamperBadSignature, openFails: true,
		},
		{
			name: "g3: checkpoint root column disagrees with its note",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE checkpoints SET root = zeroblob(32) WHERE size = 8`)
			},
			wantIndex: 7, wantKind: ledger.TamperCheckpoint,
		},
		{
			name: "g4: checkpoint replaced by one signed by another key",
			tamper: func(t *testing.T, db *sql.DB) {
				var msg string
				if err := db.QueryRow(`SELECT note FROM checkpoints WHERE size = 9`).Scan(&msg); err != nil {
					t.Fatal(err)
				}
				// Re-sign the same body with another key of the same name.
				other, _ := testKeys(t, testOrigin, "attacker")
				body := msg[:strings.Index(msg, "\n\n")+1]
				cp := signWith(t, other, body)
				mustExec(t, db, `UPDATE checkpoints SET note = ? WHERE size = 9`, cp)
			},
			wantIndex: 8, wantKind: ledger.TamperBadSignature,
		},
		{
			name: "earliest problem wins",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE entries SET data = 'evil' WHERE idx = 8`)
				mustExec(t, db, `DELETE FROM entries WHERE idx = 6`)
			},
			wantIndex: 6, wantKind: ledger.TamperMissing, openFails: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path, _ := buildTamperLog(t)
			if _, err := ledger.Verify(ctx, path, testVerifier(t), nil); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			db := rawDB(t, path)
			tc.tamper(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			_, err := ledger.Verify(ctx, path, testVerifier(t), nil)
			var te *ledger.TamperError
			if !errors.As(err, &te) {
				t.Fatalf("Verify = %v, want *TamperError", err)
			}
			if te.Index != tc.wantIndex || te.Kind != tc.wantKind {
				t.Fatalf("Verify = index %d kind %q (%v), want index %d kind %q", te.Index, te.Kind, err, tc.wantIndex, tc.wantKind)
			}
			if !errors.Is(err, ledger.ErrTampered) {
				t.Fatal("TamperError does not match ErrTampered")
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("index %d", tc.wantIndex)) {
				t.Fatalf("error %q does not name index %d", err, tc.wantIndex)
			}

			l, err := ledger.Open(ctx, path, testOptions(t))
			if tc.openFails {
				if err == nil {
					l.Close()
					t.Fatal("Open accepted the tampered database")
				}
				if !errors.As(err, &te) {
					t.Fatalf("Open = %v, want a *TamperError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if tc.wantKind == ledger.TamperLeafMismatch {
				// Open does not read data, but Read and Scan check every row.
				_, err := l.Read(ctx, tc.wantIndex)
				if !errors.As(err, &te) || te.Index != tc.wantIndex {
					t.Fatalf("Read(%d) = %v, want *TamperError", tc.wantIndex, err)
				}
				err = l.Scan(ctx, 0, l.Size(), func(uint64, []byte) error { return nil })
				if !errors.As(err, &te) || te.Index != tc.wantIndex {
					t.Fatalf("Scan = %v, want *TamperError at %d", err, tc.wantIndex)
				}
			}
		})
	}
}

func signWith(t *testing.T, s note.Signer, body string) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestVerifyRollback documents the limit of offline verification: deleting
// the newest rows together with every checkpoint covering them leaves a
// genuine older log, which only a checkpoint remembered elsewhere exposes.
func TestVerifyRollback(t *testing.T) {
	ctx := context.Background()
	path, newest := buildTamperLog(t)
	db := rawDB(t, path)
	mustExec(t, db, `DELETE FROM entries WHERE idx >= 7`)
	mustExec(t, db, `DELETE FROM checkpoints WHERE size > 7`)
	db.Close()

	rep, err := ledger.Verify(ctx, path, testVerifier(t), nil)
	if err != nil {
		t.Fatalf("Verify of a consistent rollback: %v (it is indistinguishable from an older log)", err)
	}
	if rep.Entries != 7 {
		t.Fatalf("report %+v, want 7 entries", rep)
	}
	_, err = ledger.VerifyAgainst(ctx, path, testVerifier(t), newest, nil)
	var te *ledger.TamperError
	if !errors.As(err, &te) || te.Index != 7 || te.Kind != ledger.TamperTruncated {
		t.Fatalf("VerifyAgainst = %v, want truncation at 7", err)
	}
}

func TestVerifyProgressAndReport(t *testing.T) {
	ctx := context.Background()
	path, cp := buildTamperLog(t)
	var calls int
	var last [2]uint64
	rep, err := ledger.Verify(ctx, path, testVerifier(t), func(done, total uint64) {
		calls++
		last = [2]uint64{done, total}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 14 || rep.Checkpoints != 12 || rep.Root != cp.Root {
		t.Fatalf("report %+v, want 14 entries, 12 checkpoints, root %x", rep, cp.Root)
	}
	if calls == 0 || last != [2]uint64{14, 14} {
		t.Fatalf("progress called %d times, last %v", calls, last)
	}
	if _, err := ledger.VerifyAgainst(ctx, path, testVerifier(t), cp, nil); err != nil {
		t.Fatalf("VerifyAgainst its own newest checkpoint: %v", err)
	}
	_, otherV := testKeys(t, "other.log", "x")
	if _, err := ledger.Verify(ctx, path, otherV, nil); err == nil {
		t.Fatal("Verify accepted a verifier for another log")
	}
	if _, err := ledger.Verify(ctx, filepath.Join(t.TempDir(), "missing.db"), testVerifier(t), nil); err == nil {
		t.Fatal("Verify of a missing file succeeded")
	}
}
