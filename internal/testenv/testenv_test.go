package testenv_test

import (
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestToolFindsSh(t *testing.T) {
	if p := testenv.Tool(t, "sh", "dash"); p == "" {
		t.Fatal("no path for sh")
	}
}

func ExampleMissing() {
	// In a test: testenv.Missing(t, "no IPv6 loopback here: %v", err)
}
