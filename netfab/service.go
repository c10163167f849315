package netfab

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// The action kinds this package registers: the ledger's side of the network.
// What they record is the only input to Desired; the Plane makes the kernel
// match it.
const (
	KindCreate = "net.create"       // give the IMVU its network and prefix
	KindRoute  = "net.route.set"    // a workload's route class and egress point
	KindPolicy = "net.policy"       // the egress points the IMVU may use
	KindGrant  = "net.grant"        // a path between two IMVUs' workloads; both owners sign
	KindRevoke = "net.grant.revoke" // either side withdraws its half of a grant
)

// Resource is the resource kind of networks.
const Resource = "net"

const stateKey = "net"

// Pool is where IMVU prefixes are taken from, one /24 each, in order.
var Pool = netip.MustParsePrefix("10.96.0.0/11")

// State is an IMVU's network as the ledger left it.
type State struct {
	Prefix string           `json:"prefix,omitempty"`
	Routes map[string]Route `json:"routes,omitempty"` // workload -> route; absent: private
	Egress []string         `json:"egress,omitempty"` // egress points the IMVU may use
	Grants map[string]Half  `json:"grants,omitempty"` // grant ID -> this IMVU's half
}

// Route is a workload's route class and, for public routes, where it leaves.
type Route struct {
	Class  Class  `json:"class"`
	Egress string `json:"egress,omitempty"`
}

// Half is one IMVU's consent to a grant. A path exists while both halves do.
type Half struct {
	ID    string   `json:"id"`
	From  Endpoint `json:"from"`
	To    Endpoint `json:"to"`
	Port  uint16   `json:"port"`
	Proto string   `json:"proto"`
	Index uint64   `json:"index"` // ledger index of the grant
}

// StateOf returns the network state of an IMVU.
func StateOf(m *handshake.IMVU) State {
	s := State{}
	if raw, ok := m.Resources[stateKey]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	if s.Routes == nil {
		s.Routes = map[string]Route{}
	}
	if s.Grants == nil {
		s.Grants = map[string]Half{}
	}
	return s
}

func load(tx *handshake.Tx) (State, error) {
	s := State{}
	if _, err := tx.Load(stateKey, &s); err != nil {
		return s, err
	}
	if s.Routes == nil {
		s.Routes = map[string]Route{}
	}
	if s.Grants == nil {
		s.Grants = map[string]Half{}
	}
	return s, nil
}

// CreateParams are empty: the prefix is the next free one of the Pool,
// chosen by Prepare from the state, so replay chooses the same.
type CreateParams struct {
	Prefix string `json:"prefix,omitempty"` // filled in by Prepare; a caller may not choose
}

// RouteParams set a workload's route.
type RouteParams struct {
	Workload string `json:"workload"`
	Class    Class  `json:"class"`
	Egress   string `json:"egress,omitempty"`
}

// PolicyParams name the egress points the IMVU may use.
type PolicyParams struct {
	Egress []string `json:"egress"`
}

// GrantParams open a path from one IMVU's workload to another's port.
type GrantParams struct {
	From  Endpoint `json:"from"`
	To    Endpoint `json:"to"`
	Port  uint16   `json:"port"`
	Proto string   `json:"proto"` // tcp or udp; default tcp
}

// RevokeParams name a grant.
type RevokeParams struct {
	ID string `json:"id"`
}

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)
	egressRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,15}$`)
)

// Register adds the network resource and kinds to the engine.
func Register(e *handshake.Engine, exp handshake.Exporter, imp handshake.Importer) error {
	// Admins are listed so that G06 asks for the owner's consent: an admin
	// alone cannot reroute an IMVU.
	roles := []identity.Role{identity.RoleOwner, identity.RoleAdmin}
	kinds := []handshake.Kind{
		{Name: KindCreate, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareCreate, Apply: applyCreate},
		{Name: KindRoute, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareRoute, Apply: applyRoute},
		{Name: KindPolicy, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: preparePolicy, Apply: applyPolicy},
		{Name: KindGrant, Resource: Resource, Where: handshake.OnIMVU, Roles: []identity.Role{identity.RoleOwner}, Prepare: prepareGrant, Apply: applyGrant},
		{Name: KindRevoke, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareRevoke, Apply: applyRevoke},
	}
	return e.RegisterService(handshake.Resource{Name: Resource, Exporter: exp, Importer: imp}, kinds...)
}

func imvuOf(r *handshake.Request) (*handshake.IMVU, error) {
	m := r.IMVU()
	if m == nil {
		return nil, fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	return m, nil
}

// nthPrefix is the n-th /24 of the Pool.
func nthPrefix(n uint32) (netip.Prefix, bool) {
	if n >= 1<<(24-Pool.Bits()) {
		return netip.Prefix{}, false
	}
	b := Pool.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + n<<8
	binary.BigEndian.PutUint32(b[:], v)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24), true
}

func prepareCreate(r *handshake.Request) error {
	p, err := handshake.DecodeParams[CreateParams](r)
	if err != nil {
		return err
	}
	m, err := imvuOf(r)
	if err != nil {
		return err
	}
	if StateOf(m).Prefix != "" && !r.Replay {
		return fmt.Errorf("%s has its network (%s) already", m.ID, StateOf(m).Prefix)
	}
	if p.Prefix != "" && !r.Replay {
		return fmt.Errorf("prefix %q: the platform assigns prefixes; leave it out", p.Prefix)
	}
	for n := uint32(0); ; n++ {
		pfx, ok := nthPrefix(n)
		if !ok {
			return fmt.Errorf("no free /24 left in %s", Pool)
		}
		if _, taken := r.State.BoundTo("netprefix:" + pfx.String()); !taken {
			p.Prefix = pfx.String()
			break
		}
	}
	r.Names = append(r.Names, handshake.Name{Type: "netprefix", ID: p.Prefix, Use: handshake.Create})
	return nil
}

func applyCreate(tx *handshake.Tx) error {
	p := tx.Params().(*CreateParams)
	s, err := load(tx)
	if err != nil {
		return err
	}
	s.Prefix = p.Prefix
	if err := tx.Bind(handshake.Name{Type: "netprefix", ID: p.Prefix}); err != nil {
		return err
	}
	return tx.Store(stateKey, s)
}

func prepareRoute(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RouteParams](r)
	if err != nil {
		return err
	}
	m, err := imvuOf(r)
	if err != nil {
		return err
	}
	if !nameRE.MatchString(p.Workload) {
		return fmt.Errorf("workload %q: want a workload name", p.Workload)
	}
	switch p.Class {
	case Private, Restricted:
		if p.Egress != "" {
			return fmt.Errorf("route %s: only public routes leave through an egress point", p.Class)
		}
	case Public:
	default:
		return fmt.Errorf("route class %q: want public, private or restricted", p.Class)
	}
	s := StateOf(m)
	if s.Prefix == "" && !r.Replay {
		return fmt.Errorf("%s has no network yet (net.create)", m.ID)
	}
	if p.Egress != "" && !slices.Contains(s.Egress, p.Egress) && !r.Replay {
		return fmt.Errorf("egress %q is not in %s's egress policy %v", p.Egress, m.ID, s.Egress)
	}
	return nil
}

func applyRoute(tx *handshake.Tx) error {
	p := tx.Params().(*RouteParams)
	s, err := load(tx)
	if err != nil {
		return err
	}
	s.Routes[p.Workload] = Route{Class: p.Class, Egress: p.Egress}
	return tx.Store(stateKey, s)
}

func preparePolicy(r *handshake.Request) error {
	p, err := handshake.DecodeParams[PolicyParams](r)
	if err != nil {
		return err
	}
	if _, err := imvuOf(r); err != nil {
		return err
	}
	for _, e := range p.Egress {
		if !egressRE.MatchString(e) {
			return fmt.Errorf("egress point %q: want a name of 1-16 of a-z 0-9 -", e)
		}
	}
	return nil
}

func applyPolicy(tx *handshake.Tx) error {
	p := tx.Params().(*PolicyParams)
	s, err := load(tx)
	if err != nil {
		return err
	}
	s.Egress = slices.Clone(p.Egress)
	slices.Sort(s.Egress)
	s.Egress = slices.Compact(s.Egress)
	// A route through a point no longer allowed falls back to none.
	for w, rt := range s.Routes {
		if rt.Egress != "" && !slices.Contains(s.Egress, rt.Egress) {
			rt.Egress = ""
			s.Routes[w] = rt
		}
	}
	return tx.Store(stateKey, s)
}

func prepareGrant(r *handshake.Request) error {
	p, err := handshake.DecodeParams[GrantParams](r)
	if err != nil {
		return err
	}
	if p.Proto == "" {
		p.Proto = "tcp"
	}
	switch {
	case p.From.IMVU != r.Action.Scope:
		return fmt.Errorf("a grant is submitted in the scope of its From IMVU (%s), not %s", p.From.IMVU, r.Action.Scope)
	case p.To.IMVU == p.From.IMVU:
		return fmt.Errorf("%s's workloads reach each other on its own network; a grant is between two IMVUs", p.From.IMVU)
	case !nameRE.MatchString(p.From.Workload) || !nameRE.MatchString(p.To.Workload):
		return fmt.Errorf("grant %s:%s -> %s:%s: want workload names", p.From.IMVU, p.From.Workload, p.To.IMVU, p.To.Workload)
	case p.Port == 0:
		return fmt.Errorf("grant: port 0; name the port the path opens")
	case p.Proto != "tcp" && p.Proto != "udp":
		return fmt.Errorf("grant: protocol %q; want tcp or udp", p.Proto)
	}
	if !r.Replay {
		for _, id := range []string{p.From.IMVU, p.To.IMVU} {
			m, ok := r.State.IMVUs[id]
			if !ok {
				return fmt.Errorf("no IMVU %s", id)
			}
			if StateOf(m).Prefix == "" {
				return fmt.Errorf("%s has no network yet (net.create)", id)
			}
		}
	}
	// G14: a path between two IMVUs needs both owners' signatures; G05:
	// the other side's half is written through the crossing both signed.
	r.Peers = append(r.Peers, p.To.IMVU)
	r.Names = append(r.Names, handshake.Name{Type: "imvu", ID: p.To.IMVU, Use: handshake.Refer})
	return nil
}

// GrantID names the grant a ledger entry made.
func GrantID(index uint64) string { return "g" + strconv.FormatUint(index, 10) }

func applyGrant(tx *handshake.Tx) error {
	p := tx.Params().(*GrantParams)
	h := Half{ID: GrantID(tx.Index()), From: p.From, To: p.To, Port: p.Port, Proto: p.Proto, Index: tx.Index()}
	put := func(tx *handshake.Tx) error {
		s, err := load(tx)
		if err != nil {
			return err
		}
		s.Grants[h.ID] = h
		return tx.Store(stateKey, s)
	}
	if err := put(tx); err != nil {
		return err
	}
	return tx.Hand(p.To.IMVU, put)
}

func prepareRevoke(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RevokeParams](r)
	if err != nil {
		return err
	}
	m, err := imvuOf(r)
	if err != nil {
		return err
	}
	if _, ok := StateOf(m).Grants[p.ID]; !ok && !r.Replay {
		return fmt.Errorf("%s holds no grant %s", m.ID, p.ID)
	}
	return nil
}

// applyRevoke drops only the revoking side's half: withdrawing consent needs
// no one else's, and the path needs both.
func applyRevoke(tx *handshake.Tx) error {
	p := tx.Params().(*RevokeParams)
	s, err := load(tx)
	if err != nil {
		return err
	}
	delete(s.Grants, p.ID)
	return tx.Store(stateKey, s)
}
