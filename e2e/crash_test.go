package e2e

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/handshake"
)

// ack is one action the daemon acknowledged (or one denial it answered).
type ack struct {
	index uint64
	body  []byte
	kind  string // "action" or "denial"
}

// TestCrashMidLoad: 32 clients submit usage as fast as the daemon takes it;
// the daemon is SIGKILLed while they run. After a restart every acknowledged
// action (and every answered denial) is in the ledger with the same body and
// an effect entry, the ledger verifies offline, the counters are at least what
// was acknowledged, replays are still refused, and the daemon serves again.
func TestCrashMidLoad(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	ids := []string{"crash-a", "crash-b"}
	for _, id := range ids {
		n.create(t, id)
	}
	meters := []string{"compute", "dns", "mail", "net"}
	resources := []string{"cpu_ms", "mem_mib_s", "net_bytes", "dns_queries"}

	type worker struct {
		imvu, meter, resource string
		sent, acked           uint64 // highest counter sent, and acknowledged
		acks                  []ack
		last                  *action.Signed
		err                   error
	}
	workers := make([]*worker, 32)
	for g := range workers {
		workers[g] = &worker{imvu: ids[g/16], meter: meters[g%4], resource: resources[(g/4)%4]}
	}
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		nacked  atomic.Int64
		started = time.Now()
	)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := n.meters[w.meter]
			for counter := uint64(1); !stop.Load(); counter++ {
				sa, err := sealUsage(key, w.imvu, w.meter, w.resource, counter*10)
				if err != nil {
					w.err = err
					return
				}
				w.sent = counter * 10
				res, err := n.client.Submit(t.Context(), sa)
				if d, ok := api.IsDenied(err); ok {
					w.acks = append(w.acks, ack{index: d.Index, body: sa.Body, kind: "denial"})
					continue
				}
				if err != nil {
					return // the daemon is gone
				}
				w.acks = append(w.acks, ack{index: res.Index, body: sa.Body, kind: "action"})
				w.acked, w.last = counter*10, sa
				nacked.Add(1)
			}
		}()
	}
	// Let the load run for about two seconds, then SIGKILL the daemon under it.
	time.Sleep(1800 * time.Millisecond)
	if nacked.Load() == 0 {
		t.Fatal("no action acknowledged under load")
	}
	n.kill9(t)
	killedAfter := time.Since(started)
	stop.Store(true)
	wg.Wait()

	var acks []ack
	var nActions, nDenials int
	for _, w := range workers {
		if w.err != nil {
			t.Fatal(w.err)
		}
		acks = append(acks, w.acks...)
		for _, a := range w.acks {
			if a.kind == "action" {
				nActions++
			} else {
				nDenials++
			}
		}
	}
	t.Logf("killed after %s: %d actions acknowledged, %d denials answered", killedAfter.Round(time.Millisecond), nActions, nDenials)
	if nActions < 32 {
		t.Fatalf("only %d actions acknowledged before the kill; the load did not run", nActions)
	}

	// The ledger verifies offline right after the crash, and again once the
	// daemon has restarted (and completed any effect the crash cut off).
	verifyOK := func(when string) {
		out, errOut, code := n.cli(t, "ledger", "verify")
		if code != 0 || !strings.HasPrefix(out, "ok:") {
			t.Fatalf("ledger verify %s: exit %d\n%s%s", when, code, out, errOut)
		}
	}
	verifyOK("after the kill")
	n.start(t)
	verifyOK("after the restart")

	// Every acknowledged index holds the same action, with an effect entry.
	byIndex := map[uint64]api.Entry{}
	effects := map[uint64]bool{}
	for _, id := range ids {
		for _, e := range n.entries(t, n.owners[id], id, 0) {
			byIndex[e.Index] = e
			if e.Type == "effect" {
				effects[parseRecord(t, e).Ref] = true
			}
			if e.Type == "drift" {
				t.Errorf("entry %d: drift on %s after a crash; the state files must follow the ledger", e.Index, id)
			}
		}
	}
	lost := 0
	for _, a := range acks {
		e, ok := byIndex[a.index]
		if !ok {
			t.Errorf("acknowledged %s at index %d is not in the ledger after the restart", a.kind, a.index)
			lost++
			continue
		}
		r := parseRecord(t, e)
		if r.Type != a.kind || r.Action == nil || !bytes.Equal(r.Action.Body, a.body) {
			t.Errorf("index %d holds %s %v; want the acknowledged %s", a.index, r.Type, r.Action != nil, a.kind)
			lost++
			continue
		}
		if a.kind == "action" && !effects[a.index] {
			t.Errorf("acknowledged action %d has no effect entry after the restart", a.index)
		}
		if lost > 10 {
			t.Fatal("too many lost acknowledgements")
		}
	}

	// The derived state has every acknowledged counter.
	for _, id := range ids {
		m := n.imvu(t, id)
		for _, w := range workers {
			if w.imvu != id {
				continue
			}
			if c := m.Counters[w.resource+"/"+w.meter]; c.Value < w.acked {
				t.Errorf("%s counter %s/%s is %d after the restart; %d was acknowledged", id, w.resource, w.meter, c.Value, w.acked)
			}
		}
	}

	// Nonces survived: an acknowledged action replayed is refused.
	for _, w := range workers {
		if w.last != nil {
			n.expectDenial(t, n.sendSigned(t, w.last), "G02")
			break
		}
	}
	// And the daemon serves: a new action from every meter passes.
	for _, w := range workers[:4] {
		sa, err := sealUsage(n.meters[w.meter], w.imvu, w.meter, w.resource, w.sent+1000)
		if err != nil {
			t.Fatal(err)
		}
		n.mustSigned(t, sa)
	}
}

// sealUsage signs one usage.record for a meter.
func sealUsage(key ed25519.PrivateKey, imvu, meter, resource string, counter uint64) (*action.Signed, error) {
	a, err := action.New(handshake.KindUsage, imvu, pub(key), usage(imvu, meter, resource, counter, time.Now()))
	if err != nil {
		return nil, fmt.Errorf("usage action: %w", err)
	}
	return action.Seal(a, key)
}
