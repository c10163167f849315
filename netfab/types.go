package netfab

import (
	"log/slog"
	"net/netip"
	"time"
)

// Class is a workload's route class: where its traffic may go.
type Class string

const (
	// Private workloads talk only to workloads of their own IMVU.
	Private Class = "private"
	// Public workloads may also leave through an egress point, masqueraded
	// behind the router's address on it.
	Public Class = "public"
	// Restricted workloads reach, outside their IMVU, only the peers named
	// in grants.
	Restricted Class = "restricted"
)

// Workload is one container or VM of an IMVU, as the ledger approved it.
type Workload struct {
	Name  string
	Addr  netip.Addr // inside the IMVU's prefix; the first host address is the gateway
	Class Class
	// Egress names the egress point a Public workload leaves through; ""
	// means Options.Uplink. Ignored for other classes.
	Egress string
}

// Network is an IMVU's approved network.
type Network struct {
	IMVU      string
	Prefix    netip.Prefix // the IMVU's own IPv4 prefix, e.g. 10.77.3.0/24
	Workloads []Workload
	// RateBps and RatePPS cap what the IMVU sends and receives through the
	// router, each direction separately; 0 means no ceiling. Traffic between
	// an IMVU's own workloads stays on its bridge and is not capped.
	RateBps, RatePPS uint64
	// Egress lists the named egress points the IMVU's workloads may use.
	Egress []string
}

// Endpoint names one workload of one IMVU.
type Endpoint struct {
	IMVU, Workload string
}

// Grant lets From open connections to To on Port/Proto; replies are
// allowed. Both owners have signed it before it reaches this package.
type Grant struct {
	ID       string
	From, To Endpoint
	Port     uint16
	Proto    string // "tcp" or "udp"
}

// Desired is the complete approved state the plane makes the kernel match.
type Desired struct {
	Networks []Network
	Grants   []Grant
}

// EgressPoint is a way out of the plane: a veth pair from the router to a
// namespace the plane does not own (the host's, or one a test made), where
// something else carries the traffic on.
type EgressPoint struct {
	Name  string // the name Workload.Egress and Network.Egress use
	NetNS string // path of the existing namespace, e.g. /run/netns/eu
	Link  string // name of the veth end the plane creates in NetNS
	// Local is the router's address on the link (the masquerade source);
	// Remote is put on the far end and is the router's next hop.
	Local, Remote netip.Prefix
}

// Options configures a Plane.
type Options struct {
	// Prefix starts the name of every namespace and nftables table the
	// plane owns ("nx" gives /run/netns/nx-r, nx-i-<imvu>, ...). Anything
	// in /run/netns under this prefix belongs to the plane and is removed
	// when not desired.
	Prefix string
	// Uplink is where Public workloads with no named egress leave; nil
	// means they have none.
	Uplink *EgressPoint
	// Egress are the named egress points.
	Egress []EgressPoint
	// Interval is the period of the full read-back in Run; default 5s.
	Interval time.Duration
	Logger   *slog.Logger
	// OnDrift is called for every hand edit Reconcile or Run found (and,
	// if Drift.Reverted, undid), after the pass, with no lock held. Under
	// Run it holds up the next pass: it should return quickly.
	OnDrift func(Drift)
}

// Drift is one difference between the kernel and the approved state that
// the plane found (and, if Reverted, undid).
type Drift struct {
	IMVU     string // "" when the object serves no single IMVU
	NetNS    string // namespace the object lives in
	Object   string // e.g. "link i1a2b3c4d", "nft table ip evil", "route 0.0.0.0/0 table 254"
	Change   string // ChangeAdded, ChangeChanged or ChangeRemoved
	Detail   string
	At       time.Time
	Reverted bool
}

// Drift changes.
const (
	ChangeAdded   = "added"
	ChangeChanged = "changed"
	ChangeRemoved = "removed"
)

// Bytes counts bytes in each direction, as seen from the IMVU's workloads.
type Bytes struct {
	In, Out uint64
}

// Traffic is an IMVU's cumulative byte counts per workload class.
type Traffic map[Class]Bytes
