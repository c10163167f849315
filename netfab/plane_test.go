package netfab

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// twoIMVUs is the standard fixture: alpha and beta with a workload of each
// class. Addresses are only inside namespaces the test makes.
func twoIMVUs() Desired {
	return Desired{Networks: []Network{
		{IMVU: "alpha", Prefix: netip.MustParsePrefix("10.77.1.0/24"), Workloads: []Workload{
			{Name: "a1", Addr: netip.MustParseAddr("10.77.1.2"), Class: Restricted},
			{Name: "a2", Addr: netip.MustParseAddr("10.77.1.3"), Class: Private},
			{Name: "a3", Addr: netip.MustParseAddr("10.77.1.4"), Class: Public},
		}},
		{IMVU: "beta", Prefix: netip.MustParsePrefix("10.77.2.0/24"), Workloads: []Workload{
			{Name: "b1", Addr: netip.MustParseAddr("10.77.2.2"), Class: Restricted},
			{Name: "b2", Addr: netip.MustParseAddr("10.77.2.3"), Class: Public},
		}},
	}}
}

func grantA1B1(port uint16, proto string) Grant {
	return Grant{ID: "g-" + proto, From: Endpoint{"alpha", "a1"}, To: Endpoint{"beta", "b1"}, Port: port, Proto: proto}
}

func TestTopologyAndTeardown(t *testing.T) {
	e := newEnv(t, withEgress("uplink"))
	d := twoIMVUs()
	e.apply(d)
	for _, imvu := range []string{"alpha", "beta"} {
		if _, err := os.Stat(filepath.Join(runDir, e.prefix+"-i-"+imvu)); err != nil {
			t.Errorf("IMVU namespace: %v", err)
		}
	}
	e.serve(e.wl("alpha", "a2"), ap("10.77.1.3:8080"), "a2")
	e.serve(e.wl("beta", "b1"), ap("10.77.2.2:8080"), "b1")
	if got, ok := reach(e.wl("alpha", "a1"), ap("10.77.1.3:8080")); !ok || got != "a2 10.77.1.2" {
		t.Errorf("a1 -> a2 inside alpha: got %q, %v; want a greeting from a2", got, ok)
	}
	if got, ok := reach(e.wl("alpha", "a1"), ap("10.77.2.2:8080")); ok {
		t.Errorf("a1 -> b1 without a grant: connected (%q)", got)
	}
	// No shared L2: beta's bridge never sees alpha's workloads.
	out := run(t, "ip", "-n", e.prefix+"-i-beta", "link", "show", "master", "br0")
	if strings.Count(out, "master br0") != 3 { // up0, b1, b2
		t.Errorf("beta bridge ports:\n%s", out)
	}

	// Applying the same state again changes nothing and finds no drift.
	e.apply(d)
	if drifts, err := e.plane.Reconcile(context.Background()); err != nil || len(drifts) != 0 {
		t.Fatalf("Reconcile after Sync: %v %v", drifts, err)
	}

	// Removing an IMVU removes its namespaces and router port at once.
	d.Networks = d.Networks[:1]
	e.apply(d)
	for _, n := range []string{"-i-beta", "-w-beta.b1", "-w-beta.b2"} {
		if _, err := os.Stat(filepath.Join(runDir, e.prefix+n)); !os.IsNotExist(err) {
			t.Errorf("namespace %s still there after its IMVU was removed (%v)", n, err)
		}
	}
	if out := run(t, "ip", "-n", e.prefix+"-r", "-o", "link"); strings.Contains(out, e.plane.names.routerPort("beta")) {
		t.Errorf("router port of removed IMVU still there:\n%s", out)
	}
	if got, ok := reach(e.wl("alpha", "a1"), ap("10.77.1.3:8080")); !ok {
		t.Errorf("a1 -> a2 after removing beta: %q", got)
	}
}

func TestValidate(t *testing.T) {
	o := &Options{Prefix: "nx", Egress: []EgressPoint{{Name: "eu", NetNS: "/run/netns/eu", Link: "eu0",
		Local: netip.MustParsePrefix("192.0.2.1/30"), Remote: netip.MustParsePrefix("192.0.2.2/30")}}}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Desired)
		want string
	}{
		{"ok", func(d *Desired) {}, ""},
		{"overlap", func(d *Desired) { d.Networks[1].Prefix = netip.MustParsePrefix("10.77.1.0/25") }, "overlaps"},
		{"gateway address", func(d *Desired) { d.Networks[0].Workloads[0].Addr = netip.MustParseAddr("10.77.1.1") }, "gateway"},
		{"outside prefix", func(d *Desired) { d.Networks[0].Workloads[0].Addr = netip.MustParseAddr("10.77.9.9") }, "not a host address"},
		{"egress not allowed", func(d *Desired) { d.Networks[0].Workloads[2].Egress = "eu" }, "not allowed"},
		{"egress unknown", func(d *Desired) { d.Networks[0].Egress = []string{"mars"} }, "does not exist"},
		{"grant to private", func(d *Desired) {
			d.Grants = []Grant{{ID: "g", From: Endpoint{"beta", "b1"}, To: Endpoint{"alpha", "a2"}, Port: 1, Proto: "tcp"}}
		}, "private"},
		{"grant unknown", func(d *Desired) {
			d.Grants = []Grant{{ID: "g", From: Endpoint{"beta", "zz"}, To: Endpoint{"alpha", "a1"}, Port: 1, Proto: "tcp"}}
		}, "does not exist"},
		{"grant proto", func(d *Desired) { d.Grants = []Grant{grantA1B1(1, "sctp")} }, "protocol"},
		{"bad name", func(d *Desired) { d.Networks[0].IMVU = "Alpha.x" }, "bad name"},
		{"duplicate address", func(d *Desired) { d.Networks[0].Workloads[1].Addr = netip.MustParseAddr("10.77.1.2") }, "used twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := twoIMVUs()
			tc.edit(&d)
			err := d.validate(o)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("validate: %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	e := newEnv(t)
	d := twoIMVUs()
	d.Grants = []Grant{grantA1B1(8080, "tcp"), grantA1B1(5353, "udp")}
	e.apply(d)
	a1, a3, b1 := e.wl("alpha", "a1"), e.wl("alpha", "a3"), e.wl("beta", "b1")
	e.serve(b1, ap("10.77.2.2:8080"), "b1")
	e.serve(b1, ap("10.77.2.2:9090"), "b1")
	udp := e.serve(b1, ap("10.77.2.2:5353"), "b1")
	e.serve(a1, ap("10.77.1.2:8080"), "a1")

	for _, tc := range []struct {
		name string
		from string
		to   netip.AddrPort
		want bool
	}{
		{"granted", a1, ap("10.77.2.2:8080"), true},
		{"other port", a1, ap("10.77.2.2:9090"), false},
		{"reverse direction", b1, ap("10.77.1.2:8080"), false},
		{"other workload of the IMVU", a3, ap("10.77.2.2:8080"), false},
	} {
		got, ok := reach(tc.from, tc.to)
		if ok != tc.want {
			t.Errorf("%s: connected=%v (%s), want %v", tc.name, ok, got, tc.want)
		}
		if ok && got != "b1 10.77.1.2" {
			t.Errorf("%s: greeting %q: the peer must see a1's own address", tc.name, got)
		}
	}
	if err := sendUDP(a1, netip.MustParseAddr("10.77.1.2"), ap("10.77.2.2:5353"), "hello"); err != nil {
		t.Fatal(err)
	}
	if !waitFor(time.Second, func() bool { return len(udp.datagrams()) == 1 }) {
		t.Errorf("granted UDP datagram not received: %v", udp.datagrams())
	}

	// A live flow dies when its grant is revoked.
	c, greeting, err := dial(a1, ap("10.77.2.2:8080"), time.Second)
	if err != nil {
		t.Fatalf("dial before revoke: %v", err)
	}
	defer c.Close()
	echo := func(msg string) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, len(msg))
		_, err := c.Read(buf)
		return err
	}
	if err := echo("ping"); err != nil {
		t.Fatalf("live flow before revoke (%s): %v", greeting, err)
	}
	d.Grants = nil
	e.apply(d)
	if err := echo("ping"); err == nil {
		t.Errorf("live flow still works after its grant was revoked")
	}
	if got, ok := reach(a1, ap("10.77.2.2:8080")); ok {
		t.Errorf("new connection after revoke: %q", got)
	}
}

func TestAntiSpoofing(t *testing.T) {
	e := newEnv(t)
	d := twoIMVUs()
	d.Grants = []Grant{grantA1B1(5353, "udp")}
	e.apply(d)
	a1, a2 := e.wl("alpha", "a1"), e.wl("alpha", "a2")
	inside := e.serve(a2, ap("10.77.1.3:5353"), "a2")
	across := e.serve(e.wl("beta", "b1"), ap("10.77.2.2:5353"), "b1")

	for _, tc := range []struct {
		name string
		src  string
		srv  *server
		dst  string
		want bool
	}{
		{"own address, same IMVU", "10.77.1.2", inside, "10.77.1.3:5353", true},
		{"own address, granted peer", "10.77.1.2", across, "10.77.2.2:5353", true},
		{"neighbour's address, same IMVU", "10.77.1.4", inside, "10.77.1.3:5353", false},
		{"neighbour's address, granted peer", "10.77.1.4", across, "10.77.2.2:5353", false},
		{"other IMVU's address", "10.77.2.3", inside, "10.77.1.3:5353", false},
		{"gateway's address", "10.77.1.1", inside, "10.77.1.3:5353", false},
	} {
		before := len(tc.srv.datagrams())
		if err := sendUDP(a1, netip.MustParseAddr(tc.src), ap(tc.dst), tc.name); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := waitFor(400*time.Millisecond, func() bool { return len(tc.srv.datagrams()) > before })
		if got != tc.want {
			t.Errorf("%s: delivered=%v, want %v (%v)", tc.name, got, tc.want, tc.srv.datagrams())
		}
	}

	// A workload that changes its MAC gets nothing through, even from its
	// own address.
	run(t, "ip", "-n", filepath.Base(a1), "link", "set", "eth0", "address", "02:00:00:00:00:01")
	before := len(inside.datagrams())
	sendUDP(a1, netip.MustParseAddr("10.77.1.2"), ap("10.77.1.3:5353"), "new mac")
	if waitFor(400*time.Millisecond, func() bool { return len(inside.datagrams()) > before }) {
		t.Errorf("datagram from a spoofed MAC delivered")
	}
	drifts, err := e.plane.Reconcile(context.Background())
	if err != nil || !hasDrift(drifts, "alpha", "link eth0", ChangeChanged) {
		t.Errorf("MAC change not reported: %v %v", drifts, err)
	}

	// ARP: a1 claims a3's address; a2's neighbour entry for it must keep
	// a3's MAC.
	e.serve(e.wl("alpha", "a3"), ap("10.77.1.4:80"), "a3")
	if _, ok := reach(a2, ap("10.77.1.4:80")); !ok {
		t.Fatal("a2 cannot reach a3")
	}
	neigh := func() string {
		return strings.TrimSpace(run(t, "ip", "-n", filepath.Base(a2), "neigh", "show", "10.77.1.4"))
	}
	real := neigh()
	a3mac := macFor(e.prefix, filepath.Base(e.wl("alpha", "a3")), workloadLink).String()
	if !strings.Contains(real, a3mac) {
		t.Fatalf("a2's neighbour entry for a3: %q, want %s", real, a3mac)
	}
	busybox := requireBin(t, "busybox")
	run(t, "ip", "-n", filepath.Base(a1), "addr", "add", "10.77.1.4/32", "dev", "eth0")
	out, _ := execIn(a1, busybox, "arping", "-U", "-c", "2", "-w", "1", "-I", "eth0", "-s", "10.77.1.4", "10.77.1.4")
	if got := neigh(); !strings.Contains(got, a3mac) {
		t.Errorf("gratuitous ARP from a1 claiming a3's address changed a2's entry: %q (arping: %s)", got, out)
	}
}

func hasDrift(ds []Drift, imvu, object, change string) bool {
	for _, d := range ds {
		if d.IMVU == imvu && strings.Contains(d.Object, object) && d.Change == change && d.Reverted {
			return true
		}
	}
	return false
}

func TestClassesAndNAT(t *testing.T) {
	e := newEnv(t, withEgress("uplink"))
	e.apply(twoIMVUs())
	e.serve(e.ext["uplink"], ap("198.51.100.1:80"), "internet")
	e.serve(e.wl("beta", "b2"), ap("10.77.2.3:80"), "b2")
	for _, tc := range []struct {
		wl, imvu string
		want     bool
	}{
		{"a1", "alpha", false}, // restricted
		{"a2", "alpha", false}, // private
		{"a3", "alpha", true},  // public
		{"b2", "beta", true},
	} {
		got, ok := reach(e.wl(tc.imvu, tc.wl), ap("198.51.100.1:80"))
		if ok != tc.want {
			t.Errorf("%s -> internet: connected=%v (%s), want %v", tc.wl, ok, got, tc.want)
		}
		if ok && got != "internet 192.0.2.1" {
			t.Errorf("%s -> internet: the internet saw %q, want the router's address 192.0.2.1", tc.wl, got)
		}
	}
	// Public is not a grant: public workloads of different IMVUs do not
	// reach each other.
	if got, ok := reach(e.wl("alpha", "a3"), ap("10.77.2.3:80")); ok {
		t.Errorf("a3 -> b2 (both public, no grant): connected (%s)", got)
	}
	// The internet cannot open connections into the plane.
	if got, ok := reach(e.ext["uplink"], ap("10.77.2.3:80")); ok {
		t.Errorf("internet -> b2: connected (%s)", got)
	}
}

func TestEgressPoints(t *testing.T) {
	e := newEnv(t, withEgress("uplink", "eu", "us"))
	for _, l := range []string{"uplink", "eu", "us"} {
		e.serve(e.ext[l], ap("198.51.100.1:80"), l)
	}
	d := twoIMVUs()
	d.Networks[0].Egress = []string{"eu"}
	d.Networks[0].Workloads[2].Egress = "eu"
	e.apply(d)

	a3, b2 := e.wl("alpha", "a3"), e.wl("beta", "b2")
	if got, ok := reach(a3, ap("198.51.100.1:80")); !ok || got != "eu 192.0.2.5" {
		t.Errorf("a3 with egress eu: %q %v, want \"eu 192.0.2.5\"", got, ok)
	}
	if got, ok := reach(b2, ap("198.51.100.1:80")); !ok || got != "uplink 192.0.2.1" {
		t.Errorf("b2 with the uplink: %q %v", got, ok)
	}
	// Count packets on the far ends: a3's traffic appears only in eu. (The
	// closing packets of the connections above settle first.)
	time.Sleep(300 * time.Millisecond)
	before := rxPackets(t, e, "us")
	beforeUp := rxPackets(t, e, "uplink")
	beforeEU := rxPackets(t, e, "eu")
	for range 3 {
		reach(a3, ap("198.51.100.1:80"))
	}
	if got := rxPackets(t, e, "us") - before; got != 0 {
		t.Errorf("%d packets appeared in us", got)
	}
	if got := rxPackets(t, e, "uplink") - beforeUp; got != 0 {
		t.Errorf("%d packets appeared in the uplink", got)
	}
	if got := rxPackets(t, e, "eu") - beforeEU; got < 9 {
		t.Errorf("only %d packets appeared in eu", got)
	}

	// An egress point the IMVU may not use is refused.
	bad := d
	bad.Networks = append([]Network(nil), d.Networks...)
	bad.Networks[0].Workloads = append([]Workload(nil), d.Networks[0].Workloads...)
	bad.Networks[0].Workloads[2].Egress = "us"
	if err := e.plane.Sync(context.Background(), bad); err == nil {
		t.Errorf("Sync with egress us not allowed for alpha succeeded")
	}
	// Moving a3 to us once allowed.
	d.Networks[0].Egress = []string{"eu", "us"}
	d.Networks[0].Workloads[2].Egress = "us"
	e.apply(d)
	if got, ok := reach(a3, ap("198.51.100.1:80")); !ok || got != "us 192.0.2.9" {
		t.Errorf("a3 moved to us: %q %v", got, ok)
	}
}

// rxPackets reads the packet count received by the plane's far end in a
// foreign namespace.
func rxPackets(t *testing.T, e *testEnv, label string) uint64 {
	t.Helper()
	fd, err := netns.GetFromPath(e.ext[label])
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("nx" + e.prefix[:6])
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

func TestCounters(t *testing.T) {
	e := newEnv(t, withEgress("uplink"))
	e.apply(twoIMVUs())
	ctx := context.Background()
	internet := e.sink(e.ext["uplink"], ap("198.51.100.1:9000"))
	a2 := e.sink(e.wl("alpha", "a2"), ap("10.77.1.3:9000"))

	read := func() map[string]Traffic {
		t.Helper()
		c, err := e.plane.Counters(ctx)
		if err != nil {
			t.Fatalf("Counters: %v", err)
		}
		return c
	}
	within := func(what string, got uint64, want int) {
		t.Helper()
		d := float64(got) - float64(want)
		if d < -0.1*float64(want) || d > 0.1*float64(want) {
			t.Errorf("%s: counted %d bytes, sent %d (off by %.1f%%)", what, got, want, 100*d/float64(want))
		}
		t.Logf("%s: counted %d bytes for %d sent (%+.2f%%)", what, got, want, 100*d/float64(want))
	}
	c0 := read()
	const big = 4 << 20
	e.push(e.wl("alpha", "a3"), internet, ap("198.51.100.1:9000"), big)
	e.push(e.wl("alpha", "a1"), a2, ap("10.77.1.3:9000"), big/2)
	c1 := read()
	within("alpha public out (a3 -> internet)", c1["alpha"][Public].Out-c0["alpha"][Public].Out, big)
	within("alpha restricted out (a1 -> a2)", c1["alpha"][Restricted].Out-c0["alpha"][Restricted].Out, big/2)
	within("alpha private in (a1 -> a2)", c1["alpha"][Private].In-c0["alpha"][Private].In, big/2)
	if got := c1["alpha"][Public].In - c0["alpha"][Public].In; got == 0 || got > big/10 {
		t.Errorf("alpha public in (ACKs for 4 MiB): %d bytes", got)
	}
	if b := c1["beta"]; b[Public].Out+b[Restricted].Out+b[Private].Out > 4096 {
		t.Errorf("beta counted traffic it did not send: %v", b)
	}

	// A revert rewrites the chain holding the counter rules; the counts
	// neither reset nor double.
	in := e.plane.names.imvu("alpha")
	sh(t, "ip netns exec "+in+" nft delete rule bridge "+e.prefix+" port_a3 handle "+
		ruleHandle(t, in, "bridge", e.prefix, "port_a3", `ip saddr 10\.77\.1\.4 counter`))
	drifts, err := e.plane.Reconcile(ctx)
	if err != nil || !hasDrift(drifts, "alpha", "nft rule in chain port_a3", ChangeRemoved) {
		t.Fatalf("Reconcile: %v %v", drifts, err)
	}
	c2 := read()
	for imvu, tr := range c1 {
		for class, b := range tr {
			if n := c2[imvu][class]; n.In < b.In || n.Out < b.Out {
				t.Errorf("%s %s went down across a revert: %v -> %v", imvu, class, b, n)
			}
		}
	}
	e.push(e.wl("alpha", "a3"), internet, ap("198.51.100.1:9000"), big/4)
	c3 := read()
	within("alpha public out after the revert", c3["alpha"][Public].Out-c2["alpha"][Public].Out, big/4)

	// Removing the IMVU keeps its final totals.
	d := twoIMVUs()
	d.Networks = d.Networks[1:]
	e.apply(d)
	if c4 := read(); c4["alpha"][Public].Out < c3["alpha"][Public].Out {
		t.Errorf("alpha's totals after removal: %v, before %v", c4["alpha"], c3["alpha"])
	}
}

// A restarted plane adopts what the previous one left: the first Sync
// changes nothing that is right, live flows go on, and bytes counted since
// the last read are not lost.
func TestRestartAdopts(t *testing.T) {
	e := newEnv(t)
	d := twoIMVUs()
	d.Grants = []Grant{grantA1B1(8080, "tcp")}
	e.apply(d)
	e.serve(e.wl("beta", "b1"), ap("10.77.2.2:8080"), "b1")
	c, _, err := dial(e.wl("alpha", "a1"), ap("10.77.2.2:8080"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sk := e.sink(e.wl("alpha", "a2"), ap("10.77.1.3:9000"))
	e.push(e.wl("alpha", "a1"), sk, ap("10.77.1.3:9000"), 1<<20)

	if err := e.plane.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := New(context.Background(), e.plane.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.plane = p2 // torn down at cleanup
	e.apply(d)
	if drifts, err := p2.Reconcile(context.Background()); err != nil || len(drifts) != 0 {
		t.Errorf("Reconcile after adopting: %v %v", drifts, err)
	}
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("live flow across the restart: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Errorf("live flow across the restart: %v", err)
	}
	tr, err := p2.Counters(context.Background())
	if err != nil || tr["alpha"][Restricted].Out < 1<<20 {
		t.Errorf("bytes sent before the restart: %v %v", tr["alpha"], err)
	}
}
