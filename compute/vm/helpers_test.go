package vm

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

// needIf is testenv.Missing unless ok.
func needIf(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		testenv.Missing(t, format, args...)
	}
}

func needBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	needIf(t, err == nil, "%s is not installed (Debian package %s)", name, pkg)
	return p
}

func needRoot(t testing.TB) {
	t.Helper()
	needIf(t, os.Geteuid() == 0, "the test needs root")
}

func randSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
