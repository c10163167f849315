// Command nexus is the Nexus Core node and its client: `nexus serve` runs the
// daemon; every other subcommand signs its request with the caller's key and
// talks to the daemon's API (or, for `ledger verify` and `key new`, works offline).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/handshake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		if d, ok := api.IsDenied(err); ok {
			fmt.Fprintf(os.Stderr, "nexus: denied by %s: %s (%s)\n", d.Gate, d.Reason, where(d))
			os.Exit(3)
		}
		var ex exitError
		if errors.As(err, &ex) {
			fmt.Fprintln(os.Stderr, "nexus:", ex.err)
			os.Exit(ex.code)
		}
		fmt.Fprintln(os.Stderr, "nexus:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

// where says where a denial is ledgered.
func where(d *handshake.Denial) string {
	if d.Summarised {
		return "counted in the next junk summary: the key holds no identity"
	}
	return fmt.Sprintf("ledger index %d", d.Index)
}
