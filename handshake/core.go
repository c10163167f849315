package handshake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// The built-in action kinds: the handshake itself, identities, envelopes and money.
const (
	KindCreate     = "imvu.create"
	KindExit       = "imvu.exit"
	KindIssue      = "identity.issue"
	KindRevoke     = "identity.revoke"
	KindResize     = "envelope.resize"
	KindCapacity   = "capacity.set"
	KindPriceAgree = "price.agree"
	KindUsage      = "usage.record"
	KindSettle     = "revenue.settle"
	KindAck        = "imvu.ack"
)

// Handshake is the record that creates an IMVU, signed by its creator and
// countersigned by the platform. Nothing outside it gives the platform power over
// the IMVU.
type Handshake struct {
	IMVU     string             `json:"imvu"`
	Owner    identity.PublicKey `json:"owner"`
	Platform identity.PublicKey `json:"platform"` // the platform the creator accepts; it countersigns

	Envelope   Resources          `json:"envelope"`
	PriceSheet revenue.PriceSheet `json:"price_sheet"`
	SheetHash  string             `json:"price_sheet_hash"`
	Split      [2]int             `json:"split"`
	GateSet    int                `json:"gate_set"`
	Powers     []string           `json:"powers"`
}

// IssueParams carries an identity to issue.
type IssueParams struct {
	Identity identity.Identity `json:"identity"`
}

// RevokeParams names the key to revoke.
type RevokeParams struct {
	Key identity.PublicKey `json:"key"`
}

// EnvelopeParams is a new envelope.
type EnvelopeParams struct {
	Envelope Resources `json:"envelope"`
}

// CapacityParams is a new declared capacity.
type CapacityParams struct {
	Capacity Resources `json:"capacity"`
}

// PriceParams is a price sheet agreement.
type PriceParams struct {
	From  string             `json:"from"`
	Sheet revenue.PriceSheet `json:"sheet"`
}

// UsageParams is a batch of meter readings for one IMVU.
type UsageParams struct {
	Events []revenue.Usage `json:"events"`
}

// SettleParams is a settlement as asserted by the platform.
type SettleParams struct {
	Period   string         `json:"period"`
	First    uint64         `json:"first"`
	Last     uint64         `json:"last"`
	Sheet    string         `json:"sheet"`
	Gross    revenue.Amount `json:"gross"`
	Creator  revenue.Amount `json:"creator"`
	Platform revenue.Amount `json:"platform"`
}

// ExitParams starts an exit.
type ExitParams struct{}

// AckParams is the owner's acknowledgement that it holds its exit bundle: only
// now may the platform delete the IMVU's data.
type AckParams struct {
	Bundle string `json:"bundle"` // hex SHA-256 of the bundle file the owner received
}

type stateResource struct{ file string }

// Export writes the IMVU's engine state: handshake terms, envelope, members,
// counters and settlements.
func (r stateResource) Export(_ context.Context, _ *State, m *IMVU, dir string) error {
	_, b, err := m.Hash()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, r.file), b, 0o644)
}

// Import checks the exported state names the IMVU it is restored into.
func (r stateResource) Import(_ context.Context, _ *State, m *IMVU, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, r.file))
	if err != nil {
		return fmt.Errorf("import %s: %w", r.file, err)
	}
	var got IMVU
	if err := json.Unmarshal(b, &got); err != nil {
		return fmt.Errorf("import %s: %w", r.file, err)
	}
	if got.ID != m.ID {
		return fmt.Errorf("import %s: state of %s, not %s", r.file, got.ID, m.ID)
	}
	return nil
}

func registerCore(e *Engine) error {
	for _, r := range []string{"imvu", "identity", "envelope", "revenue"} {
		if err := e.RegisterResource(Resource{Name: r, Exporter: stateResource{"state.json"}, Importer: stateResource{"state.json"}}); err != nil {
			return err
		}
	}
	admin := []identity.Role{identity.RolePlatform, identity.RoleAdmin}
	kinds := []Kind{
		{Name: KindCreate, Resource: "imvu", Where: OnIMVU, SelfIssued: true, Countersign: true, Prepare: prepareCreate, Apply: applyCreate},
		{Name: KindExit, Resource: "imvu", Where: OnIMVU, Roles: []identity.Role{identity.RoleOwner}, Exit: true,
			Prepare: decodeInto(func(r *Request, _ *ExitParams) error {
				if m := r.IMVU(); m != nil && m.Status == StatusExited {
					return fmt.Errorf("%s has already exited", m.ID)
				}
				return nil
			}), Apply: applyExit},
		{Name: KindAck, Resource: "imvu", Where: OnIMVU, Roles: []identity.Role{identity.RoleOwner}, Exit: true,
			Prepare: decodeInto(func(r *Request, p *AckParams) error {
				if len(p.Bundle) != 64 {
					return fmt.Errorf("bundle hash %q: want 64 hex digits", p.Bundle)
				}
				if m := r.IMVU(); m != nil && m.Status != StatusExiting {
					return fmt.Errorf("%s is %s; only an exiting IMVU is acknowledged", m.ID, m.Status)
				}
				return nil
			}), Apply: applyAck},
		{Name: KindIssue, Resource: "identity", Where: OnEither, Roles: []identity.Role{identity.RolePlatform, identity.RoleOwner}, Prepare: prepareIssue, Apply: applyIssue},
		{Name: KindRevoke, Resource: "identity", Where: OnEither, Roles: []identity.Role{identity.RolePlatform, identity.RoleOwner}, Prepare: prepareRevoke, Apply: applyRevoke},
		{Name: KindResize, Resource: "envelope", Where: OnIMVU, Roles: append([]identity.Role{identity.RoleOwner}, admin...),
			Prepare: decodeInto(func(r *Request, p *EnvelopeParams) error { r.Envelope = &p.Envelope; return nil }), Apply: applyResize},
		{Name: KindCapacity, Resource: "envelope", Where: OnPlatform, Roles: admin,
			Prepare: decodeInto(func(r *Request, p *CapacityParams) error { r.Capacity = &p.Capacity; return nil }), Apply: applyCapacity},
		{Name: KindPriceAgree, Resource: "revenue", Where: OnIMVU, Roles: admin, Prepare: preparePrice, Apply: applyPrice},
		{Name: KindUsage, Resource: "revenue", Where: OnIMVU, Roles: []identity.Role{identity.RoleMeter}, Duty: true, Prepare: prepareUsage, Apply: applyUsage},
		{Name: KindSettle, Resource: "revenue", Where: OnIMVU, Roles: admin, Duty: true, Prepare: prepareSettle, Apply: applySettle},
	}
	for _, k := range kinds {
		if err := e.Register(k); err != nil {
			return err
		}
	}
	return nil
}

// decodeInto returns a Prepare that decodes params strictly into a P and hands
// them to more (which may be nil).
func decodeInto[P any](more func(*Request, *P) error) func(*Request) error {
	return func(r *Request) error {
		p, err := DecodeParams[P](r)
		if err != nil {
			return err
		}
		if more != nil {
			return more(r, p)
		}
		return nil
	}
}

var prepareCreate = decodeInto(func(r *Request, h *Handshake) error {
	switch {
	case h.IMVU != r.Action.Scope:
		return fmt.Errorf("handshake names IMVU %q but the action is on %q", h.IMVU, r.Action.Scope)
	case h.Owner != r.Action.Actor:
		return fmt.Errorf("handshake names owner %s but is signed by %s", h.Owner, r.Action.Actor)
	case h.Platform != r.State.Platform.Genesis.Platform:
		return fmt.Errorf("handshake names platform %s; this platform is %s", h.Platform, r.State.Platform.Genesis.Platform)
	case h.GateSet != GateSet:
		return fmt.Errorf("handshake names gate set %d; this platform enforces %d", h.GateSet, GateSet)
	case h.Envelope.IsZero():
		return errors.New("handshake has an empty envelope")
	}
	if err := h.PriceSheet.Validate(); err != nil {
		return err
	}
	if got := hexHash(h.PriceSheet.Hash()); got != h.SheetHash {
		return fmt.Errorf("price sheet hash %s does not match the sheet (%s)", short(h.SheetHash), short(got))
	}
	for _, p := range h.Powers {
		if !slices.Contains(r.State.Platform.Genesis.Powers, p) {
			return fmt.Errorf("power %q is not one the platform enumerates", p)
		}
	}
	r.Names = []Name{{Type: "imvu", ID: h.IMVU, Use: Create}}
	if d := homeDomain(r.State, h.IMVU); d != "" {
		r.Names = append(r.Names, Name{Type: "domain", ID: d, Use: Create})
	}
	r.Envelope = &h.Envelope
	r.Split = &h.Split
	return nil
})

func applyCreate(tx *Tx) error {
	h := tx.Params().(*Handshake)
	cal := tx.engine.state.Calendar
	m := &IMVU{ID: h.IMVU, Owner: h.Owner, Handshake: tx.Index(), Created: tx.At(), Status: StatusActive,
		Envelope: h.Envelope, Powers: h.Powers,
		Terms:   []Term{{From: cal.Of(tx.At()).String(), Sheet: h.PriceSheet, Hash: h.SheetHash, Index: tx.Index()}},
		Members: map[identity.PublicKey]identity.Identity{}, Revoked: map[identity.PublicKey]uint64{},
		Counters: map[string]Counter{}, Settled: map[string]Settlement{}, Bindings: map[string]string{}}
	if err := tx.CreateIMVU(m); err != nil {
		return err
	}
	if d := homeDomain(tx.engine.state, h.IMVU); d != "" {
		if err := tx.Bind(Name{Type: "domain", ID: d}); err != nil {
			return err
		}
	}
	return tx.Bind(Name{Type: "imvu", ID: h.IMVU})
}

// homeDomain is the domain an IMVU receives at creation: its id under the
// platform's first TLD ("imvu042.world"), or "" when the platform has none.
func homeDomain(s *State, id string) string {
	if len(s.Platform.Genesis.TLDs) == 0 {
		return ""
	}
	return id + "." + s.Platform.Genesis.TLDs[0]
}

func applyExit(tx *Tx) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	m.Status = StatusExiting
	return nil
}

func applyAck(tx *Tx) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	m.Status = StatusExited
	m.Acked = tx.Params().(*AckParams).Bundle
	// The names stay bound to the exited IMVU, so nobody else on this platform
	// can take them: they are its owner's, as the bundle's hand-over says.
	return nil
}

var prepareIssue = decodeInto(func(r *Request, p *IssueParams) error {
	st := p.Identity.Statement()
	switch {
	case r.Action.Scope == identity.ScopePlatform && r.Action.Actor != r.State.Platform.Genesis.Root:
		return errors.New("platform identities are issued by the root key only")
	case st.Issuer != r.Action.Actor:
		return fmt.Errorf("identity is issued by %s, not by the actor", st.Issuer)
	case st.Scope != r.Action.Scope:
		return fmt.Errorf("identity is for scope %s, not %s", st.Scope, r.Action.Scope)
	case r.Action.Scope == identity.ScopePlatform && st.Role != identity.RoleAdmin && st.Role != identity.RoleMeter:
		return fmt.Errorf("the platform issues admins and meters, not %s", st.Role)
	case r.Action.Scope != identity.ScopePlatform && st.Role != identity.RoleMember:
		return fmt.Errorf("an IMVU owner issues members, not %s", st.Role)
	case r.State.Known(st.Subject):
		return fmt.Errorf("key %s already holds an identity", st.Subject)
	}
	r.Issued = &p.Identity
	return nil
})

func applyIssue(tx *Tx) error {
	id := tx.Params().(*IssueParams).Identity
	if tx.Action().Scope == identity.ScopePlatform {
		p, err := tx.Platform()
		if err != nil {
			return err
		}
		p.Identities[id.Statement().Subject] = id
		return nil
	}
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	m.Members[id.Statement().Subject] = id
	return nil
}

var prepareRevoke = decodeInto(func(r *Request, p *RevokeParams) error {
	var issuer identity.PublicKey
	if r.Action.Scope == identity.ScopePlatform {
		id, ok := r.State.Platform.Identities[p.Key]
		if !ok {
			return fmt.Errorf("no platform identity for %s", p.Key)
		}
		issuer = id.Statement().Issuer
	} else {
		m := r.State.IMVUs[r.Action.Scope]
		if m == nil {
			return fmt.Errorf("no IMVU %s", r.Action.Scope)
		}
		id, ok := m.Members[p.Key]
		if !ok {
			return fmt.Errorf("no member %s of %s", p.Key, m.ID)
		}
		issuer = id.Statement().Issuer
	}
	if issuer != r.Action.Actor {
		return fmt.Errorf("only the issuer %s may revoke %s", issuer, p.Key)
	}
	if r.Action.Scope == identity.ScopePlatform && r.Action.Actor != r.State.Platform.Genesis.Root {
		return errors.New("platform identities are revoked by the root key only")
	}
	r.Revokes = &p.Key
	return nil
})

func applyRevoke(tx *Tx) error {
	k := tx.Params().(*RevokeParams).Key
	if tx.Action().Scope == identity.ScopePlatform {
		p, err := tx.Platform()
		if err != nil {
			return err
		}
		p.Revoked[k] = tx.Index()
		return nil
	}
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	m.Revoked[k] = tx.Index()
	return nil
}

func applyResize(tx *Tx) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	m.Envelope = tx.Params().(*EnvelopeParams).Envelope
	return nil
}

func applyCapacity(tx *Tx) error {
	p, err := tx.Platform()
	if err != nil {
		return err
	}
	p.Capacity = tx.Params().(*CapacityParams).Capacity
	return nil
}

var preparePrice = decodeInto(func(r *Request, p *PriceParams) error {
	if err := p.Sheet.Validate(); err != nil {
		return err
	}
	r.Sheet = &Term{From: p.From, Sheet: p.Sheet, Hash: hexHash(p.Sheet.Hash())}
	return nil
})

func applyPrice(tx *Tx) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	t := *tx.req.Sheet
	t.Index = tx.Index()
	m.Terms = append(m.Terms, t)
	return nil
}

var prepareUsage = decodeInto(func(r *Request, p *UsageParams) error {
	if len(p.Events) == 0 {
		return errors.New("no usage events")
	}
	r.Usage = p.Events
	return nil
})

func applyUsage(tx *Tx) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	for _, u := range tx.Params().(*UsageParams).Events {
		u.Index = tx.Index()
		m.usage = append(m.usage, u)
		m.Counters[u.Resource+"/"+u.Meter] = Counter{Value: u.Counter, At: u.At, Index: tx.Index()}
	}
	return nil
}

var prepareSettle = decodeInto(func(r *Request, p *SettleParams) error {
	r.Settlement = &Settlement{SettleParams: *p}
	return nil
})

func applySettle(tx *Tx) error {
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	s := *tx.req.Settlement
	s.Index = tx.Index()
	m.Settled[s.Period] = s
	return nil
}

// Statement recomputes the revenue statement of one period from the IMVU's usage
// and the price sheet in force for that period.
func (m *IMVU) Statement(cal revenue.Calendar, period string) (revenue.Statement, error) {
	p, err := cal.Parse(period)
	if err != nil {
		return revenue.Statement{}, err
	}
	term, ok := m.TermAt(cal, p)
	if !ok {
		return revenue.Statement{}, fmt.Errorf("no price sheet agreed for %s", period)
	}
	return revenue.Settle(m.ID, p, term.Sheet, m.usage)
}
