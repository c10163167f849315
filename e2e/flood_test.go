package e2e

import (
	"testing"
	"time"

	"github.com/nexus-core/nexus/handshake"
)

// TestAnonymousHandshakeFlood: junk that carries no valid identity is counted
// and summarised, so an anonymous flood cannot fill the ledger. Anyone can make
// a fresh key and submit imvu.create, the one kind a key without an identity may
// send; a handshake a gate refuses from such a key is counted in the junk
// summary by its gate (Denial.Summarised) instead of getting an entry of its
// own, and leaves no nonce memory behind.
func TestAnonymousHandshakeFlood(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	const flood = 40
	before := n.size(t)
	for i := 0; i < flood; i++ {
		k := genKey(t)
		h := n.handshakeFor(t, "imvu099", k)
		h.Split = [2]int{60, 40}
		a := n.send(t, k, handshake.KindCreate, "imvu099", h)
		if a.err == nil {
			t.Fatalf("a 60/40 handshake was accepted at index %d", a.res.Index)
		}
	}
	// Give the daemon time to write a junk summary (it flushes every second).
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, e := range n.entries(t, n.admin, "platform", before) {
			if e.Type == "junk" {
				deadline = time.Now()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if grown := n.size(t) - before; grown > 5 {
		t.Fatalf("%d refused handshakes from throwaway keys added %d ledger entries; an anonymous flood must cost a few summary entries, not one per request", flood, grown)
	}
}
