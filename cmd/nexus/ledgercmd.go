package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
)

func cmdLedger(e *env) *cobra.Command {
	c := &cobra.Command{Use: "ledger", Short: "Verify the ledger offline; read entries and receipts"}
	var vkeyFile, trustedFile string
	verify := &cobra.Command{
		Use:   "verify --data DIR",
		Short: "Offline: recompute the Merkle tree and check every checkpoint; exit 1 naming the first bad index",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := e.dataDir()
			if err != nil {
				return err
			}
			dir, err := datadir.Open(root)
			if err != nil {
				return err
			}
			v, err := e.verifier(vkeyFile)
			if err != nil {
				return err
			}
			start := time.Now()
			prog := newProgress(os.Stderr, "verify")
			var rep ledger.Report
			if trustedFile == "" {
				rep, err = ledger.Verify(ctxOf(cmd), dir.Ledger(), v, prog.update)
			} else {
				var kept []byte
				if kept, err = os.ReadFile(trustedFile); err != nil {
					return err
				}
				trusted, perr := ledger.ParseCheckpoint(kept, v)
				if perr != nil {
					return fmt.Errorf("--checkpoint %s: %w", trustedFile, perr)
				}
				rep, err = ledger.VerifyAgainst(ctxOf(cmd), dir.Ledger(), v, trusted, prog.update)
			}
			prog.done()
			var te *ledger.TamperError
			if errors.As(err, &te) {
				e.print(map[string]any{"ok": false, "index": te.Index, "error": te.Error()}, func(w io.Writer) {
					fmt.Fprintf(w, "FAILED: %v\n", te)
				})
				return exitError{code: 1, err: fmt.Errorf("ledger verification failed at index %d", te.Index)}
			}
			if err != nil {
				return err
			}
			return e.print(map[string]any{"ok": true, "entries": rep.Entries, "checkpoints": rep.Checkpoints, "root": fmt.Sprintf("%x", rep.Root)},
				func(w io.Writer) {
					fmt.Fprintf(w, "ok: %d entries, %d checkpoints verified, root %x (%s)\n", rep.Entries, rep.Checkpoints, rep.Root, time.Since(start).Round(time.Millisecond))
				})
		},
	}
	verify.Flags().StringVar(&vkeyFile, "vkey", "", "the platform's verifier key file (default DIR/platform/ledger.vkey); pin your own copy")
	verify.Flags().StringVar(&trustedFile, "checkpoint", "", "a checkpoint kept outside the host (`nexus ledger checkpoint --out`): the ledger must still contain it, so a rollback is caught")

	var n uint64
	var scope string
	tail := &cobra.Command{
		Use:   "tail [-n N] [--scope S]",
		Short: "Show the newest entries the caller may see (whole inside its scope, headers only for admins outside it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.Status(ctxOf(cmd))
			if err != nil {
				return err
			}
			start := uint64(0)
			if st.Ledger.Size > n {
				start = st.Ledger.Size - n
			}
			var out []api.Entry
			if err := e.query(cmd, api.QueryEntries, scope, api.EntriesParams{Start: start, Count: n}, &out); err != nil {
				return err
			}
			return e.print(out, func(w io.Writer) {
				rows := [][]string{{"INDEX", "TIME", "TYPE", "SCOPE", "KIND", "GATE"}}
				for _, en := range out {
					rows = append(rows, []string{strconv.FormatUint(en.Index, 10), en.Time, en.Type, en.Scope, en.Kind, en.Gate})
				}
				printLines(w, rows)
			})
		},
	}
	tail.Flags().Uint64VarP(&n, "n", "n", 20, "number of entries")
	tail.Flags().StringVar(&scope, "scope", identity.ScopePlatform, "read inside this scope (an IMVU owner passes its IMVU)")

	var pscope string
	proof := &cobra.Command{
		Use:   "proof INDEX [--scope S]",
		Short: "Print the receipt of an entry: index, inclusion proof and signed checkpoint (c2sp tlog-proof)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			idx, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("INDEX %q: want a whole number", args[0])
			}
			var ans api.ReceiptAnswer
			if err := e.query(cmd, api.QueryReceipt, pscope, api.ReceiptParams{Index: idx}, &ans); err != nil {
				return err
			}
			return e.print(ans, func(w io.Writer) { fmt.Fprint(w, ans.Proof) })
		},
	}
	proof.Flags().StringVar(&pscope, "scope", identity.ScopePlatform, "the entry's scope")
	var cpOut string
	checkpoint := &cobra.Command{
		Use:   "checkpoint [--out FILE]",
		Short: "Fetch the newest signed checkpoint, check its signature, and keep it (to prove later the log only grew)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			note, err := c.Checkpoint(ctxOf(cmd))
			if err != nil {
				return err
			}
			v, err := e.verifier(vkeyFile)
			if err != nil {
				return err
			}
			cp, err := ledger.ParseCheckpoint(note, v)
			if err != nil {
				return err
			}
			if cpOut != "" {
				if err := datadir.WriteFile(cpOut, note, 0o644); err != nil {
					return err
				}
			}
			return e.print(map[string]any{"size": cp.Size, "root": fmt.Sprintf("%x", cp.Root), "note": string(note)}, func(w io.Writer) {
				fmt.Fprint(w, string(note))
			})
		},
	}
	checkpoint.Flags().StringVar(&cpOut, "out", "", "also write the checkpoint to FILE")
	checkpoint.Flags().StringVar(&vkeyFile, "vkey", "", "the platform's verifier key file (default DIR/platform/ledger.vkey)")
	consistency := &cobra.Command{
		Use:   "consistency FILE",
		Short: "Prove the newest checkpoint extends the one kept in FILE: the platform never rewrote history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := e.verifier(vkeyFile)
			if err != nil {
				return err
			}
			kept, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			older, err := ledger.ParseCheckpoint(kept, v)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			cons, err := c.Consistency(ctxOf(cmd), older.Size)
			if err != nil {
				return err
			}
			newer, err := ledger.ParseCheckpoint([]byte(cons.Checkpoint), v)
			if err != nil {
				return err
			}
			proof := make([][32]byte, len(cons.Proof))
			for i, p := range cons.Proof {
				if len(p) != 32 {
					return fmt.Errorf("proof hash %d has %d bytes", i, len(p))
				}
				copy(proof[i][:], p)
			}
			if err := ledger.VerifyConsistency(older, newer, proof); err != nil {
				return exitError{code: 1, err: fmt.Errorf("the log at size %d does not extend the kept checkpoint at size %d: %w", newer.Size, older.Size, err)}
			}
			return e.print(map[string]any{"ok": true, "old": older.Size, "new": newer.Size}, func(w io.Writer) {
				fmt.Fprintf(w, "ok: the log grew from %d to %d entries without rewriting any\n", older.Size, newer.Size)
			})
		},
	}
	consistency.Flags().StringVar(&vkeyFile, "vkey", "", "the platform's verifier key file (default DIR/platform/ledger.vkey)")
	c.AddCommand(verify, tail, proof, checkpoint, consistency)
	return c
}

// progress draws a one-line progress report on a terminal, at most ten times a
// second.
type progress struct {
	w     io.Writer
	what  string
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, what string) *progress { return &progress{w: w, what: what} }

// isTerminal reports whether w is a character device: progress is drawn only
// there, so logs and pipes stay clean.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(done, total uint64) {
	if !isTerminal(p.w) {
		return
	}
	if time.Since(p.last) < 100*time.Millisecond && done != total {
		return
	}
	p.last = time.Now()
	pct := uint64(100)
	if total > 0 {
		pct = done * 100 / total
	}
	fmt.Fprintf(p.w, "\r%s: %d/%d (%d%%)", p.what, done, total, pct)
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

// verifier loads the platform's checkpoint verifier key: from file, or the data
// dir's copy.
func (e *env) verifier(file string) (note.Verifier, error) {
	if file == "" {
		root, err := e.dataDir()
		if err != nil {
			return nil, fmt.Errorf("no verifier key: pass --vkey or --data")
		}
		dir, err := datadir.Open(root)
		if err != nil {
			return nil, err
		}
		file = dir.VerifierKey()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("verifier key %s: %w", file, err)
	}
	return v, nil
}
