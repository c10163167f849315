package vm

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"
)

// need skips t when a prerequisite is missing, or fails it under
// NEXUS_REQUIRE_ALL=1 (CI), so a missing prerequisite never passes.
func need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("NEXUS_REQUIRE_ALL") == "1" {
		t.Fatalf("NEXUS_REQUIRE_ALL=1 but "+format, args...)
	}
	t.Skipf(format+"; set NEXUS_REQUIRE_ALL=1 to make this a failure", args...)
}

func needBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	need(t, err == nil, "%s is not installed (Debian package %s)", name, pkg)
	return p
}

func needRoot(t testing.TB) {
	t.Helper()
	need(t, os.Geteuid() == 0, "the test needs root")
}

func randSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
