// Package datadir owns the layout of a Nexus data directory and its config file:
//
//	DIR/nexus.toml             configuration
//	DIR/nexus.sock             the API's unix socket
//	DIR/platform/              keys, ledger.db, the platform state file
//	DIR/imvu/<ID>/             one IMVU's state: nothing of another IMVU lives here
//
// It writes files atomically (temp file, fsync, rename, fsync of the folder) so a
// crash leaves the old or the new file, never half of one. It must never decide
// what to write: state comes from the handshake engine.
package datadir

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/nexus-core/nexus/identity"
)

// Dir is one data directory.
type Dir struct{ root string }

// Open returns the data directory at root, which must exist.
func Open(root string) (Dir, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return Dir{}, fmt.Errorf("data dir %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return Dir{}, fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return Dir{}, fmt.Errorf("data dir %s is not a directory", abs)
	}
	return Dir{root: abs}, nil
}

// Root is the directory's absolute path.
func (d Dir) Root() string { return d.root }

// Paths of the files in a data directory.
func (d Dir) Config() string      { return filepath.Join(d.root, "nexus.toml") }
func (d Dir) Socket() string      { return filepath.Join(d.root, "nexus.sock") }
func (d Dir) Platform() string    { return filepath.Join(d.root, "platform") }
func (d Dir) Ledger() string      { return filepath.Join(d.root, "platform", "ledger.db") }
func (d Dir) LedgerKey() string   { return filepath.Join(d.root, "platform", "ledger.key") }
func (d Dir) VerifierKey() string { return filepath.Join(d.root, "platform", "ledger.vkey") }
func (d Dir) RootKey() string     { return filepath.Join(d.root, "platform", "root.key") }
func (d Dir) AdminKey() string    { return filepath.Join(d.root, "platform", "admin.key") }
func (d Dir) MeterKey(name string) string {
	return filepath.Join(d.root, "platform", "meter-"+name+".key")
}

var idRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// IMVU is the folder of one IMVU. id is checked so no id can name a path outside.
func (d Dir) IMVU(id string) (string, error) {
	if !idRE.MatchString(id) {
		return "", fmt.Errorf("IMVU id %q: want a lowercase letter, then up to 62 of a-z 0-9 -", id)
	}
	return filepath.Join(d.root, "imvu", id), nil
}

// WriteIMVU implements handshake.Store.
func (d Dir) WriteIMVU(id string, state []byte) error {
	dir, err := d.IMVU(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state of %s: %w", id, err)
	}
	return WriteFile(filepath.Join(dir, "state.json"), state, 0o600)
}

// ReadIMVU implements handshake.Store.
func (d Dir) ReadIMVU(id string) ([]byte, error) {
	dir, err := d.IMVU(id)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, "state.json"))
}

// WritePlatform implements handshake.Store.
func (d Dir) WritePlatform(state []byte) error {
	return WriteFile(filepath.Join(d.Platform(), "state.json"), state, 0o600)
}

// ReadPlatform implements handshake.Store.
func (d Dir) ReadPlatform() ([]byte, error) {
	return os.ReadFile(filepath.Join(d.Platform(), "state.json"))
}

// WriteFile replaces path with data atomically and durably.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(perm)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return SyncDir(dir)
}

// SyncDir makes a folder's entries (a rename into it) durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadKey loads one of the platform's keys.
func ReadKey(path string) (ed25519.PrivateKey, error) {
	k, err := identity.ReadKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (is this a data dir made by `nexus init`?)", err)
	}
	return k, err
}
