package handshake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// Genesis is the first ledger entry: the platform's keys and the constants every
// later gate reads. It is written once by `nexus init` and never changes.
type Genesis struct {
	Platform     identity.PublicKey  `json:"platform"`      // ledger key: checkpoints, countersignatures, settlements
	Root         identity.PublicKey  `json:"root"`          // issues admins and meters
	Identities   []identity.Identity `json:"identities"`    // the first admin and the meters
	Capacity     Resources           `json:"capacity"`      // what the host declares it has
	PlatformEnv  Resources           `json:"platform_env"`  // the platform's own envelope, counted in capacity
	Skew         Duration            `json:"skew"`          // G02 window
	PeriodLength Duration            `json:"period_length"` // 0 = calendar months
	GateSet      int                 `json:"gate_set"`
	Powers       []string            `json:"powers"`                // platform powers an IMVU may pre-consent to
	TLDs         []string            `json:"tlds"`                  // platform TLDs: imvu create binds <id>.<first TLD>
	Nameservers  []string            `json:"nameservers,omitempty"` // NS of every zone the platform serves
	Hostmaster   string              `json:"hostmaster,omitempty"`  // SOA contact of those zones
}

// Duration is a time.Duration that reads and writes as text ("5m").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// Status is where an IMVU is in its life.
type Status string

// IMVU statuses.
const (
	StatusActive  Status = "active"
	StatusExiting Status = "exiting"
	StatusExited  Status = "exited"
)

// Term is a price sheet and the first period it prices.
type Term struct {
	From  string             `json:"from"` // period label
	Sheet revenue.PriceSheet `json:"sheet"`
	Hash  string             `json:"hash"`
	Index uint64             `json:"index"` // ledger index of the agreement
}

// Settlement is a settled period: what the platform asserted, and where the
// ledger holds it.
type Settlement struct {
	SettleParams
	Index uint64 `json:"index"`
}

// IMVU is the engine's record of one tenant. Everything here is derived from the
// ledger; the copy on disk under DATA/imvu/<ID>/state.json is checked against it.
type IMVU struct {
	ID        string                                   `json:"id"`
	Owner     identity.PublicKey                       `json:"owner"`
	Handshake uint64                                   `json:"handshake"` // ledger index of the handshake record
	Created   time.Time                                `json:"created"`
	Status    Status                                   `json:"status"`
	Envelope  Resources                                `json:"envelope"`
	Used      Resources                                `json:"used"`
	Powers    []string                                 `json:"powers"`
	Terms     []Term                                   `json:"terms"`
	Members   map[identity.PublicKey]identity.Identity `json:"members"`
	Revoked   map[identity.PublicKey]uint64            `json:"revoked"`
	Counters  map[string]Counter                       `json:"counters"` // "resource/meter" -> newest
	Settled   map[string]Settlement                    `json:"settled"`
	Bindings  map[string]string                        `json:"bindings"`        // resource name -> type
	Acked     string                                   `json:"acked,omitempty"` // hash of the bundle the owner acknowledged
	Resources map[string]json.RawMessage               `json:"resources,omitempty"`

	usage []revenue.Usage // every usage event, in ledger order; rebuilt by replay
}

// Counter is the newest value of one meter's cumulative counter.
type Counter struct {
	Value uint64    `json:"value"`
	At    time.Time `json:"at"`
	Index uint64    `json:"index"`
}

// Usage returns the IMVU's usage events in ledger order. The slice is shared: do
// not modify it.
func (m *IMVU) Usage() []revenue.Usage { return m.usage }

// TermAt returns the price sheet in force for period p (label), if any.
func (m *IMVU) TermAt(cal revenue.Calendar, p revenue.Period) (Term, bool) {
	var best Term
	found := false
	for _, t := range m.Terms {
		tp, err := cal.Parse(t.From)
		if err != nil || tp.Start.After(p.Start) {
			continue
		}
		if !found || !tp.Start.Before(mustParse(cal, best.From).Start) {
			best, found = t, true
		}
	}
	return best, found
}

func mustParse(cal revenue.Calendar, s string) revenue.Period {
	p, _ := cal.Parse(s)
	return p
}

// Hash is the hex SHA-256 of the IMVU's canonical JSON: the "state" an effect
// entry commits to.
func (m *IMVU) Hash() (string, []byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", nil, fmt.Errorf("encode state of %s: %w", m.ID, err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), b, nil
}

// Platform is the platform-scope state.
type Platform struct {
	Genesis    Genesis                                  `json:"genesis"`
	Capacity   Resources                                `json:"capacity"`
	Identities map[identity.PublicKey]identity.Identity `json:"identities"` // admins and meters
	Revoked    map[identity.PublicKey]uint64            `json:"revoked"`
}

// Hash is the hex SHA-256 of the platform state's canonical JSON.
func (p *Platform) Hash() (string, []byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", nil, fmt.Errorf("encode platform state: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), b, nil
}

// State is everything the gates read. Only the engine mutates it, through a Tx.
type State struct {
	Platform Platform
	IMVUs    map[string]*IMVU
	Calendar revenue.Calendar

	nonces   map[identity.PublicKey]*nonceSet
	bindings map[string]string // resource name -> IMVU id, across all IMVUs
}

func newState(g Genesis) *State {
	s := &State{
		Platform: Platform{Genesis: g, Capacity: g.Capacity,
			Identities: map[identity.PublicKey]identity.Identity{},
			Revoked:    map[identity.PublicKey]uint64{}},
		IMVUs:    map[string]*IMVU{},
		Calendar: revenue.Calendar{Length: time.Duration(g.PeriodLength)},
		nonces:   map[identity.PublicKey]*nonceSet{},
		bindings: map[string]string{},
	}
	for _, id := range g.Identities {
		s.Platform.Identities[id.Statement().Subject] = id
	}
	return s
}

// BoundTo returns the IMVU a resource name is bound to.
func (s *State) BoundTo(name string) (string, bool) {
	id, ok := s.bindings[name]
	return id, ok
}

// Allocated sums every IMVU envelope and the platform's own.
func (s *State) Allocated() (Resources, error) {
	total := s.Platform.Genesis.PlatformEnv
	ids := make([]string, 0, len(s.IMVUs))
	for id := range s.IMVUs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		m := s.IMVUs[id]
		if m.Status == StatusExited {
			continue
		}
		var err error
		if total, err = total.Add(m.Envelope); err != nil {
			return total, err
		}
	}
	return total, nil
}

// Role is who a key is within a scope, and the identity that says so.
type Role struct {
	Role     identity.Role
	Identity *identity.Identity // nil for the platform key and IMVU owners (bound by genesis and handshake)
	Revoked  bool
}

// RoleOf resolves key within scope. ok is false when the key has no identity there.
func (s *State) RoleOf(key identity.PublicKey, scope string) (Role, bool) {
	g := s.Platform.Genesis
	if scope == identity.ScopePlatform {
		switch key {
		case g.Platform:
			return Role{Role: identity.RolePlatform}, true
		case g.Root:
			return Role{Role: identity.RolePlatform}, true
		}
		if id, ok := s.Platform.Identities[key]; ok {
			_, rev := s.Platform.Revoked[key]
			return Role{Role: id.Statement().Role, Identity: &id, Revoked: rev}, true
		}
		return Role{}, false
	}
	m, ok := s.IMVUs[scope]
	if !ok {
		return Role{}, false
	}
	if key == m.Owner {
		_, rev := m.Revoked[key]
		return Role{Role: identity.RoleOwner, Revoked: rev}, true
	}
	if id, ok := m.Members[key]; ok {
		_, rev := m.Revoked[key]
		return Role{Role: identity.RoleMember, Identity: &id, Revoked: rev}, true
	}
	return Role{}, false
}

// Known reports whether key holds any identity anywhere: such a key is an
// authenticated actor even where it has no role, so its denials are ledgered one by
// one rather than counted as junk.
func (s *State) Known(key identity.PublicKey) bool {
	if _, ok := s.RoleOf(key, identity.ScopePlatform); ok {
		return true
	}
	_, ok := s.roleAnywhere(key)
	return ok
}

// roleAnywhere finds key as an owner or member of any IMVU.
func (s *State) roleAnywhere(key identity.PublicKey) (Role, bool) {
	for id := range s.IMVUs {
		if r, ok := s.RoleOf(key, id); ok {
			return r, true
		}
	}
	return Role{}, false
}

func (s *State) seenNonce(key identity.PublicKey, nonce string) bool {
	set := s.nonces[key]
	if set == nil {
		return false
	}
	_, ok := set.seen[nonce]
	return ok
}

// nonceSet is one actor's spent nonces and when each stops mattering.
type nonceSet struct {
	seen    map[string]time.Time
	pruneAt int // prune when seen grows to this size: amortised O(1) per use
}

// useNonce remembers a nonce for as long as G02's window could still admit its
// action, and forgets the actor's nonces that no window can admit any more. The
// horizon is the engine's clock, never an issued-at the actor chose: a far-future
// action must not push older nonces out.
func (s *State) useNonce(key identity.PublicKey, nonce string, issued, now time.Time) {
	set := s.nonces[key]
	if set == nil {
		set = &nonceSet{seen: map[string]time.Time{}, pruneAt: 64}
		s.nonces[key] = set
	}
	skew := time.Duration(s.Platform.Genesis.Skew)
	set.seen[nonce] = issued.Add(skew)
	if len(set.seen) < set.pruneAt {
		return
	}
	for n, until := range set.seen {
		if until.Before(now.Add(-skew)) {
			delete(set.seen, n)
		}
	}
	set.pruneAt = max(64, 2*len(set.seen))
}
