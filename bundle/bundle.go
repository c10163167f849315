// Package bundle owns the exit bundle: one tar file that carries everything an
// IMVU owns, with the ledger entries that prove it, and the offline check of it.
//
// A bundle holds MANIFEST.json (every file's SHA-256, the IMVU, its owner, the
// platform key and checkpoint verifier key, the signed checkpoint), MANIFEST.sig
// (the platform's signature of the manifest), ledger/entries.jsonl (the genesis
// entry and every entry in the IMVU's scope, each with its inclusion proof),
// state.json, zones/*.zone, and transfer.json (the platform's signed hand-over
// of the IMVU's domains to the owner's key).
//
// Verify needs no daemon and trusts nothing but the keys: every proof is
// checked against the checkpoint, the manifest against the files, and the state
// files against a replay of the entries. It must never contact the platform.
package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// Version is the bundle format version.
const Version = 1

// Names of the fixed files in a bundle.
const (
	ManifestFile  = "MANIFEST.json"
	SignatureFile = "MANIFEST.sig"
	EntriesFile   = "ledger/entries.jsonl"
	StateFile     = "state.json"
	TransferFile  = "transfer.json"
)

// maxFile bounds one file read from a bundle, so a hostile bundle cannot
// exhaust memory.
const maxFile = 1 << 30

// Manifest describes a bundle.
type Manifest struct {
	Version     int                `json:"version"`
	IMVU        string             `json:"imvu"`
	Owner       identity.PublicKey `json:"owner"`
	Platform    identity.PublicKey `json:"platform"`
	VerifierKey string             `json:"verifier_key"`
	Checkpoint  string             `json:"checkpoint"`
	Created     time.Time          `json:"created"`
	Files       map[string]string  `json:"files"` // path -> hex SHA-256
}

// Entry is one ledger entry with its inclusion proof against the manifest's
// checkpoint.
type Entry struct {
	Index uint64   `json:"index"`
	Data  []byte   `json:"data"`
	Proof [][]byte `json:"proof"`
}

// Transfer is the platform-signed hand-over of domains.
type Transfer struct {
	Record handshake.TransferRecord `json:"record"`
	Sig    []byte                   `json:"sig"`
}

// SignTransfer signs the hand-over of domains with the platform key.
func SignTransfer(key ed25519.PrivateKey, t handshake.TransferRecord) (Transfer, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return Transfer{}, err
	}
	sig, err := identity.Sign(key, identity.ContextTransfer, b)
	if err != nil {
		return Transfer{}, err
	}
	return Transfer{Record: t, Sig: sig}, nil
}

// Write packs every file under dir into a tar on w, with a manifest naming
// their hashes, signed by key. progress, if set, is told the bytes written.
func Write(w io.Writer, dir string, m Manifest, key ed25519.PrivateKey, progress func(done, total int64)) error {
	var files []string
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("bundle: %s is not a regular file", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	sort.Strings(files)
	m.Version = Version
	m.Files = map[string]string{}
	for _, f := range files {
		if f == ManifestFile || f == SignatureFile {
			return fmt.Errorf("bundle: %s is reserved", f)
		}
		h, err := hashFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return err
		}
		m.Files[f] = h
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	sig, err := identity.Sign(key, identity.ContextBundle, mb)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put(ManifestFile, mb); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := put(SignatureFile, []byte(hex.EncodeToString(sig)+"\n")); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	var done int64
	for _, f := range files {
		if err := copyIn(tw, filepath.Join(dir, filepath.FromSlash(f)), f, m.Created); err != nil {
			return fmt.Errorf("bundle: %s: %w", f, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err == nil {
			done += fi.Size()
		}
		if progress != nil {
			progress(done, total)
		}
	}
	return tw.Close()
}

func copyIn(tw *tar.Writer, src, name string, mod time.Time) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
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

// Bundle is an opened, verified bundle.
type Bundle struct {
	Manifest Manifest
	Files    map[string][]byte
	Entries  []Entry
	Records  []handshake.Record // the entries decoded, same order
	Transfer Transfer
	Genesis  handshake.Genesis
	State    *handshake.IMVU // the state derived by replaying the entries
}

// Open reads a bundle into memory, refusing duplicate, unsafe or oversized
// members. It checks nothing else: see Verify.
func Open(r io.Reader) (*Bundle, error) {
	b := &Bundle{Files: map[string][]byte{}}
	tr := tar.NewReader(bufio.NewReader(r))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		name := h.Name
		if h.Typeflag != tar.TypeReg || name != path.Clean(name) || path.IsAbs(name) || strings.HasPrefix(name, "../") || name == ".." {
			return nil, fmt.Errorf("bundle: member %q is not a plain relative file", name)
		}
		if _, dup := b.Files[name]; dup {
			return nil, fmt.Errorf("bundle: member %q appears twice", name)
		}
		if h.Size > maxFile {
			return nil, fmt.Errorf("bundle: member %q is %d bytes, over the %d limit", name, h.Size, maxFile)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxFile))
		if err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", name, err)
		}
		b.Files[name] = data
	}
	mb, ok := b.Files[ManifestFile]
	if !ok {
		return nil, fmt.Errorf("bundle: no %s", ManifestFile)
	}
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Manifest); err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", ManifestFile, err)
	}
	return b, nil
}
