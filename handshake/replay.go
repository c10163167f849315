package handshake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"github.com/nexus-core/nexus/identity"
)

// Genesis writes the first ledger entry. It fails unless the ledger is empty.
func (e *Engine) Genesis(ctx context.Context, g Genesis) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.log.Size() != 0 {
		return errors.New("genesis: the ledger is not empty")
	}
	if g.GateSet != GateSet {
		return fmt.Errorf("genesis: gate set %d, want %d", g.GateSet, GateSet)
	}
	if _, err := e.append(ctx, &Record{Type: RecordGenesis, Time: e.now().UTC(), Scope: identity.ScopePlatform, Genesis: &g}); err != nil {
		return err
	}
	_, b, err := newState(g).Platform.Hash()
	if err != nil {
		return err
	}
	return e.store.WritePlatform(b)
}

// Replay derives the state from the ledger, from the genesis entry on. Actions
// are re-applied without their gates (they passed when ledgered); an action whose
// effect entry is missing (a crash between the two) gets its effect now. Each
// IMVU's state file is then compared with the derived state: a file changed
// around the interfaces is restored and the change ledgered as drift.
func (e *Engine) Replay(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	size := e.log.Size()
	if size == 0 {
		return errors.New("replay: the ledger is empty; run nexus init")
	}
	pending := map[uint64]string{}    // action index -> scope, until its effect entry is seen
	lastEffect := map[string]string{} // scope -> state hash its newest effect entry recorded
	err := e.log.Scan(ctx, 0, size, func(i uint64, data []byte) error {
		var rec Record
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if i == 0 {
			if rec.Type != RecordGenesis || rec.Genesis == nil {
				return errors.New("entry 0 is not the genesis record")
			}
			e.state = newState(*rec.Genesis)
			return nil
		}
		switch rec.Type {
		case RecordAction:
			if err := e.replayAction(i, &rec); err != nil {
				return fmt.Errorf("replay entry %d (%s): %w", i, rec.Kind, err)
			}
			pending[i] = rec.Scope
		case RecordDenial:
			if a, err := rec.Action.Open(); err == nil {
				e.state.useNonce(a.Actor, a.Nonce, a.IssuedAt, rec.Time)
			}
		case RecordEffect:
			delete(pending, rec.Ref)
			lastEffect[rec.Scope] = rec.State
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Hashing every intermediate state would cost a full encode per entry;
	// the newest effect of each scope must match the state replay reached.
	for scope, want := range lastEffect {
		if _, stillPending := pendingScope(pending, scope); stillPending {
			continue
		}
		if got, err := e.hashOf(scope); err == nil && got != want {
			e.logger.Error("replayed state differs from the newest effect entry", "scope", scope, "ledgered", want, "replayed", got)
		}
	}
	e.replayed = true
	for _, idx := range sortedKeys(pending) {
		scope := pending[idx]
		h, err := e.persist(scope)
		if err != nil {
			return err
		}
		if _, err := e.append(ctx, &Record{Type: RecordEffect, Time: e.now().UTC(), Scope: scope, Ref: idx, State: h}); err != nil {
			return err
		}
		e.logger.Warn("completed effect of an action ledgered before a crash", "index", idx, "scope", scope)
	}
	if err := e.checkFiles(ctx); err != nil {
		return err
	}
	ids := make([]string, 0, len(e.state.IMVUs))
	for id := range e.state.IMVUs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e.notify(id)
	}
	return nil
}

func (e *Engine) replayAction(i uint64, rec *Record) error {
	a, err := rec.Action.Open()
	if err != nil {
		return err
	}
	k := e.kinds[a.Kind]
	if k == nil {
		return fmt.Errorf("no kind %q registered", a.Kind)
	}
	// Signatures were checked when the action passed its gates, and the ledger
	// commits to the bytes; replay re-derives state and checks nothing twice.
	req := &Request{Signed: rec.Action, Action: a, Kind: k, Now: rec.Time, State: e.state, Index: i, Replay: true}
	if err := k.Prepare(req); err != nil {
		return err
	}
	tx := &Tx{engine: e, req: req, at: rec.Time, live: true}
	err = k.Apply(tx)
	tx.live = false
	if err != nil {
		return err
	}
	e.state.useNonce(a.Actor, a.Nonce, a.IssuedAt, rec.Time)
	return nil
}

// hashOf is the hash of one scope's state.
func (e *Engine) hashOf(scope string) (string, error) {
	if scope == identity.ScopePlatform {
		h, _, err := e.state.Platform.Hash()
		return h, err
	}
	m := e.state.IMVUs[scope]
	if m == nil {
		return "", fmt.Errorf("no IMVU %s", scope)
	}
	h, _, err := m.Hash()
	return h, err
}

func pendingScope(pending map[uint64]string, scope string) (uint64, bool) {
	for i, s := range pending {
		if s == scope {
			return i, true
		}
	}
	return 0, false
}

// checkFiles compares every state file with the derived state.
func (e *Engine) checkFiles(ctx context.Context) error {
	h, want, err := e.state.Platform.Hash()
	if err != nil {
		return err
	}
	got, err := e.store.ReadPlatform()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if !bytes.Equal(got, want) {
		if err := e.drift(ctx, identity.ScopePlatform, got == nil, h); err != nil {
			return err
		}
		if err := e.store.WritePlatform(want); err != nil {
			return err
		}
	}
	ids := make([]string, 0, len(e.state.IMVUs))
	for id := range e.state.IMVUs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		h, want, err := e.state.IMVUs[id].Hash()
		if err != nil {
			return err
		}
		got, err := e.store.ReadIMVU(id)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if bytes.Equal(got, want) {
			continue
		}
		if err := e.drift(ctx, id, got == nil, h); err != nil {
			return err
		}
		if err := e.store.WriteIMVU(id, want); err != nil {
			return err
		}
	}
	return nil
}

// drift ledgers a state file found changed or missing; the caller restores it.
func (e *Engine) drift(ctx context.Context, scope string, missing bool, hash string) error {
	reason := "state file was changed outside the engine"
	if missing {
		reason = "state file was missing"
	}
	if _, err := e.append(ctx, &Record{Type: RecordDrift, Time: e.now().UTC(), Scope: scope, Reason: reason, State: hash}); err != nil {
		return err
	}
	e.logger.Warn("drift restored", "scope", scope, "reason", reason)
	return nil
}

// ReportDrift ledgers a change a service found made around the interfaces
// (a hand-edited firewall rule, say) and has already reverted, under the
// scope it touched ("" for the platform), so the IMVU can see it. kind names
// the service. State does not change.
func (e *Engine) ReportDrift(ctx context.Context, scope, kind, reason string) (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ent, err := e.append(ctx, &Record{Type: RecordDrift, Time: e.now().UTC(), Scope: scope, Kind: kind, Reason: reason})
	if err != nil {
		return 0, err
	}
	e.logger.Warn("drift reverted", "scope", scope, "kind", kind, "reason", reason, "index", ent.Index)
	return ent.Index, nil
}

func sortedKeys(m map[uint64]string) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
