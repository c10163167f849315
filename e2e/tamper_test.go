package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite" // the ledger's SQLite driver, to edit ledger.db as an attacker would

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/ledger"
)

// populated makes a data dir with an IMVU, usage and a few denials, every
// entry appended on its own (one client, one request at a time, so each entry
// has its own checkpoint), and stops its daemon cleanly.
func populated(t *testing.T) (*node, uint64) {
	t.Helper()
	n := newNode(t, "")
	n.create(t, "imvu042")
	for i := uint64(1); i <= 6; i++ {
		n.must(t, n.meters["compute"], handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", i*100, time.Now()))
	}
	env := n.envelope(t, "imvu042")
	env.MemoryBytes /= 2
	n.expectDenial(t, n.send(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: env}), "G06")
	n.must(t, n.meters["dns"], handshake.KindUsage, "imvu042", usage("imvu042", "dns", "dns_queries", 50, time.Now()))
	size := n.size(t)
	n.stop(t)
	if out, errOut, code := n.cli(t, "ledger", "verify"); code != 0 {
		t.Fatalf("ledger verify of the untouched ledger: exit %d\n%s%s", code, out, errOut)
	}
	return n, size
}

// copyDir copies the regular files of a data dir (the socket is left behind).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// clone copies n's data dir into a fresh folder and returns a node for it
// (not started).
func (n *node) clone(t *testing.T) *node {
	t.Helper()
	c := *n
	c.dir = filepath.Join(tempDir(t), "data")
	copyDir(t, n.dir, c.dir)
	var err error
	if c.dd, err = datadir.Open(c.dir); err != nil {
		t.Fatal(err)
	}
	if c.client, err = api.Dial("unix:" + c.dd.Socket()); err != nil {
		t.Fatal(err)
	}
	c.proc = nil
	t.Cleanup(func() {
		if t.Failed() && c.proc != nil && c.proc.log.String() != "" {
			t.Logf("nexus serve log (%s):\n%s", c.dir, tail(c.proc.log.String(), 4000))
		}
		c.stop(t)
	})
	return &c
}

// sqlEdit opens a ledger.db as an attacker with write access to the file would:
// drops the append-only triggers and runs stmts in one transaction.
func sqlEdit(t *testing.T, path string, stmts ...func(tx *sql.Tx) error) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, trg := range []string{"entries_no_update", "entries_no_delete", "checkpoints_no_update", "checkpoints_no_delete"} {
		if _, err := tx.Exec("DROP TRIGGER IF EXISTS " + trg); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stmts {
		if err := s(tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func exec1(q string, args ...any) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		res, err := tx.Exec(q, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return fmt.Errorf("%s %v: %d rows affected, want 1", q, args, k)
		}
		return nil
	}
}

func readRow(t *testing.T, path string, idx uint64) (data, leaf []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT data, leaf_hash FROM entries WHERE idx = ?`, idx).Scan(&data, &leaf); err != nil {
		t.Fatalf("read entry %d: %v", idx, err)
	}
	return data, leaf
}

// TestLedgerTamper: rows of ledger.db edited around the daemon are found by
// `nexus ledger verify` (exit 1) and by ledger.Verify, naming the first bad
// index. Each case edits a fresh copy of one populated data dir.
func TestLedgerTamper(t *testing.T) {
	t.Parallel()
	n, size := populated(t)
	if size < 15 {
		t.Fatalf("populated ledger has %d entries; the cases need at least 15", size)
	}
	cases := []struct {
		name  string
		index uint64 // the index verification must name
		// kinds are the findings that name it correctly: a row whose stored
		// leaf hash no longer matches is a leaf mismatch, or a root mismatch
		// when the verifier checks rows against the signed tree instead.
		kinds []ledger.TamperKind
		edit  func(t *testing.T, db string)
	}{
		{
			name: "one byte of an entry's data changed", index: 5, kinds: []ledger.TamperKind{ledger.TamperLeafMismatch, ledger.TamperRootMismatch},
			edit: func(t *testing.T, db string) {
				data, _ := readRow(t, db, 5)
				i := strings.Index(string(data), `"cpu_ms"`)
				if i < 0 {
					i = len(data) / 2
				}
				data[i+1] ^= 0x01
				sqlEdit(t, db, exec1(`UPDATE entries SET data = ? WHERE idx = ?`, data, 5))
			},
		},
		{
			name: "a middle row deleted", index: 7, kinds: []ledger.TamperKind{ledger.TamperMissing},
			edit: func(t *testing.T, db string) {
				sqlEdit(t, db, exec1(`DELETE FROM entries WHERE idx = ?`, 7))
			},
		},
		{
			name: "two rows swapped, data and leaf hash", index: 3, kinds: []ledger.TamperKind{ledger.TamperLeafMismatch, ledger.TamperRootMismatch},
			edit: func(t *testing.T, db string) {
				d3, l3 := readRow(t, db, 3)
				d9, l9 := readRow(t, db, 9)
				sqlEdit(t, db,
					exec1(`UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?`, d9, l9, 3),
					exec1(`UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?`, d3, l3, 9))
			},
		},
		{
			name: "a row appended after the last entry", index: size, kinds: []ledger.TamperKind{ledger.TamperUnsignedTail},
			edit: func(t *testing.T, db string) {
				data := []byte(`{"type":"action","scope":"imvu042","kind":"envelope.resize"}`)
				leaf := ledger.LeafHash(size, data)
				sqlEdit(t, db, exec1(`INSERT INTO entries (idx, data, leaf_hash) VALUES (?, ?, ?)`, size, data, leaf[:]))
			},
		},
		{
			name: "a row inserted in the middle, later rows shifted up", index: 6, kinds: []ledger.TamperKind{ledger.TamperRootMismatch},
			edit: func(t *testing.T, db string) {
				var stmts []func(*sql.Tx) error
				for i := size - 1; i >= 6; i-- {
					stmts = append(stmts, exec1(`UPDATE entries SET idx = ? WHERE idx = ?`, i+1, i))
				}
				data := []byte(`{"type":"effect","scope":"imvu042","kind":"envelope.resize"}`)
				leaf := ledger.LeafHash(6, data) // a self-consistent row: only the signed tree can tell
				stmts = append(stmts, exec1(`INSERT INTO entries (idx, data, leaf_hash) VALUES (?, ?, ?)`, 6, data, leaf[:]))
				sqlEdit(t, db, stmts...)
			},
		},
		{
			name: "an entry's data and leaf hash rewritten consistently", index: 10, kinds: []ledger.TamperKind{ledger.TamperRootMismatch},
			edit: func(t *testing.T, db string) {
				data, _ := readRow(t, db, 10)
				data = []byte(strings.Replace(string(data), `"imvu042"`, `"imvu043"`, 1))
				leaf := ledger.LeafHash(10, data)
				sqlEdit(t, db, exec1(`UPDATE entries SET data = ?, leaf_hash = ? WHERE idx = ?`, data, leaf[:], 10))
			},
		},
		{
			name: "the newest rows truncated", index: size - 2, kinds: []ledger.TamperKind{ledger.TamperTruncated},
			edit: func(t *testing.T, db string) {
				sqlEdit(t, db, exec1(`DELETE FROM entries WHERE idx = ?`, size-1), exec1(`DELETE FROM entries WHERE idx = ?`, size-2))
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := n.clone(t)
			c.edit(t, cp.dd.Ledger())
			out, errOut, code := cp.cli(t, "ledger", "verify")
			if code != 1 {
				t.Fatalf("ledger verify: exit %d; want 1\n%s%s", code, out, errOut)
			}
			want := fmt.Sprintf("at index %d", c.index)
			if !strings.Contains(out, want) || !strings.Contains(errOut, want) {
				t.Fatalf("ledger verify does not name index %d:\n%s%s", c.index, out, errOut)
			}
			// The same through the package API, with the kind of tampering.
			_, err := verifyOffline(cp)
			var te *ledger.TamperError
			if !errors.As(err, &te) || te.Index != c.index || !slices.Contains(c.kinds, te.Kind) {
				t.Fatalf("ledger.Verify: %v; want a TamperError (%v) at index %d", err, c.kinds, c.index)
			}
		})
	}

	t.Run("a daemon does not serve an edited ledger", func(t *testing.T) {
		cp := n.clone(t)
		data, _ := readRow(t, cp.dd.Ledger(), 5)
		data[len(data)/2] ^= 0x01
		sqlEdit(t, cp.dd.Ledger(), exec1(`UPDATE entries SET data = ? WHERE idx = ?`, data, 5))
		errOut, err := serveUntilExit(t, cp)
		if err == nil {
			t.Fatalf("nexus serve started on an edited ledger")
		}
		if !strings.Contains(errOut, "at index 5") {
			t.Fatalf("nexus serve refused, but does not name the entry:\n%s", errOut)
		}
	})
}

// serveUntilExit starts `nexus serve` on a data dir that must not start and
// waits (10 s at most) for it to exit.
func serveUntilExit(t *testing.T, n *node) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := execCommand(ctx, nexusBin, "serve", "--data", n.dir).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("nexus serve kept running on a tampered data dir:\n%s", out)
	}
	return string(out), err
}

// TestStateFileTamper: a state file edited (or removed) by hand while the
// daemon is down is restored from the ledger at the next start, and the ledger
// records the drift in the file's scope; an untouched restart records none.
func TestStateFileTamper(t *testing.T) {
	t.Parallel()
	n, _ := populated(t)
	imvuFile := func(c *node) string { return filepath.Join(c.dir, "imvu", "imvu042", "state.json") }
	platformFile := func(c *node) string { return filepath.Join(c.dd.Platform(), "state.json") }
	orig := map[string][]byte{}
	for scope, f := range map[string]func(*node) string{"imvu042": imvuFile, "platform": platformFile} {
		b, err := os.ReadFile(f(n))
		if err != nil {
			t.Fatal(err)
		}
		orig[scope] = b
	}
	// editJSON rewrites one number in a state file, as an operator with an
	// editor would.
	editJSON := func(scope string, path ...string) func(t *testing.T, file string) {
		return func(t *testing.T, file string) {
			var m map[string]any
			if err := json.Unmarshal(orig[scope], &m); err != nil {
				t.Fatal(err)
			}
			obj := m
			for _, k := range path[:len(path)-1] {
				obj = obj[k].(map[string]any)
			}
			obj[path[len(path)-1]] = 9_999_000
			b, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name   string
		scope  string // whose file is edited
		edit   func(t *testing.T, file string)
		reason string // in the drift entry; "" for no drift
	}{
		{name: "untouched restart", scope: "imvu042"},
		{name: "imvu042's envelope grown by hand", scope: "imvu042", reason: "changed outside the engine",
			edit: editJSON("imvu042", "envelope", "cpu_millicores")},
		{name: "imvu042's usage counter rolled back by hand", scope: "imvu042", reason: "changed outside the engine",
			edit: func(t *testing.T, file string) {
				b := strings.Replace(string(orig["imvu042"]), `"value": 600`, `"value": 100`, 1)
				if b == string(orig["imvu042"]) {
					t.Fatalf("no cpu_ms counter at 600 in the state file:\n%s", orig["imvu042"])
				}
				if err := os.WriteFile(file, []byte(b), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "imvu042's state file deleted", scope: "imvu042", reason: "missing",
			edit: func(t *testing.T, file string) {
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "platform capacity raised by hand", scope: "platform", reason: "changed outside the engine",
			edit: editJSON("platform", "capacity", "cpu_millicores")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := n.clone(t)
			file := imvuFile(cp)
			if c.scope == "platform" {
				file = platformFile(cp)
			}
			if c.edit != nil {
				c.edit(t, file)
			}
			rep, err := verifyOffline(cp) // the size before the restart
			if err != nil {
				t.Fatal(err)
			}
			cp.start(t)
			for scope, f := range map[string]string{"imvu042": imvuFile(cp), "platform": platformFile(cp)} {
				got, err := os.ReadFile(f)
				if err != nil || string(got) != string(orig[scope]) {
					t.Fatalf("%s state file after the restart differs from the ledger's state (%v)", scope, err)
				}
			}
			m := cp.imvu(t, "imvu042")
			if m.Envelope.CPUMilli != 1000 || m.Counters["cpu_ms/compute"].Value != 600 {
				t.Fatalf("imvu042 after the restart: cpu %dm, cpu_ms counter %d; want the ledger's 1000m and 600",
					m.Envelope.CPUMilli, m.Counters["cpu_ms/compute"].Value)
			}
			drifts := map[string][]ledgerRecord{}
			for _, scope := range []string{"imvu042", "platform"} {
				key, readScope := cp.readerOf(scope)
				for _, e := range cp.entries(t, key, readScope, rep.Entries) {
					if e.Type == "drift" && e.Scope == scope {
						drifts[scope] = append(drifts[scope], parseRecord(t, e))
					}
				}
			}
			for _, scope := range []string{"imvu042", "platform"} {
				d := drifts[scope]
				switch {
				case scope != c.scope || c.reason == "":
					if len(d) > 0 {
						t.Fatalf("drift recorded on %s, whose file was not touched: %+v", scope, d)
					}
				case len(d) != 1 || !strings.Contains(d[0].Reason, c.reason):
					t.Fatalf("drift entries on %s after the restart: %+v; want one saying %q", scope, d, c.reason)
				}
			}
			if c.reason != "" && c.scope == "imvu042" {
				// The owner sees it with the CLI too.
				out := cp.cliOK(t, "ledger", "tail", "-n", "5", "--scope", "imvu042", "--key", cp.keyFile("imvu042"), "-o", "json")
				if !strings.Contains(out, `"drift"`) {
					t.Fatalf("ledger tail as imvu042's owner shows no drift:\n%s", out)
				}
			}
			if out, errOut, code := cp.cli(t, "ledger", "verify"); code != 0 {
				t.Fatalf("ledger verify after the restart: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
}

func noteVerifier(vkey string) (note.Verifier, error) { return note.NewVerifier(vkey) }

func execCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// verifyOffline runs ledger.Verify on a stopped node's ledger.
func verifyOffline(n *node) (ledger.Report, error) {
	vb, err := os.ReadFile(n.dd.VerifierKey())
	if err != nil {
		return ledger.Report{}, err
	}
	v, err := noteVerifier(strings.TrimSpace(string(vb)))
	if err != nil {
		return ledger.Report{}, err
	}
	return ledger.Verify(context.Background(), n.dd.Ledger(), v, nil)
}
