package e2e

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// TestCrossIMVU: G03 Scope. imvu042's owner and member can neither act on
// imvu043 nor read it.
func TestCrossIMVU(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.createViaCLI(t, "imvu042")
	o43 := n.createViaCLI(t, "imvu043")
	now := time.Now()
	m42, m43 := n.newKey(t, "member42"), genKey(t)
	n.must(t, o42, handshake.KindIssue, "imvu042", issueParams(t, o42, pub(m42), "imvu042", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)))
	n.must(t, o43, handshake.KindIssue, "imvu043", issueParams(t, o43, pub(m43), "imvu043", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)))
	n.must(t, n.meters["compute"], handshake.KindUsage, "imvu043", usage("imvu043", "compute", "cpu_ms", 500, time.Now()))

	grow43 := func(t *testing.T) handshake.EnvelopeParams {
		env := n.envelope(t, "imvu043")
		env.CPUMilli += 100
		return handshake.EnvelopeParams{Envelope: env}
	}
	both := []string{"imvu042", "imvu043"}
	cases := []hostile{
		{
			name: "imvu042's owner resizes imvu043", gate: "G03", watch: both,
			try: func(t *testing.T) attempt { return n.send(t, o42, handshake.KindResize, "imvu043", grow43(t)) },
		},
		{
			name: "imvu042's owner shrinks imvu043 with the admin as cosigner", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				env := n.envelope(t, "imvu043")
				env.MemoryBytes /= 2
				return n.send(t, o42, handshake.KindResize, "imvu043", handshake.EnvelopeParams{Envelope: env}, n.admin)
			},
		},
		{
			name: "imvu042's member resizes imvu043", gate: "G03", watch: both,
			try: func(t *testing.T) attempt { return n.send(t, m42, handshake.KindResize, "imvu043", grow43(t)) },
		},
		{
			name: "imvu042's owner issues itself a member identity on imvu043", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, o42, handshake.KindIssue, "imvu043",
					issueParams(t, o42, pub(k), "imvu043", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)))
			},
		},
		{
			name: "imvu042's owner revokes imvu043's member", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindRevoke, "imvu043", handshake.RevokeParams{Key: pub(m43)})
			},
		},
		{
			name: "imvu042's owner revokes imvu043's member from its own scope", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindRevoke, "imvu042", handshake.RevokeParams{Key: pub(m43)})
			},
		},
		{
			name: "imvu042's owner starts imvu043's exit", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindExit, "imvu043", handshake.ExitParams{})
			},
		},
		{
			name: "imvu042's owner sets platform capacity", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindCapacity, identity.ScopePlatform, handshake.CapacityParams{Capacity: config.Default().Capacity})
			},
		},
		{
			name: "imvu042's member issues a member identity on imvu042", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, m42, handshake.KindIssue, "imvu042",
					issueParams(t, m42, pub(k), "imvu042", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)))
			},
		},
		{
			name: "imvu042's member starts imvu042's exit", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, m42, handshake.KindExit, "imvu042", handshake.ExitParams{})
			},
		},
		{
			name: "imvu042's owner issues a platform admin identity", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, o42, handshake.KindIssue, identity.ScopePlatform,
					issueParams(t, o42, pub(k), identity.ScopePlatform, identity.RoleAdmin, now.Add(-time.Minute), now.Add(time.Hour)))
			},
		},
		{
			name: "admin issues another admin identity", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, n.admin, handshake.KindIssue, identity.ScopePlatform,
					issueParams(t, n.admin, pub(k), identity.ScopePlatform, identity.RoleAdmin, now.Add(-time.Minute), now.Add(time.Hour)))
			},
		},
		{
			name: "admin issues itself a meter identity to report usage", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, n.admin, handshake.KindIssue, identity.ScopePlatform,
					issueParams(t, n.admin, pub(k), identity.ScopePlatform, identity.RoleMeter, now.Add(-time.Minute), now.Add(time.Hour)))
			},
		},
		{
			name: "imvu042's owner resizes imvu043 with the CLI", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				// The CLI reads the current envelope first; it cannot, so it
				// never submits: the read is refused before any action exists.
				_, errOut, code := n.cli(t, "envelope", "resize", "imvu043", "--cpu", "2", "--key", n.keyFile("imvu042"))
				if code == 0 || code == 3 {
					t.Fatalf("exit %d; want the read refused: %s", code, errOut)
				}
				// The same resize built without the read is denied.
				return n.send(t, o42, handshake.KindResize, "imvu043", grow43(t))
			},
		},
	}
	n.run(t, cases)

	// Reads: imvu042's owner and member ask for imvu043's data through every
	// query; each is refused with 403 and answers nothing.
	var created43 uint64
	for _, e := range n.entries(t, o43, "imvu043", 0) {
		if e.Kind == handshake.KindCreate && e.Type == "action" {
			created43 = e.Index
		}
	}
	if created43 == 0 {
		t.Fatal("imvu043's handshake entry not found")
	}
	reads := []struct {
		name   string
		key    ed25519.PrivateKey
		kind   string
		scope  string
		params any
	}{
		{"owner imvu.show imvu043", o42, api.QueryIMVU, "imvu043", nil},
		{"owner imvu.list in imvu043", o42, api.QueryIMVUs, "imvu043", nil},
		{"owner imvu.list on the platform", o42, api.QueryIMVUs, identity.ScopePlatform, nil},
		{"owner revenue.statement imvu043", o42, api.QueryStatement, "imvu043", api.StatementParams{}},
		{"owner ledger.entries scope imvu043", o42, api.QueryEntries, "imvu043", api.EntriesParams{Start: 0, Count: 1000}},
		{"owner ledger.entries scope platform", o42, api.QueryEntries, identity.ScopePlatform, api.EntriesParams{Start: 0, Count: 1000}},
		{"owner ledger.receipt of imvu043's handshake in scope imvu043", o42, api.QueryReceipt, "imvu043", api.ReceiptParams{Index: created43}},
		{"member imvu.show imvu043", m42, api.QueryIMVU, "imvu043", nil},
		{"member revenue.statement imvu043", m42, api.QueryStatement, "imvu043", api.StatementParams{}},
		{"member ledger.entries scope imvu043", m42, api.QueryEntries, "imvu043", api.EntriesParams{Start: 0, Count: 1000}},
	}
	for _, r := range reads {
		t.Run("read/"+r.name, func(t *testing.T) {
			var out json.RawMessage
			err := n.query(t, r.key, r.kind, r.scope, r.params, &out)
			expectRemote(t, err, 403)
			if len(out) != 0 {
				t.Fatalf("refused, yet answered %s", out)
			}
		})
	}
	t.Run("read/owner ledger.receipt of imvu043's handshake in its own scope", func(t *testing.T) {
		var out json.RawMessage
		err := n.query(t, o42, api.QueryReceipt, "imvu042", api.ReceiptParams{Index: created43}, &out)
		expectRemote(t, err, 403)
		if len(out) != 0 {
			t.Fatalf("refused, yet answered %s", out)
		}
	})
	t.Run("read/owner's own ledger holds nothing of imvu043", func(t *testing.T) {
		es := n.entries(t, o42, "imvu042", 0)
		if len(es) == 0 {
			t.Fatal("imvu042's owner sees no entries of its own")
		}
		for _, e := range es {
			if e.Scope != "imvu042" || e.Redacted {
				t.Fatalf("imvu042's owner sees entry %d of scope %s (redacted %v)", e.Index, e.Scope, e.Redacted)
			}
		}
	})
	t.Run("read/owner's own ledger via the CLI", func(t *testing.T) {
		out := n.cliOK(t, "ledger", "tail", "-n", "1000", "--scope", "imvu042", "--key", n.keyFile("imvu042"), "-o", "json")
		var es []api.Entry
		if err := json.Unmarshal([]byte(out), &es); err != nil {
			t.Fatalf("ledger tail -o json: %v\n%s", err, out)
		}
		for _, e := range es {
			if e.Scope != "imvu042" {
				t.Fatalf("ledger tail as imvu042's owner shows entry %d of %s", e.Index, e.Scope)
			}
		}
	})
}
