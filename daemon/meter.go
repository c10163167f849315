package daemon

import (
	"context"
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// meter turns a service's in-memory counters into signed cumulative usage
// events, on an interval, through the engine like any other action. Counters
// restart at zero with the process; the meter adds the value the ledger held
// when it first reported an IMVU's resource, so ledgered counters only rise.
type meter struct {
	n       *Node
	name    string // the meter identity: dns, mail, compute, net
	every   time.Duration
	sources func() map[string]map[string]uint64 // resource -> IMVU -> count since start

	mu   sync.Mutex
	base map[string]uint64 // "imvu/resource" -> ledgered counter at first report
}

func (n *Node) newMeter(name string, every time.Duration, sources func() map[string]map[string]uint64) *meter {
	return &meter{n: n, name: name, every: every, sources: sources, base: map[string]uint64{}}
}

func (m *meter) run(ctx context.Context) {
	key, err := datadir.ReadKey(m.n.Dir.MeterKey(m.name))
	if err != nil {
		m.n.logger.Error("meter key", "meter", m.name, "err", err)
		return
	}
	t := time.NewTicker(m.every)
	defer t.Stop()
	last := map[string]uint64{}     // imvu/resource -> count last ledgered by this process
	quiet := map[string]time.Time{} // imvu/resource -> no new attempt before this time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for resource, counts := range m.sources() {
			for imvu, count := range counts {
				k := imvu + "/" + resource
				if count == last[k] || time.Now().Before(quiet[k]) {
					continue
				}
				total, ok := m.total(imvu, resource, count)
				if !ok {
					continue
				}
				if err := m.record(ctx, key, imvu, resource, total); err != nil {
					m.n.logger.Warn("usage", "meter", m.name, "imvu", imvu, "resource", resource, "err", err)
					// A refusal (a sheet without this resource, say) would be
					// refused again each tick: wait before asking once more.
					if _, denied := api.IsDenied(err); denied {
						quiet[k] = time.Now().Add(time.Hour)
					}
					continue
				}
				last[k] = count
			}
		}
	}
}

func (m *meter) record(ctx context.Context, key ed25519.PrivateKey, imvu, resource string, counter uint64) error {
	ev := revenue.Usage{IMVU: imvu, Resource: resource, Meter: m.name, Counter: counter, At: time.Now().UTC()}
	a, err := action.New(handshake.KindUsage, imvu, identity.PublicOf(key), handshake.UsageParams{Events: []revenue.Usage{ev}})
	if err != nil {
		return err
	}
	s, err := action.Seal(a, key)
	if err != nil {
		return err
	}
	_, err = m.n.Engine.Submit(ctx, s)
	return err
}

// total is the counter to report. It reports false for an IMVU the platform
// may no longer charge (G17).
func (m *meter) total(imvu, resource string, count uint64) (uint64, bool) {
	k := imvu + "/" + resource
	ok := false
	m.n.Engine.View(func(st *handshake.State) error {
		im := st.IMVUs[imvu]
		if im == nil || im.Status != handshake.StatusActive {
			return nil
		}
		ok = true
		m.mu.Lock()
		if _, seen := m.base[k]; !seen {
			m.base[k] = im.Counters[resource+"/"+m.name].Value
		}
		m.mu.Unlock()
		return nil
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.base[k] + count, ok
}
