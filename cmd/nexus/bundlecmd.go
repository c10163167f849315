package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/bundle"
)

func cmdBundle(e *env) *cobra.Command {
	c := &cobra.Command{Use: "bundle", Short: "Check exit bundles offline"}
	var vkey string
	verify := &cobra.Command{
		Use:   "verify bundle.tar [--vkey FILE]",
		Short: "Offline, trusting no platform: check every file, proof and signature, and replay the ledger entries",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pinned := ""
			if vkey != "" {
				b, err := os.ReadFile(vkey)
				if err != nil {
					return err
				}
				pinned = strings.TrimSpace(string(b))
			}
			rep, err := verifyBundleFile(ctxOf(cmd), args[0], pinned)
			if err != nil {
				e.print(map[string]any{"ok": false, "error": err.Error()}, func(w io.Writer) { fmt.Fprintf(w, "FAILED: %v\n", err) })
				return exitError{code: 1, err: fmt.Errorf("bundle %s does not verify", args[0])}
			}
			return e.print(rep, func(w io.Writer) {
				fmt.Fprintf(w, "ok: %s owned by %s\n%d ledger entries proven against a checkpoint of %d, %d files, domains %s\nstate %s\n",
					rep.IMVU, rep.Owner, rep.Entries, rep.TreeSize, rep.Files, strings.Join(rep.Domains, ", "), rep.State)
			})
		},
	}
	verify.Flags().StringVar(&vkey, "vkey", "", "the checkpoint verifier key you pinned at creation (the offer's verifier_key, or the platform's DATA/platform/ledger.vkey)")
	c.AddCommand(verify)
	return c
}

// verifyBundleFile opens and verifies a bundle with every service's kinds.
func verifyBundleFile(ctx context.Context, path, pinned string) (*bundle.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := bundle.Open(f)
	if err != nil {
		return nil, err
	}
	return bundle.Verify(ctx, b, bundle.Options{VerifierKey: pinned, Register: serviceKinds()})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cmdImport is `nexus imvu import`: restore an exit bundle on this node.
func cmdImport(e *env) *cobra.Command {
	var vkey string
	c := &cobra.Command{
		Use:   "import bundle.tar --key OWNER_KEY (against this node: --data DIR or --api)",
		Short: "Restore an IMVU from its exit bundle on this node: a new handshake, then its members, domains and zones",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pinned := ""
			if vkey != "" {
				b, err := os.ReadFile(vkey)
				if err != nil {
					return err
				}
				pinned = strings.TrimSpace(string(b))
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			b, err := bundle.Open(f)
			f.Close()
			if err != nil {
				return err
			}
			if _, err := bundle.Verify(ctxOf(cmd), b, bundle.Options{VerifierKey: pinned, Register: serviceKinds()}); err != nil {
				return fmt.Errorf("refusing to import: %w", err)
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			steps, err := importSteps(e, cmd, b, k)
			if err != nil {
				return err
			}
			prog := newProgress(os.Stderr, "import")
			for i, s := range steps {
				prog.update(uint64(i), uint64(len(steps)))
				if err := s.run(); err != nil {
					prog.done()
					return fmt.Errorf("import %s: %s: %w", b.Manifest.IMVU, s.what, err)
				}
			}
			prog.update(uint64(len(steps)), uint64(len(steps)))
			prog.done()
			return e.print(map[string]any{"imvu": b.Manifest.IMVU, "steps": len(steps)}, func(w io.Writer) {
				fmt.Fprintf(w, "imported %s: %d actions through this node's engine\n", b.Manifest.IMVU, len(steps))
			})
		},
	}
	c.Flags().StringVar(&vkey, "vkey", "", "the checkpoint verifier key of the platform the bundle came from")
	return c
}
