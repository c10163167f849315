package e2e

import (
	"testing"
	"time"

	"github.com/nexus-core/nexus/handshake"
)

// TestAnonymousHandshakeFlood: "Junk that fails G01 (no valid identity at all)
// is counted and summarised in periodic entries instead, so an anonymous flood
// cannot fill the ledger" (the spec, "Actions and the chokepoint"). Anyone can
// make a fresh key, and a key that holds no identity may still submit
// imvu.create (handshake/engine.go, Submit: the junk check is skipped for
// SelfIssued kinds). A handshake a gate refuses leaves such a key without any
// identity, yet every refusal is appended as its own denial entry, readable by
// nobody but the admin as a header. So a flood of bad handshakes from throwaway
// keys grows the ledger by one entry per request (and the nonce table by one
// map per key), which is exactly what the junk summary exists to prevent.
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
