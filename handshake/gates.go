package handshake

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// GateSet is the version of the gate set the handshake records.
const GateSet = 17

// Gate is one executable check of the handshake. Check is pure: it reads the
// request and the state and returns nil or the reason for denial.
type Gate struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Checks string `json:"checks"`
	check  func(*Request) error
}

// Denial is a gate's refusal.
type Denial struct {
	Gate   string `json:"gate"`
	Reason string `json:"reason"`
	Index  uint64 `json:"index"` // ledger index of the denial entry, when ledgered
	// Summarised is set when the actor holds no identity (a refused handshake
	// from a fresh key): the denial is counted in the next junk summary instead
	// of getting an entry of its own, so throwaway keys cannot fill the ledger.
	Summarised bool `json:"summarised,omitempty"`
}

func (d *Denial) Error() string { return "denied by " + d.Gate + ": " + d.Reason }

// Gates returns the 17 gates in the order the engine runs them.
func Gates() []Gate {
	return []Gate{
		{"G01", "Authenticity", "every signature verifies; the actor's identity is issued, unexpired and unrevoked", gateAuthenticity},
		{"G02", "Freshness", "the nonce is new for the actor and issued-at is within the skew window", gateFreshness},
		{"G03", "Scope", "the action has one scope and the actor's role there permits its kind", gateScope},
		{"G04", "Ownership", "every resource the action names is bound to the scope IMVU", gateOwnership},
		{"G05", "Isolation", "the effect touches only the scope IMVU's state, except through a co-signed grant", gateIsolation},
		{"G06", "Consent", "an action on an IMVU by a non-IMVU actor carries the owner's co-signature, unless it is an enumerated platform duty", gateConsent},
		{"G07", "Envelope", "the resource demand fits what is left of the IMVU's envelope", gateEnvelope},
		{"G08", "Capacity and anti-siphon", "all envelopes fit declared capacity; no envelope shrinks without its IMVU's consent", gateCapacity},
		{"G09", "Split integrity", "the split is 55/45 and every settlement has creator + platform = gross, once per closed period", gateSplit},
		{"G10", "Attribution", "usage names its IMVU, resource and meter, is signed by that meter and its counter never goes down", gateAttribution},
		{"G11", "Price agreement", "usage is priced only by the sheet the IMVU co-signed, from the period after it signed", gatePrice},
		{"G12", "Name authority", "DNS and registry changes stay inside names bound to the IMVU; a transfer needs the holder", gateNames},
		{"G13", "Mail identity", "mail is sent only as addresses in the IMVU's own domains", gateMail},
		{"G14", "Route integrity", "routes change only by the IMVU's signature; a path between two IMVUs needs both", gateRoutes},
		{"G15", "Write-ahead audit", "the ledger is healthy, so the action is durable before any effect", gateAudit},
		{"G16", "Exportability", "the resource kind the action touches has an exporter and an importer", gateExport},
		{"G17", "Exit freedom", "once an IMVU is exiting, the platform may only export it; the IMVU itself keeps acting and alone acknowledges", gateExit},
	}
}

func deny(format string, args ...any) error { return fmt.Errorf(format, args...) }

func gateAuthenticity(r *Request) error {
	if len(r.BadSigs) > 0 {
		return r.BadSigs[0]
	}
	for _, k := range r.Action.Signers() {
		if !r.signedBy(k) {
			return deny("%s is named as a signer but did not sign", k)
		}
	}
	if r.Kind.SelfIssued {
		if r.State.Known(r.Action.Actor) && r.revokedAnywhere(r.Action.Actor) {
			return deny("key %s is revoked", r.Action.Actor)
		}
		return nil
	}
	for _, k := range r.Action.Signers() {
		if err := r.identityInForce(k); err != nil {
			return err
		}
	}
	return nil
}

// identityInForce checks that key holds an issued, unexpired, unrevoked identity:
// in the action's scope, on the platform, or in some IMVU. Whether that identity
// may act in this scope is G03's question.
func (r *Request) identityInForce(key identity.PublicKey) error {
	role, ok := r.State.RoleOf(key, r.Action.Scope)
	if !ok {
		role, ok = r.State.RoleOf(key, identity.ScopePlatform)
	}
	if !ok {
		role, ok = r.State.roleAnywhere(key)
	}
	if !ok {
		return deny("key %s has no identity here", key)
	}
	if role.Revoked {
		return deny("identity of %s is revoked", key)
	}
	if role.Identity != nil {
		if err := role.Identity.ValidAt(r.Now); err != nil {
			return err
		}
	}
	return nil
}

func (r *Request) revokedAnywhere(key identity.PublicKey) bool {
	if _, ok := r.State.Platform.Revoked[key]; ok {
		return true
	}
	for _, m := range r.State.IMVUs {
		if _, ok := m.Revoked[key]; ok {
			return true
		}
	}
	return false
}

func gateFreshness(r *Request) error {
	skew := time.Duration(r.State.Platform.Genesis.Skew)
	d := r.Now.Sub(r.Action.IssuedAt)
	if d > skew || d < -skew {
		return deny("issued at %s, outside the %s window around %s", r.Action.IssuedAt.Format(time.RFC3339), skew, r.Now.Format(time.RFC3339))
	}
	if r.State.seenNonce(r.Action.Actor, r.Action.Nonce) {
		return deny("nonce %s was already used by %s", r.Action.Nonce, r.Action.Actor)
	}
	return nil
}

// actorRole is the actor's role in the action's scope, falling back to its
// platform role for platform actors acting on an IMVU.
func (r *Request) actorRole() (identity.Role, bool) {
	if role, ok := r.State.RoleOf(r.Action.Actor, r.Action.Scope); ok {
		return role.Role, true
	}
	if r.Action.Scope != identity.ScopePlatform {
		if role, ok := r.State.RoleOf(r.Action.Actor, identity.ScopePlatform); ok {
			return role.Role, true
		}
	}
	return "", false
}

func gateScope(r *Request) error {
	onPlatform := r.Action.Scope == identity.ScopePlatform
	switch {
	case r.Kind.Where == OnPlatform && !onPlatform:
		return deny("%s acts on the platform, not on IMVU %s", r.Kind.Name, r.Action.Scope)
	case r.Kind.Where == OnIMVU && onPlatform:
		return deny("%s acts on one IMVU, not on the platform", r.Kind.Name)
	}
	if r.Kind.SelfIssued {
		return nil // the action itself binds the actor to the new scope
	}
	if !onPlatform && r.IMVU() == nil {
		return deny("no IMVU %s", r.Action.Scope)
	}
	role, ok := r.actorRole()
	if !ok {
		return deny("%s has no role in %s", r.Action.Actor, r.Action.Scope)
	}
	if !slices.Contains(r.Kind.Roles, role) {
		return deny("role %s may not %s", role, r.Kind.Name)
	}
	return nil
}

func gateOwnership(r *Request) error {
	for _, n := range r.Names {
		owner, bound := r.State.BoundTo(n.String())
		switch n.Use {
		case Own:
			if !bound || owner != r.Action.Scope {
				return deny("%s is not bound to %s", n, r.Action.Scope)
			}
		case Create:
			if bound {
				return deny("%s is already bound to %s", n, owner)
			}
			if n.Type == "domain" {
				if other, clash := r.State.domainClash(n.ID, r.Action.Scope); clash {
					return deny("domain %s nests with %s, which another IMVU holds", n.ID, other)
				}
			}
		}
	}
	return nil
}

func gateIsolation(r *Request) error {
	for _, n := range r.Names {
		if n.Use != Refer {
			continue
		}
		owner, bound := r.State.BoundTo(n.String())
		if bound && owner != r.Action.Scope {
			// Grants between IMVUs are co-signed by both owners; until one exists,
			// nothing crosses.
			if !r.grantCovers(owner) {
				return deny("%s belongs to %s and no grant co-signed by both IMVUs covers it", n, owner)
			}
		}
	}
	return nil
}

func (r *Request) grantCovers(other string) bool {
	m, o := r.IMVU(), r.State.IMVUs[other]
	return m != nil && o != nil && r.signedBy(m.Owner) && r.signedBy(o.Owner)
}

func gateConsent(r *Request) error {
	m := r.IMVU()
	if m == nil || r.Kind.Duty {
		return nil
	}
	if _, inside := r.State.RoleOf(r.Action.Actor, r.Action.Scope); inside {
		return nil
	}
	if !r.signedBy(m.Owner) {
		return deny("%s acts on %s without the owner's co-signature", r.Action.Actor, m.ID)
	}
	return nil
}

func gateEnvelope(r *Request) error {
	m := r.IMVU()
	if m == nil || r.Demand.IsZero() {
		return nil
	}
	after, err := m.Used.Add(r.Demand)
	if err != nil {
		return deny("demand: %v", err)
	}
	if over := after.Exceeds(m.Envelope); over != "" {
		return deny("envelope of %s exceeded: %s", m.ID, over)
	}
	return nil
}

func gateCapacity(r *Request) error {
	if r.Envelope == nil && r.Capacity == nil {
		return nil
	}
	total, err := r.State.Allocated()
	if err != nil {
		return deny("allocation: %v", err)
	}
	capacity := r.State.Platform.Capacity
	if r.Capacity != nil {
		capacity = *r.Capacity
	}
	if r.Envelope != nil {
		if m := r.IMVU(); m != nil {
			if shrunk := m.Envelope.Shrinks(*r.Envelope); shrunk != "" && !r.signedBy(m.Owner) {
				return deny("envelope of %s would shrink (%s) without its consent", m.ID, shrunk)
			}
			// Growth takes capacity the platform allocates; it must agree too.
			if grown := r.Envelope.Exceeds(m.Envelope); grown != "" && !r.platformSigned() {
				return deny("envelope of %s would grow (%s) without the platform's co-signature", m.ID, grown)
			}
			if over := m.Used.Exceeds(*r.Envelope); over != "" {
				return deny("envelope of %s would fall below its use: %s", m.ID, over)
			}
			if total, err = total.Sub(m.Envelope); err != nil {
				return deny("allocation: %v", err)
			}
		}
		if total, err = total.Add(*r.Envelope); err != nil {
			return deny("allocation: %v", err)
		}
	}
	if over := total.Exceeds(capacity); over != "" {
		return deny("envelopes would exceed declared capacity: %s", over)
	}
	return nil
}

// platformSigned reports whether an admin or the platform key signed.
func (r *Request) platformSigned() bool {
	for k := range r.SignedBy {
		if role, ok := r.State.RoleOf(k, identity.ScopePlatform); ok && !role.Revoked &&
			(role.Role == identity.RoleAdmin || role.Role == identity.RolePlatform) {
			return true
		}
	}
	return false
}

func gateSplit(r *Request) error {
	if r.Split != nil && (r.Split[0] != revenue.CreatorPercent || r.Split[1] != revenue.PlatformPercent) {
		return deny("split %d/%d; the handshake fixes %d/%d", r.Split[0], r.Split[1], revenue.CreatorPercent, revenue.PlatformPercent)
	}
	s := r.Settlement
	if s == nil {
		return nil
	}
	creator, platform, err := revenue.Split(s.Gross)
	if err != nil {
		return deny("gross %d: %v", s.Gross, err)
	}
	if s.Creator != creator || s.Platform != platform {
		return deny("settlement gives creator %d and platform %d of %d; 55/45 gives %d and %d", s.Creator, s.Platform, s.Gross, creator, platform)
	}
	m := r.IMVU()
	if prev, ok := m.Settled[s.Period]; ok {
		return deny("period %s of %s was already settled at ledger index %d", s.Period, m.ID, prev.Index)
	}
	p, err := r.State.Calendar.Parse(s.Period)
	if err != nil {
		return deny("%v", err)
	}
	if r.Now.Before(p.End) {
		return deny("period %s is still open until %s", s.Period, p.End.Format(time.RFC3339))
	}
	return nil
}

func gateAttribution(r *Request) error {
	if len(r.Usage) == 0 {
		return nil
	}
	role, ok := r.State.RoleOf(r.Action.Actor, identity.ScopePlatform)
	if !ok || role.Role != identity.RoleMeter || role.Identity == nil {
		return deny("usage must be signed by a platform meter; %s is not one", r.Action.Actor)
	}
	meter := role.Identity.Statement().Name
	m := r.IMVU()
	skew := time.Duration(r.State.Platform.Genesis.Skew)
	last := map[string]Counter{}
	for i, u := range r.Usage {
		switch {
		case u.IMVU != r.Action.Scope:
			return deny("usage event %d names IMVU %q, not %s", i, u.IMVU, r.Action.Scope)
		case u.Meter != meter:
			return deny("usage event %d names meter %q but is signed by meter %q", i, u.Meter, meter)
		case u.Resource == "":
			return deny("usage event %d names no resource", i)
		case u.At.Before(r.Now.Add(-skew)) || u.At.After(r.Now.Add(skew)):
			return deny("usage event %d is dated %s, outside the %s window", i, u.At.Format(time.RFC3339), skew)
		case r.State.Calendar.Of(u.At).Start.After(r.Now):
			return deny("usage event %d is dated into %s, a period that has not begun", i, r.State.Calendar.Of(u.At))
		}
		if p := r.State.Calendar.Of(u.At).String(); m.Settled[p].Index != 0 {
			return deny("usage event %d falls in %s, which is already settled", i, p)
		}
		key := u.Resource + "/" + u.Meter
		prev, seen := last[key]
		if !seen {
			prev = m.Counters[key]
		}
		if u.Counter < prev.Value {
			return deny("counter %s went down from %d to %d", key, prev.Value, u.Counter)
		}
		if u.At.Before(prev.At) {
			return deny("usage event %d for %s is dated before the previous one (%s)", i, key, prev.At.Format(time.RFC3339))
		}
		last[key] = Counter{Value: u.Counter, At: u.At}
	}
	return nil
}

func gatePrice(r *Request) error {
	m := r.IMVU()
	cal := r.State.Calendar
	if t := r.Sheet; t != nil {
		from, err := cal.Parse(t.From)
		if err != nil {
			return deny("%v", err)
		}
		if next := cal.Next(cal.Of(r.Now)); from.Start.Before(next.Start) {
			return deny("price sheet would apply from %s; the earliest allowed is the next period, %s", t.From, next)
		}
		if !r.signedBy(m.Owner) {
			return deny("price sheet is not co-signed by the owner of %s", m.ID)
		}
	}
	for i, u := range r.Usage {
		term, ok := m.TermAt(cal, cal.Of(u.At))
		if !ok {
			return deny("usage event %d falls in %s, before any agreed price sheet", i, cal.Of(u.At))
		}
		if _, priced := term.Sheet.Prices[u.Resource]; !priced {
			return deny("usage event %d: resource %q is not in the agreed price sheet %s", i, u.Resource, term.Hash[:12])
		}
	}
	if s := r.Settlement; s != nil {
		want, err := m.Statement(cal, s.Period)
		if err != nil {
			return deny("recompute %s: %v", s.Period, err)
		}
		switch {
		case s.Sheet != hexHash(want.SheetHash):
			return deny("settlement names price sheet %s; %s was agreed for %s", short(s.Sheet), short(hexHash(want.SheetHash)), s.Period)
		case s.Gross != want.Gross:
			return deny("settlement gross %d; the usage of %s prices at %d", s.Gross, s.Period, want.Gross)
		case s.First != want.First || s.Last != want.Last:
			return deny("settlement covers ledger [%d, %d]; the usage of %s is at [%d, %d]", s.First, s.Last, s.Period, want.First, want.Last)
		}
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func gateNames(r *Request) error {
	m := r.IMVU()
	for _, d := range r.Domains {
		if !r.State.nameUnder(d, r.Action.Scope) {
			return deny("%s is not inside a name bound to %s", d, r.Action.Scope)
		}
	}
	if r.Transfer != nil && (m == nil || !r.signedBy(m.Owner)) {
		return deny("a transfer needs the holder's signature")
	}
	return nil
}

// domainClash finds a domain of another IMVU above or below d: like
// Designate, no IMVU's name may sit under or over another's.
func (s *State) domainClash(d, imvu string) (string, bool) {
	d = canonicalName(d)
	for key, owner := range s.bindings {
		other, ok := strings.CutPrefix(key, "domain:")
		if !ok || owner == imvu {
			continue
		}
		if strings.HasSuffix(d, "."+other) || strings.HasSuffix(other, "."+d) {
			return other, true
		}
	}
	return "", false
}

func canonicalName(d string) string { return strings.TrimSuffix(strings.ToLower(d), ".") }

// nameUnder reports whether DNS name d equals or falls under a domain bound to imvu.
func (s *State) nameUnder(d, imvu string) bool {
	d = canonicalName(d)
	for {
		if owner, ok := s.bindings["domain:"+d]; ok {
			return owner == imvu
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return false
		}
		d = d[i+1:]
	}
}

func gateMail(r *Request) error {
	for _, a := range r.MailFrom {
		at := strings.LastIndexByte(a, '@')
		if at < 0 {
			return deny("sender %q is not an address", a)
		}
		if !r.State.nameUnder(a[at+1:], r.Action.Scope) {
			return deny("sender %s is outside the domains of %s", a, r.Action.Scope)
		}
	}
	return nil
}

func gateRoutes(r *Request) error {
	if len(r.Peers) == 0 {
		return nil
	}
	m := r.IMVU()
	if m == nil || !r.signedBy(m.Owner) {
		return deny("route change without the signature of the owner of %s", r.Action.Scope)
	}
	for _, p := range r.Peers {
		o, ok := r.State.IMVUs[p]
		if !ok {
			return deny("no IMVU %s to route to", p)
		}
		if !r.signedBy(o.Owner) {
			return deny("a path to %s needs the signature of its owner", p)
		}
	}
	return nil
}

// errLedgerDown is what G15 reports while the ledger cannot take entries.
var errLedgerDown = errors.New("the ledger is not accepting entries; no effect may run unlogged")

func gateAudit(r *Request) error {
	if r.Kind.engine == nil || !r.Kind.engine.ledgerHealthy() {
		return errLedgerDown
	}
	return nil
}

func gateExport(r *Request) error {
	if r.Kind.engine == nil {
		return deny("kind %s is not registered", r.Kind.Name)
	}
	if _, ok := r.Kind.engine.resources[r.Kind.Resource]; !ok {
		return deny("resource kind %q has no exporter and importer", r.Kind.Resource)
	}
	return nil
}

func gateExit(r *Request) error {
	m := r.IMVU()
	if m == nil || m.Status == StatusActive {
		return nil
	}
	// The IMVU keeps acting on itself while it leaves; the platform may only
	// help it out.
	if _, inside := r.State.RoleOf(r.Action.Actor, m.ID); inside && (m.Status == StatusExiting || r.Kind.Exit) {
		return nil
	}
	return deny("%s is %s: the platform may only export it", m.ID, m.Status)
}
