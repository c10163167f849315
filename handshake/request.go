package handshake

import (
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// NameUse says how an action uses a bound resource name.
type NameUse int

// How an action uses a name.
const (
	Own    NameUse = iota // must already be bound to the action's IMVU
	Create                // must be free: the action binds it
	Refer                 // read or written across IMVUs: needs a grant (G05)
)

// Name is a resource an action names, like "domain:stage.imvu042.world" or
// "imvu:imvu042".
type Name struct {
	Type string
	ID   string
	Use  NameUse
}

// String is the name's binding key; domain names are compared in lower case
// without the root dot.
func (n Name) String() string {
	if n.Type == "domain" {
		return n.Type + ":" + canonicalName(n.ID)
	}
	return n.Type + ":" + n.ID
}

// Request is one action on its way through the gates: the verified action, who
// signed it, and what the kind's Prepare found it asks for. Gates read it and the
// state; nothing in a Request is mutated after Prepare.
type Request struct {
	Signed *action.Signed
	Action *action.Action
	Kind   *Kind
	Now    time.Time
	State  *State
	Index  uint64 // ledger index the action will get (set just before Apply)
	// Replay is set when the action is re-applied from the ledger: it passed
	// its gates then, so Prepare must not refuse it for what is true now.
	Replay bool

	// Signed and BadSigs come from signature verification, before the gates.
	SignedBy map[identity.PublicKey]bool
	BadSigs  []error

	// Filled by Kind.Prepare.
	Params     any
	Names      []Name
	Demand     Resources           // G07: what the effect takes from the envelope
	Envelope   *Resources          // G08: a new envelope for the scope IMVU
	Capacity   *Resources          // G08: a new declared capacity
	Split      *[2]int             // G09: a split the action asserts
	Settlement *Settlement         // G09, G11: a settlement the action asserts
	Usage      []revenue.Usage     // G10, G11: usage events
	Sheet      *Term               // G11: a price sheet agreement
	Domains    []string            // G12: DNS names the action changes
	Transfer   *identity.PublicKey // G12: the key a name moves to
	MailFrom   []string            // G13: addresses the action sends as
	Peers      []string            // G14: IMVUs a route or grant reaches
	Issued     *identity.Identity  // an identity the action issues
	Revokes    *identity.PublicKey // a key the action revokes
}

// IMVU is the scope IMVU, or nil for platform scope or an IMVU not yet created.
func (r *Request) IMVU() *IMVU { return r.State.IMVUs[r.Action.Scope] }

// signedBy reports whether key's signature verified.
func (r *Request) signedBy(key identity.PublicKey) bool { return r.SignedBy[key] }
