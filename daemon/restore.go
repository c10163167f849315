package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nexus-core/nexus/archive"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/mailbox"
)

// runRestores unpacks the message archives that ledgered mail.restore actions
// name into their mailboxes: once at start, then whenever the engine applies
// something. Each archive is unpacked once; a marker under the IMVU's mail
// folder remembers it, so a restart or a replay does not unpack it again.
func (ms *mailService) runRestores(ctx context.Context) {
	ms.restorePending(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ms.restore:
			ms.restorePending(ctx)
		}
	}
}

type pendingRestore struct {
	imvu  string
	quota int64
	mailbox.Restore
}

func (ms *mailService) restorePending(ctx context.Context) {
	var todo []pendingRestore
	ms.n.Engine.View(func(st *handshake.State) error {
		for id, m := range st.IMVUs {
			if m.Status == handshake.StatusExited {
				continue
			}
			for _, r := range mailbox.Of(m).Restores {
				todo = append(todo, pendingRestore{imvu: id, quota: int64(m.Envelope.MailBytes), Restore: r})
			}
		}
		return nil
	})
	for _, r := range todo {
		if err := ms.unpack(ctx, r); err != nil {
			ms.n.logger.Error("mail restore", "imvu", r.imvu, "mailbox", r.Address, "index", r.Index, "err", err)
		}
	}
}

func (ms *mailService) unpack(ctx context.Context, r pendingRestore) error {
	d, err := ms.imvuDir(r.imvu)
	if err != nil {
		return err
	}
	marker := filepath.Join(d, "mail", "restored", strconv.FormatUint(r.Index, 10))
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	f, err := ms.n.blobs.Open(r.imvu, r.Blob)
	if errors.Is(err, os.ErrNotExist) {
		return nil // replayed on a node that never had it staged, or already consumed
	}
	if err != nil {
		return err
	}
	defer f.Close()
	box, err := ms.boxPath(r.imvu, r.Address)
	if err != nil {
		return err
	}
	if err := archive.Extract(ctx, f, box, archive.Options{Limit: r.quota}); err != nil {
		return fmt.Errorf("unpack %s into %s: %w", r.Blob, r.Address, err)
	}
	if err := os.MkdirAll(filepath.Dir(marker), 0o700); err != nil {
		return err
	}
	if err := datadir.WriteFile(marker, []byte(r.Blob+"\n"), 0o600); err != nil {
		return err
	}
	ms.n.logger.Info("mail restored", "imvu", r.imvu, "mailbox", r.Address, "bytes", r.Bytes)
	return ms.n.blobs.Done(r.imvu, r.Blob)
}
