// Package api is the daemon's control API: HTTP and JSON over a unix socket and
// loopback TCP, and the client the CLI uses.
//
// Changes arrive only as signed Actions and go to the handshake engine; reads
// arrive only as signed Queries and are answered inside the reader's scope. The
// only unsigned endpoints serve platform facts that hold no IMVU data: status,
// the gate list, the offer for new IMVUs, the newest checkpoint and metrics. This
// package must never change state itself or answer a read outside the reader's
// scope.
package api

import (
	"encoding/hex"
	"encoding/json"

	"github.com/nexus-core/nexus/identity"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/revenue"
)

// Paths served.
const (
	PathActions     = "/v1/actions"
	PathQuery       = "/v1/query"
	PathStatus      = "/v1/status"
	PathGates       = "/v1/gates"
	PathOffer       = "/v1/offer"
	PathCheckpoint  = "/v1/checkpoint"
	PathConsistency = "/v1/consistency"
	PathExport      = "/v1/export"
	PathRegistry    = "/v1/registry"
	PathMetrics     = "/metrics"
)

// Query kinds.
const (
	QueryIMVUs     = "imvu.list"
	QueryIMVU      = "imvu.show"
	QueryStatement = "revenue.statement"
	QueryEntries   = "ledger.entries"
	QueryReceipt   = "ledger.receipt"
	QueryExport    = "imvu.export"
)

// Listener is one address the daemon serves.
type Listener struct {
	Name    string `json:"name"`    // api, dns, smtp, ...
	Network string `json:"network"` // tcp, udp, unix
	Address string `json:"address"`
}

// Status is what `nexus status` shows.
type Status struct {
	Version   string     `json:"version"`
	Listeners []Listener `json:"listeners"`
	Ledger    struct {
		Size uint64 `json:"size"`
		Root string `json:"root"`
	} `json:"ledger"`
	IMVUs   int    `json:"imvus"`
	Healthy bool   `json:"healthy"`
	Origin  string `json:"origin"`
}

// Offer is what the platform offers a new IMVU: the creator reads it, decides,
// and signs a handshake built from it.
type Offer struct {
	Platform    identity.PublicKey  `json:"platform"`     // the platform key: it countersigns handshakes
	VerifierKey string              `json:"verifier_key"` // checkpoint verifier key: keep it to check receipts offline
	Nameservers []string            `json:"nameservers"`  // NS of every zone
	Hostmaster  string              `json:"hostmaster"`
	Envelope    handshake.Resources `json:"envelope"`
	Sheet       revenue.PriceSheet  `json:"price_sheet"`
	Powers      []string            `json:"powers"`
	TLDs        []string            `json:"tlds"`
	Period      string              `json:"period"`
	GateSet     int                 `json:"gate_set"`
	// MailAddress is where the platform receives the IMVU's mail: the
	// creator signs it with mail.mx (empty when the node runs no mail).
	MailAddress string `json:"mail_address,omitempty"`
}

// Consistency proves the newest checkpoint extends an older tree size. It holds
// only hashes, so it is served to anyone: a creator keeps the checkpoints it saw
// and asks for this to show the platform never rewrote history.
type Consistency struct {
	Old        uint64   `json:"old"`
	New        uint64   `json:"new"`
	Proof      [][]byte `json:"proof"`
	Checkpoint string   `json:"checkpoint"` // the newest signed checkpoint note
}

// Binding answers a registry lookup: which domain holds a name and which IMVU
// it is bound to. Like a WHOIS or a delegation, it is public.
type Binding struct {
	Name   string `json:"name"`
	Domain string `json:"domain"`
	IMVU   string `json:"imvu"`
	// Owner is the key of the IMVU's owner: public, as a domain's holder
	// is; a co-signed action between two IMVUs names it.
	Owner identity.PublicKey `json:"owner"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error  string            `json:"error"`
	Denial *handshake.Denial `json:"denial,omitempty"`
}

// Summary is what the platform may see of an IMVU: the handshake's terms, not the
// IMVU's data.
type Summary struct {
	ID       string              `json:"id"`
	Owner    string              `json:"owner"`
	Status   handshake.Status    `json:"status"`
	Created  string              `json:"created"`
	Envelope handshake.Resources `json:"envelope"`
	Used     handshake.Resources `json:"used"`
}

// StatementParams asks for one period's statement.
type StatementParams struct {
	Period string `json:"period,omitempty"` // default: the current period
}

// StatementAnswer is a statement and, if the period was settled, its settlement.
type StatementAnswer struct {
	revenue.Statement
	SheetHashHex string                `json:"sheet_hash"`
	Open         bool                  `json:"open"`
	Settled      *handshake.Settlement `json:"settled,omitempty"`
}

// EntriesParams asks for a range of ledger entries.
type EntriesParams struct {
	Start uint64 `json:"start"`
	Count uint64 `json:"count"`
}

// Entry is one ledger entry as a reader may see it. A reader outside the entry's
// scope sees only its header (Redacted).
type Entry struct {
	Index    uint64          `json:"index"`
	Type     string          `json:"type"`
	Scope    string          `json:"scope"`
	Kind     string          `json:"kind,omitempty"`
	Gate     string          `json:"gate,omitempty"`
	Time     string          `json:"time"`
	Redacted bool            `json:"redacted,omitempty"`
	Record   json.RawMessage `json:"record,omitempty"`
}

// ReceiptParams asks for the receipt of one entry.
type ReceiptParams struct {
	Index uint64 `json:"index"`
}

// ReceiptAnswer carries a receipt in the c2sp tlog-proof text form, with the
// entry it proves.
type ReceiptAnswer struct {
	Index  uint64          `json:"index"`
	Proof  string          `json:"proof"`
	Record json.RawMessage `json:"record"`
}

// Handshake builds the handshake a creator signs to accept this offer for IMVU
// id: its envelope, price sheet and powers, the fixed 55/45 split and gate set,
// and the platform that will countersign.
func (o Offer) Handshake(id string, owner identity.PublicKey) handshake.Handshake {
	sum := o.Sheet.Hash()
	return handshake.Handshake{IMVU: id, Owner: owner, Platform: o.Platform, Envelope: o.Envelope, PriceSheet: o.Sheet,
		SheetHash: hex.EncodeToString(sum[:]), Split: [2]int{revenue.CreatorPercent, revenue.PlatformPercent},
		GateSet: o.GateSet, Powers: o.Powers}
}
