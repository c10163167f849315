package handshake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
)

// Where says which scopes a kind acts on.
type Where int

// Scopes a kind may act on.
const (
	OnIMVU Where = iota
	OnPlatform
	OnEither
)

// Kind describes one action kind: who may ask for it, what it names and demands
// (Prepare), and its effect (Apply). Only the engine calls Apply, and only with a
// live Tx, which nothing outside this package can make.
type Kind struct {
	Name        string
	Resource    string          // the resource kind it changes; must have an exporter and importer (G16)
	Roles       []identity.Role // roles that may submit it (G03)
	Where       Where
	SelfIssued  bool // the action binds its own actor (the handshake)
	Duty        bool // an enumerated platform duty: G06 does not ask for consent; G09-G11 check it
	Countersign bool // the platform adds its signature before ledgering
	Exit        bool // part of exit: only G01-G03 and G17 apply
	Prepare     func(*Request) error
	Apply       func(*Tx) error

	engine *Engine
}

// Exporter writes one resource kind of an IMVU into an exit bundle folder.
type Exporter interface {
	Export(ctx context.Context, st *State, m *IMVU, dir string) error
}

// Importer restores one resource kind of an IMVU from an exit bundle folder.
type Importer interface {
	Import(ctx context.Context, st *State, m *IMVU, dir string) error
}

// Resource is a kind of data an IMVU owns. It cannot exist without a way out and a
// way back in (G16).
type Resource struct {
	Name     string
	Exporter Exporter
	Importer Importer
}

// RegisterResource adds a resource kind. Both exporter and importer are required.
func (e *Engine) RegisterResource(r Resource) error {
	switch {
	case r.Name == "":
		return errors.New("register resource: empty name")
	case r.Exporter == nil || r.Importer == nil:
		return fmt.Errorf("register resource %q: G16 requires both an exporter and an importer", r.Name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.resources[r.Name]; dup {
		return fmt.Errorf("register resource %q: already registered", r.Name)
	}
	e.resources[r.Name] = r
	return nil
}

// Register adds an action kind. Its resource kind must already be registered.
func (e *Engine) Register(k Kind) error {
	switch {
	case k.Prepare == nil || k.Apply == nil:
		return fmt.Errorf("register kind %q: Prepare and Apply are required", k.Name)
	case len(k.Roles) == 0 && !k.SelfIssued:
		return fmt.Errorf("register kind %q: no role may submit it", k.Name)
	}
	if _, err := action.New(k.Name, identity.ScopePlatform, identity.PublicKey{1}, struct{}{}); err != nil {
		return fmt.Errorf("register kind: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.resources[k.Resource]; !ok {
		return fmt.Errorf("register kind %q: resource kind %q has no exporter and importer (G16)", k.Name, k.Resource)
	}
	if _, dup := e.kinds[k.Name]; dup {
		return fmt.Errorf("register kind %q: already registered", k.Name)
	}
	k.engine = e
	e.kinds[k.Name] = &k
	return nil
}

// RegisterService adds a service's resource kind and the action kinds that
// change it, in one call.
func (e *Engine) RegisterService(r Resource, kinds ...Kind) error {
	if err := e.RegisterResource(r); err != nil {
		return err
	}
	for _, k := range kinds {
		if err := e.Register(k); err != nil {
			return err
		}
	}
	return nil
}

// DecodeParams decodes an action's parameters strictly (unknown fields are an
// error) into a new P, and keeps them in r.Params for the applier.
func DecodeParams[P any](r *Request) (*P, error) {
	p := new(P)
	if err := r.Action.Decode(p); err != nil {
		return nil, err
	}
	r.Params = p
	return p, nil
}

// ErrNoPermit is returned by a Tx used outside the engine's apply step.
var ErrNoPermit = errors.New("handshake: state changes only inside the engine's apply step")

// Tx is an applier's permit to change state: made by the engine after the action
// is durable in the ledger, valid only until the applier returns. The zero Tx
// permits nothing.
type Tx struct {
	engine *Engine
	req    *Request
	at     time.Time
	live   bool
	scope  string    // set on a Tx handed to another IMVU; "" means the action's scope
	handed *[]string // scopes reached through Hand, shared with the Tx it came from
}

func (tx *Tx) target() string {
	if tx.scope != "" {
		return tx.scope
	}
	return tx.req.Action.Scope
}

// Hand runs fn with a Tx on another IMVU that the action names for crossing
// (Use Refer): the one way an applier reaches past its scope, and only after
// G05 saw both owners sign. The handed Tx dies with fn's return.
func (tx *Tx) Hand(imvu string, fn func(*Tx) error) error {
	if err := tx.ok(); err != nil {
		return err
	}
	named := false
	for _, n := range tx.req.Names {
		named = named || (n.Type == "imvu" && n.ID == imvu && n.Use == Refer)
	}
	if !named {
		return fmt.Errorf("the action does not name %s for crossing", imvu)
	}
	if _, ok := tx.engine.state.IMVUs[imvu]; !ok && tx.engine.offline {
		return nil // derived offline from another IMVU's bundle: that side is not ours to rebuild
	}
	if tx.handed == nil {
		tx.handed = new([]string)
	}
	*tx.handed = append(*tx.handed, imvu)
	other := &Tx{engine: tx.engine, req: tx.req, at: tx.at, live: true, scope: imvu, handed: tx.handed}
	defer func() { other.live = false }()
	return fn(other)
}

func (tx *Tx) ok() error {
	if tx == nil || !tx.live || tx.engine == nil {
		return ErrNoPermit
	}
	return nil
}

// Action is the action being applied.
func (tx *Tx) Action() *action.Action {
	if tx.ok() != nil {
		return nil
	}
	return tx.req.Action
}

// Params is what the kind's Prepare decoded.
func (tx *Tx) Params() any {
	if tx.ok() != nil {
		return nil
	}
	return tx.req.Params
}

// Index is the ledger index of the action entry.
func (tx *Tx) Index() uint64 {
	if tx.ok() != nil {
		return 0
	}
	return tx.req.Index
}

// Offline reports whether the Tx belongs to an offline derivation of one
// IMVU's bundle, where other IMVUs an action reaches are absent.
func (tx *Tx) Offline() bool { return tx.engine != nil && tx.engine.offline }

// At is the time the action was ledgered: appliers use it, never the clock, so a
// replay reaches the same state.
func (tx *Tx) At() time.Time { return tx.at }

// IMVU returns the scope IMVU's state for change. It is the only IMVU a Tx reaches.
func (tx *Tx) IMVU() (*IMVU, error) {
	if err := tx.ok(); err != nil {
		return nil, err
	}
	m := tx.engine.state.IMVUs[tx.target()]
	if m == nil {
		return nil, fmt.Errorf("no IMVU %s", tx.target())
	}
	return m, nil
}

// Platform returns the platform state for change; only platform-scope actions get it.
func (tx *Tx) Platform() (*Platform, error) {
	if err := tx.ok(); err != nil {
		return nil, err
	}
	if tx.req.Action.Scope != identity.ScopePlatform {
		return nil, fmt.Errorf("platform state is out of reach of an action on %s", tx.req.Action.Scope)
	}
	return &tx.engine.state.Platform, nil
}

// CreateIMVU adds the scope IMVU.
func (tx *Tx) CreateIMVU(m *IMVU) error {
	if err := tx.ok(); err != nil {
		return err
	}
	if m.ID != tx.req.Action.Scope {
		return fmt.Errorf("create IMVU %s from an action on %s", m.ID, tx.req.Action.Scope)
	}
	if _, dup := tx.engine.state.IMVUs[m.ID]; dup {
		return fmt.Errorf("IMVU %s exists", m.ID)
	}
	tx.engine.state.IMVUs[m.ID] = m
	return nil
}

// Bind binds a resource name to the scope IMVU.
func (tx *Tx) Bind(n Name) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	key := n.String()
	if owner, ok := tx.engine.state.bindings[key]; ok && owner != m.ID {
		return fmt.Errorf("%s is bound to %s", key, owner)
	}
	tx.engine.state.bindings[key] = m.ID
	m.Bindings[key] = n.Type
	return nil
}

// Load decodes the scope IMVU's stored resource key into v; ok is false when
// there is none.
func (tx *Tx) Load(key string, v any) (ok bool, err error) {
	m, err := tx.IMVU()
	if err != nil {
		return false, err
	}
	raw, ok := m.Resources[key]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("resource %s of %s: %w", key, m.ID, err)
	}
	return true, nil
}

// Store encodes v as the scope IMVU's resource key; a nil v deletes it.
func (tx *Tx) Store(key string, v any) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	if v == nil {
		delete(m.Resources, key)
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("resource %s of %s: %w", key, m.ID, err)
	}
	if m.Resources == nil {
		m.Resources = map[string]json.RawMessage{}
	}
	m.Resources[key] = b
	return nil
}

// Unbind releases a resource name of the scope IMVU.
func (tx *Tx) Unbind(n Name) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	key := n.String()
	if owner := tx.engine.state.bindings[key]; owner != m.ID {
		return fmt.Errorf("%s is not bound to %s", key, m.ID)
	}
	delete(tx.engine.state.bindings, key)
	delete(m.Bindings, key)
	return nil
}
