package handshake

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
)

// Log is what the engine needs of the ledger.
type Log interface {
	Append(ctx context.Context, data []byte) (ledger.Entry, error)
	Receipt(ctx context.Context, index uint64) (ledger.Receipt, error)
	Scan(ctx context.Context, start, end uint64, fn func(index uint64, data []byte) error) error
	Size() uint64
}

// Store persists the state the engine derives, one file per IMVU, so each IMVU's
// state lives under its own folder. It is written only after the ledger entry.
type Store interface {
	WriteIMVU(id string, state []byte) error
	ReadIMVU(id string) ([]byte, error)
	WritePlatform(state []byte) error
	ReadPlatform() ([]byte, error)
}

// Config holds the engine's explicit dependencies.
type Config struct {
	Log        Log
	Store      Store
	Platform   ed25519.PrivateKey // countersigns handshakes; signs settlements the daemon makes
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Engine is the chokepoint: the only path from an Action to an effect.
type Engine struct {
	log      Log
	store    Store
	platform ed25519.PrivateKey
	logger   *slog.Logger
	now      func() time.Time

	kinds     map[string]*Kind
	resources map[string]Resource
	gates     []Gate

	mu       sync.Mutex // serialises gates, append and apply: gates see the state the effect will change
	state    *State
	healthy  atomic.Bool
	junk     map[string]uint64 // reason -> count of unauthenticated requests since the last summary
	junkMu   sync.Mutex
	metrics  *metrics
	replayed bool
	watchers []func(st *State, scope string)
	offline  bool // a Derive engine: it holds one IMVU's entries, not the whole ledger
}

// Watch registers fn to run after every applied effect, with the scope it
// changed, and once per IMVU at the end of Replay. Services use it to bring the
// world (DNS answers, mail routes, workloads) in line with the derived state.
// fn runs under the engine's lock: it may read st but must not keep it, change
// it, or call back into the engine.
func (e *Engine) Watch(fn func(st *State, scope string)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.watchers = append(e.watchers, fn)
}

func (e *Engine) notify(scope string) {
	for _, fn := range e.watchers {
		fn(e.state, scope)
	}
}

type metrics struct {
	verdicts *prometheus.CounterVec
	latency  prometheus.Histogram
}

// New builds an engine with the built-in kinds registered. Call Replay before
// Submit.
func New(cfg Config) (*Engine, error) {
	if cfg.Log == nil || cfg.Store == nil || cfg.Platform == nil {
		return nil, errors.New("handshake: Log, Store and Platform key are required")
	}
	e := &Engine{log: cfg.Log, store: cfg.Store, platform: cfg.Platform, logger: cfg.Logger, now: cfg.Now,
		kinds: map[string]*Kind{}, resources: map[string]Resource{}, gates: Gates(), junk: map[string]uint64{}}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.metrics = &metrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nexus", Subsystem: "handshake",
			Name: "verdicts_total", Help: "Actions by kind and verdict (allow or the denying gate)."}, []string{"kind", "verdict"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "nexus", Subsystem: "handshake",
			Name: "submit_seconds", Help: "Time from receipt of an action to its answer.", Buckets: prometheus.ExponentialBuckets(1e-4, 2, 16)}),
	}
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(e.metrics.verdicts), cfg.Registerer.Register(e.metrics.latency)); err != nil {
			return nil, fmt.Errorf("handshake: register metrics: %w", err)
		}
	}
	if err := registerCore(e); err != nil {
		return nil, err
	}
	e.healthy.Store(true)
	return e, nil
}

func (e *Engine) ledgerHealthy() bool { return e.healthy.Load() }

// Healthy reports whether the engine accepts actions: false once a ledger append
// or an applier has failed, until a restart replays the ledger.
func (e *Engine) Healthy() bool { return e.healthy.Load() }

// Result is the answer to an accepted action.
type Result struct {
	Index   uint64         `json:"index"`  // ledger index of the action entry
	Effect  uint64         `json:"effect"` // ledger index of the effect entry
	State   string         `json:"state"`  // hash of the scope's state after the effect
	Receipt ledger.Receipt `json:"receipt"`
}

// ErrJunk is returned for requests that carry no valid identity at all; they are
// counted and summarised in the ledger rather than logged one by one.
var ErrJunk = errors.New("request carries no valid identity")

// Submit takes one signed action through verify, the gates, the ledger and its
// effect. A denial is returned as *Denial after it is durable in the ledger.
func (e *Engine) Submit(ctx context.Context, s *action.Signed) (*Result, error) {
	start := e.now()
	defer func() { e.metrics.latency.Observe(time.Since(start).Seconds()) }()

	a, err := s.Open()
	if err != nil {
		e.countJunk("malformed")
		return nil, fmt.Errorf("%w: %v", ErrJunk, err)
	}
	good, bad := s.Verify()

	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.replayed {
		return nil, errors.New("handshake: engine has not replayed the ledger")
	}
	k := e.kinds[a.Kind]
	selfIssued := k != nil && k.SelfIssued
	if !good[a.Actor] || (!selfIssued && !e.state.Known(a.Actor)) {
		e.countJunk("unauthenticated")
		return nil, fmt.Errorf("%w: the actor's signature or identity is not valid", ErrJunk)
	}
	now := e.now().UTC()
	if k == nil {
		// An unknown kind goes through the gates like any other and is refused
		// by G03: no role may submit it.
		k = &Kind{Name: a.Kind}
	}
	req := &Request{Signed: s, Action: a, Kind: k, Now: now, State: e.state, SignedBy: good, BadSigs: bad}
	// Authenticity and freshness come first: they need nothing from the
	// parameters, and a replay must be named a replay whatever it asks for.
	if d := e.check(req, e.gates[:2]); d != nil {
		return nil, e.deny(ctx, req, d)
	}
	if k.Prepare != nil {
		if err := k.Prepare(req); err != nil {
			return nil, e.deny(ctx, req, &Denial{Gate: "G03", Reason: "parameters: " + err.Error()})
		}
	}
	if d := e.check(req, e.gates[2:]); d != nil {
		return nil, e.deny(ctx, req, d)
	}
	return e.commit(ctx, req)
}

// check runs gates in order. An exit runs only G01-G03 and G17: no other gate
// may refuse it.
func (e *Engine) check(req *Request, gates []Gate) *Denial {
	for i := range gates {
		g := &gates[i]
		if req.Kind.Exit && !exitGate(g.ID) {
			continue
		}
		if err := g.check(req); err != nil {
			return &Denial{Gate: g.ID, Reason: err.Error()}
		}
	}
	return nil
}

func exitGate(id string) bool {
	switch id {
	case "G01", "G02", "G03", "G17":
		return true
	}
	return false
}

// deny ledgers a denial of an authenticated actor and returns it. A refused
// handshake from a key with no identity is counted as junk instead.
func (e *Engine) deny(ctx context.Context, req *Request, d *Denial) error {
	if req.Kind.SelfIssued && !e.state.Known(req.Action.Actor) {
		e.countJunk(req.Action.Kind + " denied by " + d.Gate)
		d.Summarised = true
		return d
	}
	e.metrics.verdicts.WithLabelValues(req.Action.Kind, d.Gate).Inc()
	rec := Record{Type: RecordDenial, Time: req.Now, Scope: req.Action.Scope, Kind: req.Action.Kind,
		Action: req.Signed, Gate: d.Gate, Reason: d.Reason}
	ent, err := e.append(ctx, &rec)
	if err != nil {
		return fmt.Errorf("ledger denial (%v): %w", d, err)
	}
	// A denied action's nonce is spent too, so it cannot be replayed to probe.
	e.state.useNonce(req.Action.Actor, req.Action.Nonce, req.Action.IssuedAt, req.Now)
	d.Index = ent.Index
	e.logger.Info("denied", "kind", req.Action.Kind, "scope", req.Action.Scope, "actor", req.Action.Actor.String(),
		"gate", d.Gate, "reason", d.Reason, "index", ent.Index)
	return d
}

// commit is the write-ahead path: ledger the action, apply it, ledger the effect.
func (e *Engine) commit(ctx context.Context, req *Request) (*Result, error) {
	rec := Record{Type: RecordAction, Time: req.Now, Scope: req.Action.Scope, Kind: req.Action.Kind, Action: req.Signed}
	if req.Kind.Countersign {
		sig, err := identity.Sign(e.platform, identity.ContextCountersign, req.Signed.Body)
		if err != nil {
			return nil, fmt.Errorf("countersign: %w", err)
		}
		rec.Countersig = sig
	}
	ent, err := e.append(ctx, &rec)
	if err != nil {
		return nil, err
	}
	req.Index = ent.Index
	e.metrics.verdicts.WithLabelValues(req.Action.Kind, "allow").Inc()
	hash, err := e.apply(req, rec.Time)
	if err != nil {
		// The action is ledgered, so its effect must happen; replay retries it.
		e.healthy.Store(false)
		return nil, fmt.Errorf("apply %s at index %d: %w", req.Action.Kind, ent.Index, err)
	}
	eff, err := e.append(ctx, &Record{Type: RecordEffect, Time: e.now().UTC(), Scope: req.Action.Scope,
		Kind: req.Action.Kind, Ref: ent.Index, State: hash})
	if err != nil {
		return nil, err
	}
	rcpt, err := e.log.Receipt(ctx, ent.Index)
	if err != nil {
		return nil, fmt.Errorf("receipt for %d: %w", ent.Index, err)
	}
	e.notify(req.Action.Scope)
	e.logger.Info("applied", "kind", req.Action.Kind, "scope", req.Action.Scope, "index", ent.Index, "state", hash)
	return &Result{Index: ent.Index, Effect: eff.Index, State: hash, Receipt: rcpt}, nil
}

// apply runs the kind's applier inside a Tx, then writes the scope's state file.
func (e *Engine) apply(req *Request, at time.Time) (string, error) {
	tx := &Tx{engine: e, req: req, at: at, live: true, handed: new([]string)}
	err := req.Kind.Apply(tx)
	tx.live = false
	if err != nil {
		return "", err
	}
	e.state.useNonce(req.Action.Actor, req.Action.Nonce, req.Action.IssuedAt, req.Now)
	// An IMVU reached through a co-signed crossing (Tx.Hand) changed too.
	for _, other := range *tx.handed {
		if _, err := e.persist(other); err != nil {
			return "", err
		}
		e.notify(other)
	}
	return e.persist(req.Action.Scope)
}

// persist writes the scope's state to its own file and returns its hash.
func (e *Engine) persist(scope string) (string, error) {
	if scope == identity.ScopePlatform {
		h, b, err := e.state.Platform.Hash()
		if err != nil {
			return "", err
		}
		return h, e.store.WritePlatform(b)
	}
	m := e.state.IMVUs[scope]
	if m == nil {
		return "", fmt.Errorf("no IMVU %s to persist", scope)
	}
	h, b, err := m.Hash()
	if err != nil {
		return "", err
	}
	return h, e.store.WriteIMVU(scope, b)
}

func (e *Engine) append(ctx context.Context, rec *Record) (ledger.Entry, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return ledger.Entry{}, fmt.Errorf("encode %s record: %w", rec.Type, err)
	}
	ent, err := e.log.Append(ctx, b)
	if err != nil {
		e.healthy.Store(false)
		return ent, fmt.Errorf("ledger %s record: %w", rec.Type, err)
	}
	return ent, nil
}

func (e *Engine) countJunk(reason string) {
	e.junkMu.Lock()
	e.junk[reason]++
	e.junkMu.Unlock()
	e.metrics.verdicts.WithLabelValues("", "junk").Inc()
}

// FlushJunk appends one summary entry for the unauthenticated requests counted
// since the last call, if there were any. The daemon calls it on a timer, so an
// anonymous flood costs one entry per interval, not one per request.
func (e *Engine) FlushJunk(ctx context.Context) error {
	e.junkMu.Lock()
	counts := e.junk
	e.junk = map[string]uint64{}
	e.junkMu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	var total uint64
	for _, n := range counts {
		total += n
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.append(ctx, &Record{Type: RecordJunk, Time: e.now().UTC(), Scope: identity.ScopePlatform,
		Gate: "G01", Count: total, Reasons: counts})
	return err
}

// View runs fn with the state under the engine's lock. fn must not keep
// references past its return or mutate anything.
func (e *Engine) View(fn func(*State) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fn(e.state)
}

// Kinds returns the registered action kinds' names.
func (e *Engine) Kinds() []string {
	out := make([]string, 0, len(e.kinds))
	for k := range e.kinds {
		out = append(out, k)
	}
	return out
}
