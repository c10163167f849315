package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// Export writes the exit bundle of an IMVU that has started its exit: every
// resource through its exporter, the ledger entries that prove them, and the
// platform-signed hand-over of its domains, all taken under the engine's lock so
// they describe one moment.
func (n *Node) Export(ctx context.Context, id string, w io.Writer) error {
	if _, err := n.Engine.ExportReady(id); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "nexus-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key := mustKey(n.Dir.LedgerKey())
	vkey, err := os.ReadFile(n.Dir.VerifierKey())
	if err != nil {
		return err
	}
	man := bundle.Manifest{IMVU: id, VerifierKey: string(trimNL(vkey)), Created: time.Now().UTC().Truncate(time.Second)}
	err = n.Engine.ExportWith(ctx, id, dir, func(m *handshake.IMVU) error {
		man.Owner = m.Owner
		cp := n.Ledger.Checkpoint()
		man.Checkpoint = string(cp.Note)
		if err := n.writeEntries(ctx, id, m.Owner, cp.Size, filepath.Join(dir, bundle.EntriesFile)); err != nil {
			return err
		}
		t, err := bundle.SignTransfer(key, handshake.TransferRecord{IMVU: id, Domains: m.Domains(), To: m.Owner, At: man.Created})
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(t, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, bundle.TransferFile), b, 0o644)
	})
	if err != nil {
		return err
	}
	man.Platform = publicOf(key)
	if err := bundle.Write(w, dir, man, key, nil); err != nil {
		return err
	}
	n.logger.Info("exported", "imvu", id)
	return nil
}

// writeEntries writes the genesis entry, every entry in scope id, and every
// action of another scope that the IMVU's owner co-signed (a domain handed
// over to it, say), each with its inclusion proof against the checkpoint of
// the given size.
func (n *Node) writeEntries(ctx context.Context, id string, owner identity.PublicKey, size uint64, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	err = n.Ledger.Scan(ctx, 0, size, func(i uint64, data []byte) error {
		var h struct {
			Scope string `json:"scope"`
		}
		if err := json.Unmarshal(data, &h); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if i != 0 && h.Scope != id && !handedTo(data, owner, id) {
			return nil
		}
		r, err := n.Ledger.Receipt(ctx, i)
		if err != nil {
			return err
		}
		if r.Checkpoint.Size != size {
			return fmt.Errorf("entry %d: proof against tree size %d, want %d", i, r.Checkpoint.Size, size)
		}
		proof := make([][]byte, len(r.Proof))
		for j := range r.Proof {
			proof[j] = r.Proof[j][:]
		}
		return enc.Encode(bundle.Entry{Index: i, Data: data, Proof: proof})
	})
	if err != nil {
		return err
	}
	return f.Close()
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// handedTo reports whether an entry of another scope is an action the IMVU's
// owner co-signed that reaches into the IMVU (names it as "imvu" in its
// parameters, as domain.transfer does).
func handedTo(data []byte, owner identity.PublicKey, id string) bool {
	rec, err := handshake.ParseRecord(data)
	if err != nil {
		return false
	}
	return bundle.HandedTo(rec, owner, id)
}
