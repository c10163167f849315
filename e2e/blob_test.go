package e2e

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/api"
)

// TestBlobStaging: only an IMVU's owner stages data for it, the bytes must
// hash to what the signed put announced, and staging is bounded by the
// IMVU's envelope. Nothing refused is left on disk.
func TestBlobStaging(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	n.create(t, "imvu042")
	n.create(t, "imvu043")
	file := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(file, []byte(strings.Repeat("m", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(n.dir, "imvu", "imvu042", "staging")
	ctx := context.Background()
	for _, c := range []struct {
		name string
		key  ed25519.PrivateKey
		imvu string
		want string
	}{
		{"the platform admin", n.admin, "imvu042", "only the owner"},
		{"another IMVU's owner", n.owners["imvu043"], "imvu042", "no role"},
		{"a fresh key", genKey(t), "imvu042", "no role"},
	} {
		_, err := n.client.PutBlob(ctx, c.key, c.imvu, file)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a refusal saying %q", c.name, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Fatalf("refused puts left %d files in %s", len(entries), staging)
	}
	p, err := n.client.PutBlob(ctx, n.owners["imvu042"], "imvu042", file)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(staging, p.SHA256)); err != nil || len(b) != 4096 {
		t.Fatalf("staged blob: %d bytes, %v", len(b), err)
	}
	if err := api.CheckDigest(p.SHA256); err != nil {
		t.Fatal(err)
	}
}
