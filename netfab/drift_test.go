package netfab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// sh runs a shell command as the hostile admin.
func sh(t testing.TB, script string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func shOut(t testing.TB, script string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// ruleHandle finds the handle of the plane's rule in chain whose text
// matches re.
func ruleHandle(t testing.TB, ns, family, table, chain, re string) string {
	t.Helper()
	out := shOut(t, fmt.Sprintf("ip netns exec %s nft -a list chain %s %s %s", ns, family, table, chain))
	for _, l := range strings.Split(out, "\n") {
		if regexp.MustCompile(re).MatchString(l) {
			if m := regexp.MustCompile(`# handle (\d+)`).FindStringSubmatch(l); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no rule matching %q in %s:\n%s", re, chain, out)
	return ""
}

// startRun runs the plane's Run loop until the test ends.
func (e *testEnv) startRun() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.plane.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			e.t.Errorf("Run: %v", err)
		}
	})
}

// quiet drains drift reports until none arrived for a while.
func (e *testEnv) quiet() []Drift {
	var got []Drift
	for {
		select {
		case d := <-e.drifts:
			got = append(got, d)
		case <-time.After(150 * time.Millisecond):
			return got
		}
	}
}

// awaitDrift waits for a reverted drift matching imvu, object and change.
func (e *testEnv) awaitDrift(imvu, object, change string, limit time.Duration) (Drift, []Drift, bool) {
	deadline := time.After(limit)
	var seen []Drift
	for {
		select {
		case d := <-e.drifts:
			seen = append(seen, d)
			if d.IMVU == imvu && strings.Contains(d.Object, object) && d.Change == change && d.Reverted {
				return d, seen, true
			}
		case <-deadline:
			return Drift{}, seen, false
		}
	}
}

func TestDriftRevertedByRun(t *testing.T) {
	e := newEnv(t, withEgress("uplink"))
	d := twoIMVUs()
	d.Grants = []Grant{grantA1B1(8080, "tcp")}
	e.apply(d)
	e.startRun()
	e.serve(e.wl("beta", "b1"), ap("10.77.2.2:8080"), "b1")
	e.serve(e.ext["uplink"], ap("198.51.100.1:80"), "internet")

	n := e.plane.names
	r, ia, ib := n.router(), n.routerPort("alpha"), n.routerPort("beta")
	ialpha, wa1 := n.imvu("alpha"), n.workload("alpha", "a1")
	p := e.prefix
	nsExec := func(ns string) string { return "ip netns exec " + ns + " " }
	has := func(script, want string) func() bool {
		return func() bool {
			out, _ := exec.Command("sh", "-c", script).CombinedOutput()
			return strings.Contains(string(out), want)
		}
	}
	not := func(f func() bool) func() bool { return func() bool { return !f() } }

	cases := []struct {
		name         string
		edit         string
		imvu, object string
		change       string
		reverted     func() bool
	}{
		{name: "dup table in router",
			edit: nsExec(r) + `nft -f - <<'X'
table ip evil {
	chain c { type filter hook prerouting priority -300; ip saddr 10.77.1.0/24 dup to 10.77.2.3 device "` + ib + `"; }
}
X`,
			object: "nft table ip evil", change: ChangeAdded,
			reverted: not(has(nsExec(r)+"nft list tables", "evil"))},
		{name: "redirect table in router",
			edit: nsExec(r) + `nft -f - <<'X'
table ip evil2 {
	chain p { type nat hook prerouting priority -101; tcp dport 8080 redirect to :9999; }
}
X`,
			object: "nft table ip evil2", change: ChangeAdded,
			reverted: not(has(nsExec(r)+"nft list tables", "evil2"))},
		{name: "mirror table in IMVU namespace",
			edit: nsExec(ialpha) + `nft -f - <<'X'
table netdev mirror {
	chain i { type filter hook ingress device "up0" priority 0; dup to "br0"; }
}
X`,
			imvu: "alpha", object: "nft table netdev mirror", change: ChangeAdded,
			reverted: not(has(nsExec(ialpha)+"nft list tables", "mirror"))},
		{name: "plane rule deleted",
			edit: nsExec(r) + "nft delete rule inet " + p + " out_alpha handle " + ruleHandle(t, r, "inet", p, "out_alpha", "tcp dport 8080 accept"),
			imvu: "alpha", object: "nft rule in chain out_alpha", change: ChangeRemoved,
			reverted: has(nsExec(r)+"nft list chain inet "+p+" out_alpha", "tcp dport 8080 accept")},
		{name: "rule inserted into plane chain",
			edit: nsExec(r) + "nft insert rule inet " + p + " out_alpha accept",
			imvu: "alpha", object: "nft rule in chain out_alpha", change: ChangeAdded,
			reverted: not(has(nsExec(r)+"nft list chain inet "+p+" out_alpha", "\t\taccept\n"))},
		{name: "bridge chain flushed",
			edit: nsExec(ialpha) + "nft flush chain bridge " + p + " port_a1",
			imvu: "alpha", object: "nft rule in chain port_a1", change: ChangeRemoved,
			reverted: has(nsExec(ialpha)+"nft list chain bridge "+p+" port_a1", "arp saddr ip 10.77.1.2")},
		{name: "route added in router",
			edit: "ip -n " + r + " route add 10.99.0.0/16 via 10.77.1.2 dev " + ia,
			imvu: "alpha", object: "route 10.99.0.0/16", change: ChangeAdded,
			reverted: not(has("ip -n "+r+" route", "10.99.0.0"))},
		{name: "default route replaced in workload",
			edit: "ip -n " + wa1 + " route replace default via 10.77.1.99 dev eth0",
			imvu: "alpha", object: "route 0.0.0.0/0", change: ChangeChanged,
			reverted: has("ip -n "+wa1+" route", "default via 10.77.1.1")},
		{name: "route to a grant peer rerouted",
			edit: "ip -n " + r + " route add 10.77.2.2/32 via 10.77.1.4 dev " + ia,
			imvu: "beta", object: "route 10.77.2.2/32", change: ChangeAdded,
			reverted: not(has("ip -n "+r+" route", "10.77.2.2 via"))},
		{name: "address added on router port",
			edit: "ip -n " + r + " addr add 172.16.9.1/24 dev " + ia,
			imvu: "alpha", object: "addr 172.16.9.1/24", change: ChangeAdded,
			reverted: not(has("ip -n "+r+" addr", "172.16.9.1"))},
		{name: "IMVU uplink veth down",
			edit: "ip -n " + ialpha + " link set up0 down",
			imvu: "alpha", object: "link up0", change: ChangeChanged,
			reverted: not(has("ip -n "+ialpha+" link show up0", "state DOWN"))},
		{name: "router port down",
			edit: "ip -n " + r + " link set " + ib + " down",
			imvu: "beta", object: "link " + ib, change: ChangeChanged,
			reverted: has("ip -n "+r+" route", "10.77.2.0/24 dev "+ib)},
		{name: "bridge port detached",
			edit: "ip -n " + ialpha + " link set " + n.bridgePort("a1") + " nomaster",
			imvu: "alpha", object: "link " + n.bridgePort("a1"), change: ChangeChanged,
			reverted: has("ip -n "+ialpha+" link show "+n.bridgePort("a1"), "master br0")},
		{name: "workload MAC changed",
			edit: "ip -n " + wa1 + " link set eth0 address 02:00:00:00:00:42",
			imvu: "alpha", object: "link eth0", change: ChangeChanged,
			reverted: not(has("ip -n "+wa1+" link show eth0", "02:00:00:00:00:42"))},
		{name: "link added in IMVU namespace",
			edit: "ip -n " + ialpha + " link add x0 type veth peer name x1",
			imvu: "alpha", object: "link x", change: ChangeAdded,
			reverted: not(has("ip -n "+ialpha+" link", "x0"))},
		{name: "policy rule added in router",
			edit: "ip -n " + r + " rule add from 10.77.1.2 lookup 1000 prio 100",
			imvu: "alpha", object: "rule", change: ChangeAdded,
			reverted: not(has("ip -n "+r+" rule", "100:"))},
		{name: "forwarding disabled in router",
			edit:   nsExec(r) + "sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward'",
			object: "sysctl", change: ChangeChanged,
			reverted: has(nsExec(r)+"cat /proc/sys/net/ipv4/ip_forward", "1")},
		{name: "router veth to IMVU deleted",
			edit: "ip -n " + r + " link del " + ia,
			imvu: "alpha", object: "link", change: ChangeRemoved,
			reverted: has("ip -n "+ialpha+" link show up0", "master br0")},
	}
	var lat []time.Duration
	for _, tc := range cases {
		e.quiet()
		start := time.Now()
		sh(t, tc.edit)
		d, seen, ok := e.awaitDrift(tc.imvu, tc.object, tc.change, time.Second)
		if !ok {
			t.Errorf("%s: no drift {imvu %q, %q, %s} reported within 1s; saw %v", tc.name, tc.imvu, tc.object, tc.change, seen)
			continue
		}
		lat = append(lat, d.At.Sub(start))
		if !waitFor(time.Second, tc.reverted) {
			t.Errorf("%s: reported (%+v) but not reverted within 1s", tc.name, d)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("%s: reverted after %v, want <= 1s", tc.name, el)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		t.Logf("edit -> drift reported: %d edits, median %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])
	}
	e.quiet()
	// Sync while Run watches: its changes are not drift.
	d.Grants = append(d.Grants, Grant{ID: "g2", From: Endpoint{"beta", "b1"}, To: Endpoint{"alpha", "a1"}, Port: 22, Proto: "tcp"})
	d.Networks = append(d.Networks, Network{IMVU: "gamma", Prefix: netip.MustParsePrefix("10.77.3.0/24"),
		Workloads: []Workload{{Name: "g1", Addr: netip.MustParseAddr("10.77.3.2"), Class: Private}}})
	e.apply(d)
	if ds := e.quiet(); len(ds) != 0 {
		t.Errorf("Sync under Run reported as drift: %v", ds)
	}
	// After all that, the approved paths work and no drift remains.
	if got, ok := reach(e.wl("alpha", "a1"), ap("10.77.2.2:8080")); !ok {
		t.Errorf("grant a1 -> b1 after reverts: %s", got)
	}
	if got, ok := reach(e.wl("alpha", "a3"), ap("198.51.100.1:80")); !ok {
		t.Errorf("a3 -> internet after reverts: %s", got)
	}
	if drifts, err := e.plane.Reconcile(context.Background()); err != nil || len(drifts) != 0 {
		t.Errorf("Reconcile after reverts: %v %v", drifts, err)
	}
}

// A namespace deleted by hand is noticed by the read-back (no event marks
// it) and made again, wired as before.
func TestDriftNamespaceDeleted(t *testing.T) {
	e := newEnv(t)
	e.apply(twoIMVUs())
	e.serve(e.wl("alpha", "a2"), ap("10.77.1.3:80"), "a2")
	ns := e.plane.names.workload("alpha", "a1")
	sh(t, "ip netns del "+ns)
	drifts, err := e.plane.Reconcile(context.Background())
	if err != nil || !hasDrift(drifts, "alpha", "netns "+ns, ChangeRemoved) {
		t.Fatalf("Reconcile: %v %v", drifts, err)
	}
	if got, ok := reach(filepath.Join(runDir, ns), ap("10.77.1.3:80")); !ok {
		t.Errorf("a1 -> a2 after its namespace was made again: %s", got)
	}
}

// Cutting the link between alpha and the router cuts only alpha's paths
// out: with nothing reverting, each IMVU still serves its own workloads;
// Reconcile then restores the path.
func TestCutLink(t *testing.T) {
	e := newEnv(t)
	d := twoIMVUs()
	d.Grants = []Grant{grantA1B1(8080, "tcp")}
	e.apply(d)
	e.serve(e.wl("alpha", "a2"), ap("10.77.1.3:80"), "a2")
	e.serve(e.wl("beta", "b1"), ap("10.77.2.2:8080"), "b1")
	a1 := e.wl("alpha", "a1")
	sh(t, "ip -n "+e.plane.names.imvu("alpha")+" link set up0 down")

	if got, ok := reach(a1, ap("10.77.2.2:8080")); ok {
		t.Errorf("a1 -> b1 with alpha's uplink down: connected (%s)", got)
	}
	if got, ok := reach(a1, ap("10.77.1.3:80")); !ok {
		t.Errorf("a1 -> a2 inside alpha with its uplink down: %s", got)
	}
	if got, ok := reach(e.wl("beta", "b2"), ap("10.77.2.2:8080")); !ok {
		t.Errorf("b2 -> b1 inside beta with alpha's uplink down: %s", got)
	}
	drifts, err := e.plane.Reconcile(context.Background())
	if err != nil || !hasDrift(drifts, "alpha", "link up0", ChangeChanged) {
		t.Fatalf("Reconcile: %v %v", drifts, err)
	}
	if got, ok := reach(a1, ap("10.77.2.2:8080")); !ok {
		t.Errorf("a1 -> b1 after Reconcile: %s", got)
	}
}
