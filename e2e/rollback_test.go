package e2e

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/handshake"
)

// TestRollbackCaughtByAKeptCheckpoint: a creator keeps a checkpoint it saw
// (`nexus ledger checkpoint --out`). While the platform is honest, `ledger
// consistency` proves the log only grew since. When the host rolls the ledger
// back (deleting the newest rows and the checkpoints covering them, which the
// file alone cannot reveal), `ledger verify --checkpoint` names the rollback.
func TestRollbackCaughtByAKeptCheckpoint(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	n.create(t, "imvu042")
	kept := filepath.Join(t.TempDir(), "seen.checkpoint")
	n.cliOK(t, "ledger", "checkpoint", "--out", kept)
	keptSize := n.size(t)
	for i := uint64(1); i <= 3; i++ {
		n.must(t, n.meters["compute"], handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", i, time.Now()))
	}
	if out := n.cliOK(t, "ledger", "consistency", kept); !strings.Contains(out, "without rewriting any") {
		t.Fatalf("ledger consistency: %s", out)
	}
	n.stop(t)
	n.cliOK(t, "ledger", "verify", "--checkpoint", kept)

	// The host cuts the log back to before the kept checkpoint.
	cut := keptSize - 1
	del := func(q string) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			res, err := tx.Exec(q, cut)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 0 {
				return fmt.Errorf("%s: no rows", q)
			}
			return nil
		}
	}
	sqlEdit(t, filepath.Join(n.dir, "platform", "ledger.db"),
		del("DELETE FROM entries WHERE idx >= ?"), del("DELETE FROM checkpoints WHERE size > ?"))
	if out, errOut, code := n.cli(t, "ledger", "verify"); code != 0 {
		t.Fatalf("a consistent rollback is invisible to the file alone, yet verify said exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code := n.cli(t, "ledger", "verify", "--checkpoint", kept)
	if code != 1 || !strings.Contains(out+errOut, "index") {
		t.Fatalf("verify against the kept checkpoint: exit %d\n%s%s", code, out, errOut)
	}
}
