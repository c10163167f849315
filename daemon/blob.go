package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
)

// blobs stages the data actions refer to by digest, in DATA/imvu/<ID>/staging/.
// An IMVU can stage at most its disk envelope plus its mail envelope at once;
// what it stages is consumed (and removed) by the effect of the action that
// names it.
type blobs struct {
	n  *Node
	mu sync.Mutex // serialises the space check with the write
}

func (b *blobs) dir(imvu string) (string, error) {
	d, err := b.n.Dir.IMVU(imvu)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "staging"), nil
}

// Stage implements api.Stager.
func (b *blobs) Stage(ctx context.Context, imvu string, p api.BlobParams, r io.Reader) error {
	var room uint64
	b.n.Engine.View(func(st *handshake.State) error {
		if m, ok := st.IMVUs[imvu]; ok && m.Status == handshake.StatusActive {
			room = m.Envelope.DiskBytes + m.Envelope.MailBytes
		}
		return nil
	})
	if room == 0 {
		return fmt.Errorf("stage blob: %s cannot stage data (no such IMVU, or exiting)", imvu)
	}
	dir, err := b.dir(imvu)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	final := filepath.Join(dir, p.SHA256)
	if _, err := os.Stat(final); err == nil {
		_, err = io.Copy(io.Discard, r)
		return err // already staged
	}
	used, err := dirBytes(dir)
	if err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	if used+uint64(p.Size) > room {
		return fmt.Errorf("stage blob: %d bytes would exceed %s's staging room (%d of %d bytes in use)", p.Size, imvu, used, room)
	}
	f, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return fmt.Errorf("stage blob: read body: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != p.Size || got != p.SHA256 {
		return fmt.Errorf("stage blob: received %d bytes hashing to %s, not the announced %d bytes %s", n, got, p.Size, p.SHA256)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	return datadir.SyncDir(dir)
}

// Open returns a staged blob, checked against its digest again (the file sat
// on disk between the put and now). The caller removes it with Done.
func (b *blobs) Open(imvu, digest string) (*os.File, error) {
	if err := api.CheckDigest(digest); err != nil {
		return nil, err
	}
	dir, err := b.dir(imvu)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, digest))
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		f.Close()
		return nil, fmt.Errorf("staged blob %s of %s was altered on disk (now %s)", digest, imvu, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Done removes a consumed blob.
func (b *blobs) Done(imvu, digest string) error {
	dir, err := b.dir(imvu)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func dirBytes(dir string) (uint64, error) {
	var total uint64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += uint64(info.Size())
		return nil
	})
	return total, err
}
