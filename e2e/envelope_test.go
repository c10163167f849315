package e2e

import (
	"testing"
	"time"

	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// TestConsentAndEnvelopes: G06 Consent, G08 Capacity and anti-siphon, G09 on
// the handshake's split, and the handshake's own parameter checks.
func TestConsentAndEnvelopes(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.createViaCLI(t, "imvu042")
	o43 := n.createViaCLI(t, "imvu043")
	stranger := genKey(t)

	resized := func(t *testing.T, f func(*handshake.Resources)) handshake.EnvelopeParams {
		env := n.envelope(t, "imvu042")
		f(&env)
		return handshake.EnvelopeParams{Envelope: env}
	}
	shrink := func(t *testing.T) handshake.EnvelopeParams {
		return resized(t, func(r *handshake.Resources) { r.CPUMilli -= 300 })
	}
	// createWith performs a handshake for id with a fresh key, after edit.
	createWith := func(t *testing.T, id string, edit func(*handshake.Handshake)) attempt {
		k := genKey(t)
		h := n.handshakeFor(t, id, k)
		edit(&h)
		return n.send(t, k, handshake.KindCreate, id, h)
	}
	cpuOf := func(want uint64) func(*testing.T, attempt) {
		return func(t *testing.T, _ attempt) {
			if got := n.envelope(t, "imvu042").CPUMilli; got != want {
				t.Fatalf("imvu042 has %dm CPU; want %dm", got, want)
			}
		}
	}
	both := []string{"imvu042", "imvu043"}
	cases := []hostile{
		{
			name: "admin grows imvu042 alone (CLI)", gate: "G06", watch: both,
			try: func(t *testing.T) attempt {
				return n.cliAttempt(t, "imvu042", "envelope", "resize", "imvu042", "--cpu", "1500m", "--key", n.dd.AdminKey())
			},
		},
		{
			name: "admin grows imvu042 with the owner's cosignature (CLI, positive control)", gate: "",
			try: func(t *testing.T) attempt {
				return n.cliAttempt(t, "imvu042", "envelope", "resize", "imvu042", "--cpu", "1500m", "--key", n.dd.AdminKey(),
					"--cosign", n.keyFile("imvu042"))
			},
			check: cpuOf(1500),
		},
		{
			name: "admin shrinks imvu042 alone", gate: "G06", watch: both,
			try: func(t *testing.T) attempt { return n.send(t, n.admin, handshake.KindResize, "imvu042", shrink(t)) },
		},
		{
			name: "admin shrinks imvu042 cosigned by imvu043's owner", gate: "G06", watch: both,
			try: func(t *testing.T) attempt { return n.send(t, n.admin, handshake.KindResize, "imvu042", shrink(t), o43) },
		},
		{
			name: "admin shrinks imvu042 cosigned by a key with no identity", gate: "G01", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindResize, "imvu042", shrink(t), stranger)
			},
		},
		{
			name: "admin moves memory out of imvu042 while growing its CPU", gate: "G06", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindResize, "imvu042", resized(t, func(r *handshake.Resources) {
					r.CPUMilli += 500
					r.MemoryBytes /= 2
				}))
			},
		},
		{
			name: "root key issues a member on imvu042 without the owner", gate: "G06", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				now := time.Now()
				return n.send(t, n.root, handshake.KindIssue, "imvu042",
					issueParams(t, n.root, pub(k), "imvu042", identity.RoleMember, now.Add(-time.Minute), now.Add(time.Hour)))
			},
		},
		{
			name: "admin shrinks imvu042 with the owner's cosignature (positive control)", gate: "",
			try:   func(t *testing.T) attempt { return n.send(t, n.admin, handshake.KindResize, "imvu042", shrink(t), o42) },
			check: cpuOf(1200),
		},
		{
			name: "owner-consented growth past declared capacity", gate: "G08", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindResize, "imvu042", resized(t, func(r *handshake.Resources) { r.CPUMilli = 1 << 40 }), o42)
			},
		},
		{
			name: "owner grows its own envelope past declared capacity", gate: "G08", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindResize, "imvu042", resized(t, func(r *handshake.Resources) {
					r.MemoryBytes = config.Default().Capacity.MemoryBytes
				}))
			},
		},
		{
			// Growth takes capacity the platform allocates: the owner alone
			// cannot take it, however small.
			name: "owner grows its own envelope without the platform", gate: "G08", watch: both,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindResize, "imvu042", resized(t, func(r *handshake.Resources) { r.Pids++ }))
			},
		},
		{
			name: "owner grows its own envelope with an admin as cosigner (positive control)", gate: "",
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindResize, "imvu042", resized(t, func(r *handshake.Resources) { r.Pids++ }), n.admin)
			},
		},
		{
			name: "handshake with an envelope beyond capacity", gate: "G08", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu050", func(h *handshake.Handshake) { h.Envelope.CPUMilli = config.Default().Capacity.CPUMilli })
			},
		},
		{
			name: "capacity set below what is allocated", gate: "G08", watch: both,
			try: func(t *testing.T) attempt {
				c := config.Default().Capacity
				c.CPUMilli = 1000
				return n.send(t, n.admin, handshake.KindCapacity, identity.ScopePlatform, handshake.CapacityParams{Capacity: c})
			},
		},
		{
			name: "capacity set below what is allocated (root key)", gate: "G08", watch: both,
			try: func(t *testing.T) attempt {
				c := config.Default().Capacity
				c.MemoryBytes = 1 << 30
				return n.send(t, n.root, handshake.KindCapacity, identity.ScopePlatform, handshake.CapacityParams{Capacity: c})
			},
		},
		{
			name: "handshake claiming a 50/50 split", gate: "G09", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu051", func(h *handshake.Handshake) { h.Split = [2]int{50, 50} })
			},
		},
		{
			name: "handshake claiming a 60/40 split", gate: "G09", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu052", func(h *handshake.Handshake) { h.Split = [2]int{60, 40} })
			},
		},
		{
			name: "handshake naming another key as owner", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu053", func(h *handshake.Handshake) { h.Owner = pub(o42) })
			},
		},
		{
			name: "handshake pre-consenting to a power the platform does not enumerate", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu054", func(h *handshake.Handshake) { h.Powers = append(h.Powers, "mail.read-all") })
			},
		},
		{
			name: "handshake whose sheet hash does not match its sheet", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu055", func(h *handshake.Handshake) { h.PriceSheet.Prices["cpu_ms"]++ })
			},
		},
		{
			name: "handshake naming another gate set", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				return createWith(t, "imvu056", func(h *handshake.Handshake) { h.GateSet = 16 })
			},
		},
		{
			name: "handshake on the platform scope", gate: "G03", watch: both,
			try: func(t *testing.T) attempt {
				k := genKey(t)
				return n.send(t, k, handshake.KindCreate, identity.ScopePlatform, n.handshakeFor(t, identity.ScopePlatform, k))
			},
		},
	}
	n.run(t, cases)
}
