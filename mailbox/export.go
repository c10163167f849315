package mailbox

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/handshake"
)

// Files exports and imports the mail an IMVU keeps on disk: each mailbox's
// Maildir under Root(imvu)/<address>/ goes to mail/<address>/ in the bundle.
// Root returns "" where there is no data on disk (an offline verifier): then
// nothing is written, and the bundle's mail is checked by its manifest hashes.
type Files struct {
	Root func(imvu string) (string, error)
}

// Export implements handshake.Exporter.
func (f Files) Export(_ context.Context, _ *handshake.State, m *handshake.IMVU, dir string) error {
	if f.Root == nil {
		return nil
	}
	root, err := f.Root(m.ID)
	if err != nil || root == "" {
		return err
	}
	for _, addr := range Of(m).Addresses() {
		src := filepath.Join(root, addr)
		if _, err := os.Stat(src); err != nil {
			continue // never received mail
		}
		if err := copyTree(src, filepath.Join(dir, "mail", addr)); err != nil {
			return fmt.Errorf("export mailbox %s: %w", addr, err)
		}
	}
	return nil
}

// Import implements handshake.Importer: it restores each exported Maildir.
func (f Files) Import(_ context.Context, _ *handshake.State, m *handshake.IMVU, dir string) error {
	if f.Root == nil {
		return nil
	}
	root, err := f.Root(m.ID)
	if err != nil || root == "" {
		return err
	}
	for _, addr := range Of(m).Addresses() {
		src := filepath.Join(dir, "mail", addr)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := copyTree(src, filepath.Join(root, addr)); err != nil {
			return fmt.Errorf("import mailbox %s: %w", addr, err)
		}
	}
	return nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
