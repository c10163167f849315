package handshake

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/nexus-core/nexus/action"
)

// RecordType names what a ledger entry records.
type RecordType string

// Ledger record types.
const (
	RecordGenesis RecordType = "genesis" // the platform's keys and constants
	RecordAction  RecordType = "action"  // an action that passed every gate, before its effect
	RecordDenial  RecordType = "denial"  // an authenticated action a gate refused
	RecordEffect  RecordType = "effect"  // the state hash after an action's effect
	RecordJunk    RecordType = "junk"    // a count of unauthenticated requests
	RecordDrift   RecordType = "drift"   // state found changed around the interfaces, and restored
)

// Record is the payload of one ledger entry.
type Record struct {
	Type   RecordType     `json:"type"`
	Time   time.Time      `json:"time"`
	Scope  string         `json:"scope,omitempty"`
	Kind   string         `json:"kind,omitempty"`
	Action *action.Signed `json:"action,omitempty"`
	// Countersig is the platform's signature over the action body
	// (identity.ContextCountersign), on kinds the platform countersigns.
	Countersig []byte            `json:"countersig,omitempty"`
	Gate       string            `json:"gate,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Ref        uint64            `json:"ref,omitempty"`
	State      string            `json:"state,omitempty"`
	Count      uint64            `json:"count,omitempty"`
	Reasons    map[string]uint64 `json:"reasons,omitempty"`
	Genesis    *Genesis          `json:"genesis,omitempty"`

	index uint64 // where Derive found it; not encoded
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }

// ParseRecord decodes a ledger entry's payload.
func ParseRecord(b []byte) (Record, error) {
	var r Record
	err := jsonUnmarshal(b, &r)
	return r, err
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
