package e2e

import (
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// TestUsageAttribution: G10 Attribution and the usage side of G11. Usage is
// recorded only by the meter it names, for the IMVU it is filed under, with a
// counter that never goes down, dated now, for a priced resource.
func TestUsageAttribution(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	o43 := n.create(t, "imvu043")
	compute := n.meters["compute"]
	// The compute meter's cpu_ms counter on imvu042 starts at 1000, recorded
	// with the CLI as a meter outside the daemon would.
	n.cliOK(t, "usage", "record", "imvu042", "--resource", "cpu_ms", "--counter", "1000", "--key", n.dd.MeterKey("compute"))
	lastAt := n.imvu(t, "imvu042").Counters["cpu_ms/compute"].At
	if lastAt.IsZero() {
		t.Fatal("the CLI's usage record did not reach imvu042's counters")
	}

	var replayed *action.Signed
	watch := []string{"imvu042", "imvu043"}
	cases := []hostile{
		{
			// G03 runs before G10: the admin's role does not permit
			// usage.record at all, so the forgery stops at Scope, before
			// Attribution would ask which meter signed it.
			name: "usage signed by the admin, not a meter", gate: "G03", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 5000, time.Now()))
			},
		},
		{
			name: "usage signed by imvu043's owner", gate: "G03", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, o43, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 5000, time.Now()))
			},
		},
		{
			name: "compute meter reports as the dns meter", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "dns", "dns_queries", 5000, time.Now()))
			},
		},
		{
			name: "counter goes down", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 999, time.Now()))
			},
		},
		{
			name: "counter goes down inside one batch", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				now := time.Now().UTC()
				p := usage("imvu042", "compute", "cpu_ms", 3000, now)
				p.Events = append(p.Events, revenue.Usage{IMVU: "imvu042", Resource: "cpu_ms", Meter: "compute", Counter: 2000, At: now})
				return n.send(t, compute, handshake.KindUsage, "imvu042", p)
			},
		},
		{
			name: "event filed under imvu042 names imvu043", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu043", "compute", "cpu_ms", 5000, time.Now()))
			},
		},
		{
			name: "event with no resource", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "", 5000, time.Now()))
			},
		},
		{
			name: "usage back-dated by an hour", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 5000, time.Now().Add(-time.Hour)))
			},
		},
		{
			name: "usage dated an hour ahead", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 5000, time.Now().Add(time.Hour)))
			},
		},
		{
			name: "event dated before the counter's previous event", gate: "G10", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 5000, lastAt.Add(-time.Second)))
			},
		},
		{
			name: "usage for a resource absent from the price sheet", gate: "G11", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "gpu_ms", 5000, time.Now()))
			},
		},
		{
			name: "empty usage batch", gate: "G03", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, compute, handshake.KindUsage, "imvu042", handshake.UsageParams{})
			},
		},
		{
			name: "usage record (positive control, captured)", gate: "",
			try: func(t *testing.T) attempt {
				replayed = signed(t, compute, handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 2000, time.Now()), nil)
				return n.sendSigned(t, replayed)
			},
			check: func(t *testing.T, _ attempt) {
				if c := n.imvu(t, "imvu042").Counters["cpu_ms/compute"]; c.Value != 2000 {
					t.Fatalf("cpu_ms/compute counter %d; want 2000", c.Value)
				}
			},
		},
		{
			name: "usage record replayed", gate: "G02", watch: watch,
			try: func(t *testing.T) attempt { return n.sendSigned(t, replayed) },
		},
		{
			name: "usage from a revoked meter", gate: "G01", watch: watch,
			setup: func(t *testing.T) {
				n.cliOK(t, "identity", "revoke", pub(n.meters["net"]).String(), "--scope", identity.ScopePlatform, "--key", n.dd.RootKey())
			},
			try: func(t *testing.T) attempt {
				return n.send(t, n.meters["net"], handshake.KindUsage, "imvu042", usage("imvu042", "net", "net_bytes", 5000, time.Now()))
			},
		},
	}
	n.run(t, cases)
}
