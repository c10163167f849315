// Package testenv decides what a test does when this machine lacks what it
// needs (a tool, root, IPv6): it skips, or under NEXUS_REQUIRE_ALL=1 (as in
// CI) it fails, so that no test passes by not running. It holds no state.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireAll reports whether every test must run (NEXUS_REQUIRE_ALL=1).
func RequireAll() bool { return os.Getenv("NEXUS_REQUIRE_ALL") == "1" }

// Missing skips tb for the reason given, or fails it when every test must run.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if RequireAll() {
		tb.Fatalf("NEXUS_REQUIRE_ALL=1 but "+format, args...)
	}
	tb.Skipf(format+"; set NEXUS_REQUIRE_ALL=1 to make this a failure", args...)
}

// Root is Missing unless the test runs as root.
func Root(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, "needs root (%s)", why)
	}
}

// Tool returns the path of a command, or is Missing naming the Debian
// package that has it.
func Tool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "%s is missing (apt-get install %s)", name, pkg)
	}
	return p
}
