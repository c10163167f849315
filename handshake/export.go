package handshake

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nexus-core/nexus/identity"
)

// Export writes every resource kind of one IMVU into dir with the registered
// exporters (G16 guarantees each kind has one). It reads state only.
func (e *Engine) Export(ctx context.Context, id, dir string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.export(ctx, id, dir)
}

// ExportWith exports like Export, then runs also under the same lock, so what
// also reads (the ledger entries that prove the export) is exactly the state
// exported: no action lands in between.
func (e *Engine) ExportWith(ctx context.Context, id, dir string, also func(m *IMVU) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.export(ctx, id, dir); err != nil {
		return err
	}
	return also(e.state.IMVUs[id])
}

func (e *Engine) export(ctx context.Context, id, dir string) error {
	m := e.state.IMVUs[id]
	if m == nil {
		return fmt.Errorf("export: no IMVU %s", id)
	}
	names := make([]string, 0, len(e.resources))
	for n := range e.resources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := e.resources[n].Exporter.Export(ctx, e.state, m, dir); err != nil {
			return fmt.Errorf("export %s of %s: %w", n, id, err)
		}
	}
	return nil
}

// Derived is state rebuilt offline from ledger records, with the exporters
// that can write it out again.
type Derived struct{ e *Engine }

// Derive replays a genesis record and the action records of one IMVU, as an
// exit bundle carries them, into a fresh state: an offline verifier's way to
// check the bundle's files are what the ledger says. register adds the kinds of
// services beyond the core, as the daemon does.
func Derive(g Genesis, records []Record, register ...func(*Engine) error) (*Derived, error) {
	e := &Engine{kinds: map[string]*Kind{}, resources: map[string]Resource{}, gates: Gates(), junk: map[string]uint64{}, offline: true}
	if err := registerCore(e); err != nil {
		return nil, err
	}
	for _, r := range register {
		if err := r(e); err != nil {
			return nil, err
		}
	}
	e.state = newState(g)
	for i := range records {
		rec := &records[i]
		if rec.Type != RecordAction {
			continue
		}
		if err := e.replayAction(rec.index, rec); err != nil {
			return nil, fmt.Errorf("derive entry %d (%s): %w", rec.index, rec.Kind, err)
		}
	}
	return &Derived{e: e}, nil
}

// State is the derived state.
func (d *Derived) State() *State { return d.e.state }

// Export writes the derived IMVU with every registered exporter.
func (d *Derived) Export(ctx context.Context, id, dir string) error { return d.e.Export(ctx, id, dir) }

// WithIndex returns r carrying the ledger index it was read from, which Derive
// needs to rebuild state that records indexes.
func (r Record) WithIndex(i uint64) Record {
	r.index = i
	return r
}

// TransferRecord hands an exiting IMVU's domains to its owner's key. The
// platform signs it (identity.ContextTransfer) into the exit bundle, so the
// owner can show any registry that the names are theirs.
type TransferRecord struct {
	IMVU    string             `json:"imvu"`
	Domains []string           `json:"domains"`
	To      identity.PublicKey `json:"to"`
	At      time.Time          `json:"at"`
}

// Domains lists an IMVU's bound domains, sorted.
func (m *IMVU) Domains() []string {
	var out []string
	for b, typ := range m.Bindings {
		if typ == "domain" {
			out = append(out, b[len("domain:"):])
		}
	}
	sort.Strings(out)
	return out
}

// errNotExiting is returned when export is asked of an IMVU still active.
var errNotExiting = errors.New("the IMVU has not started its exit")

// ExportReady reports an error unless the IMVU exists and has started its exit.
func (e *Engine) ExportReady(id string) (*IMVU, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.state.IMVUs[id]
	if m == nil {
		return nil, fmt.Errorf("no IMVU %s", id)
	}
	if m.Status == StatusActive {
		return nil, fmt.Errorf("%s: %w", id, errNotExiting)
	}
	cp := *m
	return &cp, nil
}
