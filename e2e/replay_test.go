package e2e

import (
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// TestReplayAndFreshness: G02 Freshness. A captured action cannot be submitted
// twice, not even across a restart, and an action issued outside the skew
// window (5 minutes) is refused.
func TestReplayAndFreshness(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.createViaCLI(t, "imvu042")
	n.createViaCLI(t, "imvu043")

	grow := func(t *testing.T) handshake.EnvelopeParams {
		env := n.envelope(t, "imvu042")
		env.CPUMilli += 100
		return handshake.EnvelopeParams{Envelope: env}
	}
	issuedAt := func(at time.Time) func(*action.Action) {
		return func(a *action.Action) { a.IssuedAt = at.UTC().Truncate(time.Millisecond) }
	}
	var captured, deniedOnce, handshake44, beforeRestart *action.Signed
	cases := []hostile{
		{
			name: "owner grows its envelope with the platform (positive control, captured)", gate: "",
			try: func(t *testing.T) attempt {
				captured = signed(t, o42, handshake.KindResize, "imvu042", grow(t), nil, n.admin)
				return n.sendSigned(t, captured)
			},
		},
		{
			name: "the captured action submitted again", gate: "G02", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt { return n.sendSigned(t, captured) },
		},
		{
			name: "admin-and-owner resize submitted twice", gate: "G02", watch: []string{"imvu042"},
			setup: func(t *testing.T) {
				deniedOnce = signed(t, n.admin, handshake.KindResize, "imvu042", grow(t), nil, o42)
				n.mustSigned(t, deniedOnce)
			},
			try: func(t *testing.T) attempt { return n.sendSigned(t, deniedOnce) },
		},
		{
			name: "a denied action submitted again is refused by freshness first", gate: "G02", watch: []string{"imvu042"},
			setup: func(t *testing.T) {
				deniedOnce = signed(t, n.admin, handshake.KindResize, "imvu042", grow(t), nil) // no consent: G06
				n.expectDenial(t, n.sendSigned(t, deniedOnce), "G06")
			},
			try: func(t *testing.T) attempt { return n.sendSigned(t, deniedOnce) },
		},
		{
			name: "action issued 10 minutes ago", gate: "G02", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.sendSigned(t, signed(t, o42, handshake.KindResize, "imvu042", grow(t), issuedAt(time.Now().Add(-10*time.Minute))))
			},
		},
		{
			name: "action issued 10 minutes in the future", gate: "G02", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.sendSigned(t, signed(t, o42, handshake.KindResize, "imvu042", grow(t), issuedAt(time.Now().Add(10*time.Minute))))
			},
		},
		{
			name: "handshake for imvu044 (positive control, captured)", gate: "",
			try: func(t *testing.T) attempt {
				k := n.newKey(t, "imvu044")
				handshake44 = signed(t, k, handshake.KindCreate, "imvu044", n.handshakeFor(t, "imvu044", k), nil)
				a := n.sendSigned(t, handshake44)
				n.owners["imvu044"] = k
				return a
			},
		},
		{
			name: "the captured handshake submitted again", gate: "G02", watch: []string{"imvu044"},
			try: func(t *testing.T) attempt { return n.sendSigned(t, handshake44) },
		},
		{
			// A retried create (fresh nonce) must not pass: the name is bound.
			// (In the first revision G04 let a name bound to the scope itself
			// through; the create then failed in its applier after being
			// ledgered, which left the engine refusing everything by G15 and
			// the ledger unreplayable at the next start.)
			name: "owner performs the handshake for its existing IMVU again", gate: "G04", watch: []string{"imvu044"},
			try: func(t *testing.T) attempt {
				k := n.owners["imvu044"]
				return n.send(t, k, handshake.KindCreate, "imvu044", n.handshakeFor(t, "imvu044", k))
			},
		},
		{
			name: "another creator claims imvu043", gate: "G04", watch: []string{"imvu043"},
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, k, handshake.KindCreate, "imvu043", n.handshakeFor(t, "imvu043", k))
			},
		},
		{
			name: "owner action before a restart (positive control)", gate: "",
			try: func(t *testing.T) attempt {
				beforeRestart = signed(t, o42, handshake.KindResize, "imvu042", grow(t), nil, n.admin)
				return n.sendSigned(t, beforeRestart)
			},
		},
		{
			name: "the same action replayed after a restart", gate: "G02", watch: []string{"imvu042", "imvu043", "imvu044"},
			setup: func(t *testing.T) { n.restart(t) },
			try:   func(t *testing.T) attempt { return n.sendSigned(t, beforeRestart) },
		},
		{
			name: "a captured action replayed after the restart", gate: "G02", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt { return n.sendSigned(t, captured) },
		},
	}
	n.run(t, cases)
}

// TestReplayAfterNonceEviction: an actor must not be able to make the daemon
// forget the nonces it has seen. The admin holds an owner-cosigned resize it
// already used (the owner consented once, then agreed to undo it); it sends 65
// actions (denied, but each nonce is remembered), then one whose issued-at lies
// ten years ahead, which G02 denies. Up to commit 59f983b the engine remembered
// that denied nonce with its future issued-at and pruned the actor's nonces
// relative to it (handshake/state.go, useNonce: cut := issued.Add(-2 * skew)),
// forgetting every real one, so the used cosigned resize passed G02 again and
// re-applied without consent (accepted at ledger index 73). Fixed in 3e6b88e
// (nonces pruned by the engine's clock); this case keeps it fixed.
func TestReplayAfterNonceEviction(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.create(t, "imvu042")
	env := n.envelope(t, "imvu042")
	grown := env
	grown.CPUMilli += 1000
	used := signed(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: grown}, nil, o42)
	n.mustSigned(t, used)
	// The owner then agrees to go back.
	n.must(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: env}, o42)

	n.run(t, []hostile{
		{
			name: "used owner-cosigned resize replayed after a future-dated action flushed the nonces", gate: "G02", watch: []string{"imvu042"},
			setup: func(t *testing.T) {
				for i := 0; i < 65; i++ {
					// Denied by G06 (no consent), but the nonce is remembered.
					n.expectDenial(t, n.send(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: grown}), "G06")
				}
				future := signed(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: grown},
					func(a *action.Action) { a.IssuedAt = time.Now().UTC().AddDate(10, 0, 0).Truncate(time.Millisecond) })
				n.expectDenial(t, n.sendSigned(t, future), "G02")
			},
			try: func(t *testing.T) attempt { return n.sendSigned(t, used) },
		},
	})
}

// TestReplayedIssueIsDeniedByFreshness: a replayed action must be refused by
// G02 Freshness, the gate whose attack it is. Up to commit 59f983b the engine
// ran the kind's Prepare before any gate, and prepareIssue rejects a subject
// that already holds an identity, so the replay of a captured identity.issue
// was ledgered as a G03 "parameters" denial and never named a replay. Fixed in
// 3e6b88e (G01 and G02 run before Prepare); this case keeps it fixed.
func TestReplayedIssueIsDeniedByFreshness(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.create(t, "imvu042")
	now := time.Now()
	m := genKey(t)
	captured := signed(t, o42, handshake.KindIssue, "imvu042",
		issueParams(t, o42, pub(m), "imvu042", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)), nil)
	n.mustSigned(t, captured)
	n.run(t, []hostile{{
		name: "a captured identity.issue submitted again", gate: "G02", watch: []string{"imvu042"},
		try: func(t *testing.T) attempt { return n.sendSigned(t, captured) },
	}})
}
