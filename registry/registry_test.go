package registry_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/registry"
)

// world is an in-process daemon with imvu042 and imvu043 and their keys.
type world struct {
	t             *testing.T
	n             *daemon.Node
	c             *api.Client
	admin         ed25519.PrivateKey
	o42, o43, m42 ed25519.PrivateKey
	dnsAddr       string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	if err := daemon.Init(ctx, root, daemon.InitOptions{Dev: true}); err != nil {
		t.Fatal(err)
	}
	n, err := daemon.Start(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c, err := api.Dial("unix:" + n.Dir.Socket())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, n: n, c: c}
	w.admin, _ = identity.ReadKeyFile(n.Dir.AdminKey())
	w.o42, _ = identity.Generate()
	w.o43, _ = identity.Generate()
	w.m42, _ = identity.Generate()
	for id, k := range map[string]ed25519.PrivateKey{"imvu042": w.o42, "imvu043": w.o43} {
		offer, err := c.Offer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.must(k, handshake.KindCreate, id, offer.Handshake(id, identity.PublicOf(k)))
	}
	now := time.Now().UTC().Truncate(time.Second)
	mid, err := identity.Issue(w.o42, identity.Statement{Issuer: identity.PublicOf(w.o42), Subject: identity.PublicOf(w.m42),
		Scope: "imvu042", Role: identity.RoleMember, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w.must(w.o42, handshake.KindIssue, "imvu042", handshake.IssueParams{Identity: mid})
	for _, l := range n.Status().Listeners {
		if l.Name == "dns" && l.Network == "udp" {
			w.dnsAddr = l.Address
		}
	}
	return w
}

func (w *world) send(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) (*handshake.Result, error) {
	a, err := action.New(kind, scope, identity.PublicOf(actor), params)
	if err != nil {
		return nil, err
	}
	for _, k := range cosign {
		a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
	}
	s, err := action.Seal(a, actor)
	if err != nil {
		return nil, err
	}
	for _, k := range cosign {
		s.Sign(k)
	}
	return w.c.Submit(context.Background(), s)
}

func (w *world) must(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) {
	w.t.Helper()
	if _, err := w.send(actor, kind, scope, params, cosign...); err != nil {
		w.t.Fatalf("%s on %s: %v", kind, scope, err)
	}
}

// ask queries the daemon's DNS listener.
func (w *world) ask(name string, qt uint16) *mdns.Msg {
	w.t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qt)
	r, err := mdns.Exchange(m, w.dnsAddr)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) a(name string) string {
	w.t.Helper()
	var out []string
	for _, rr := range w.ask(name, mdns.TypeA).Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, ",")
}

func TestZoneControlThroughTheEngine(t *testing.T) {
	w := newWorld(t)
	set := func(zone, name, typ string, data ...string) registry.SetParams {
		return registry.SetParams{Zone: zone, Name: name, Type: typ, Data: data}
	}
	w.must(w.o42, registry.KindSet, "imvu042", set("imvu042.world", "stage", "A", "10.0.0.5"))
	if got := w.a("stage.imvu042.world"); got != "10.0.0.5" {
		t.Fatalf("stage.imvu042.world A = %q after dns.set", got)
	}
	w.must(w.m42, registry.KindSet, "imvu042", set("imvu042.world", "stage", "A", "10.0.0.7", "10.0.0.8"))
	if got := w.a("Stage.IMVU042.world"); got != "10.0.0.7,10.0.0.8" {
		t.Fatalf("after a member's dns.set: %q", got)
	}
	cases := []struct {
		name   string
		actor  ed25519.PrivateKey
		scope  string
		params any
		kind   string
		cosign []ed25519.PrivateKey
		gate   string
	}{
		{"another IMVU's owner writes in the zone", w.o43, "imvu042", set("imvu042.world", "stage", "A", "6.6.6.6"), registry.KindSet, nil, "G03"},
		{"another IMVU's owner names the zone from its own scope", w.o43, "imvu043", set("imvu042.world", "stage", "A", "6.6.6.6"), registry.KindSet, nil, "G12"},
		{"admin repoints a record alone", w.admin, "imvu042", set("imvu042.world", "stage", "A", "6.6.6.6"), registry.KindSet, nil, "G06"},
		{"admin removes a record alone", w.admin, "imvu042", registry.RemoveParams{Zone: "imvu042.world", Name: "stage"}, registry.KindRemove, nil, "G06"},
		{"record outside the zone", w.o42, "imvu042", set("imvu042.world", "www.imvu043.world.", "A", "6.6.6.6"), registry.KindSet, nil, "G03"},
		{"malformed address", w.o42, "imvu042", set("imvu042.world", "x", "A", "10.0.0.300"), registry.KindSet, nil, "G03"},
		{"more records than the envelope", w.o42, "imvu042", registry.ImportParams{Zone: "imvu042.world", Records: many(1001)}, registry.KindImport, nil, "G07"},
		{"bind a name under another IMVU's", w.o42, "imvu042", registry.BindParams{Name: "shop.imvu043.world"}, registry.KindBind, nil, "G04"},
		{"bind a name outside the platform TLDs", w.o42, "imvu042", registry.BindParams{Name: "example.com"}, registry.KindBind, nil, "G03"},
		{"member binds a name", w.m42, "imvu042", registry.BindParams{Name: "imvu042-shop.world"}, registry.KindBind, nil, "G03"},
		{"transfer without the recipient", w.o42, "imvu042", registry.TransferParams{Name: "imvu042-2.world", To: identity.PublicOf(w.o43), IMVU: "imvu043", Zone: registry.Zone{Origin: "imvu042-2.world"}}, registry.KindTransfer, nil, "G05"},
	}
	w.must(w.o42, registry.KindBind, "imvu042", registry.BindParams{Name: "imvu042-2.world"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.send(c.actor, c.kind, c.scope, c.params, c.cosign...)
			d, ok := api.IsDenied(err)
			if !ok || d.Gate != c.gate {
				t.Fatalf("got %v, want a denial by %s", err, c.gate)
			}
			if got := w.a("stage.imvu042.world"); got != "10.0.0.7,10.0.0.8" {
				t.Fatalf("the zone changed after a denial: %q", got)
			}
		})
	}
	// With the owner's consent the admin may change it; then the owner removes it.
	w.must(w.admin, registry.KindSet, "imvu042", set("imvu042.world", "stage", "A", "10.0.0.9"), w.o42)
	w.must(w.o42, registry.KindRemove, "imvu042", registry.RemoveParams{Zone: "imvu042.world", Name: "stage"})
	if r := w.ask("stage.imvu042.world", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("after dns.rm: rcode %s", mdns.RcodeToString[r.Rcode])
	}
}

func TestTransferMovesTheZone(t *testing.T) {
	w := newWorld(t)
	w.must(w.o42, registry.KindBind, "imvu042", registry.BindParams{Name: "shop.world"})
	w.must(w.o42, registry.KindSet, "imvu042", registry.SetParams{Zone: "shop.world", Name: "@", Type: "A", Data: []string{"10.1.1.1"}})
	if _, err := w.send(w.o42, registry.KindTransfer, "imvu042", registry.TransferParams{Name: "imvu042.world", To: identity.PublicOf(w.o43), IMVU: "imvu043", Zone: w.zone("imvu042", "imvu042.world")}, w.o43); err == nil {
		t.Fatal("the home domain was transferred")
	}
	w.must(w.o42, registry.KindTransfer, "imvu042", registry.TransferParams{Name: "shop.world", To: identity.PublicOf(w.o43), IMVU: "imvu043", Zone: w.zone("imvu042", "shop.world")}, w.o43)
	if got := w.a("shop.world"); got != "10.1.1.1" {
		t.Fatalf("shop.world after the transfer: %q", got)
	}
	b, err := w.c.Lookup(context.Background(), "www.shop.world")
	if err != nil || b.IMVU != "imvu043" || b.Domain != "shop.world" {
		t.Fatalf("lookup after transfer: %+v, %v", b, err)
	}
	// The old holder has lost it; the new one controls it.
	if _, err := w.send(w.o42, registry.KindSet, "imvu042", registry.SetParams{Zone: "shop.world", Name: "@", Type: "A", Data: []string{"6.6.6.6"}}); err == nil {
		t.Fatal("the old holder still writes the zone")
	}
	w.must(w.o43, registry.KindSet, "imvu043", registry.SetParams{Zone: "shop.world", Name: "@", Type: "A", Data: []string{"10.2.2.2"}})
	if got := w.a("shop.world"); got != "10.2.2.2" {
		t.Fatalf("shop.world after the new holder's change: %q", got)
	}
}

func many(n int) []dns.Record {
	out := make([]dns.Record, n)
	for i := range out {
		out[i] = dns.Record{Name: fmt.Sprintf("h%d", i), Type: "A", TTL: 60, Data: fmt.Sprintf("10.9.%d.%d", i/256, i%256)}
	}
	return out
}

// zone reads an IMVU's zone as its owner.
func (w *world) zone(id, origin string) registry.Zone {
	w.t.Helper()
	var st handshake.IMVU
	key := map[string]ed25519.PrivateKey{"imvu042": w.o42, "imvu043": w.o43}[id]
	if err := w.c.Query(context.Background(), key, api.QueryIMVU, id, nil, &st); err != nil {
		w.t.Fatal(err)
	}
	for _, z := range registry.Zones(&st) {
		if z.Origin == origin {
			return z
		}
	}
	w.t.Fatalf("%s has no zone %s", id, origin)
	return registry.Zone{}
}

// TestTransferredDomainsLeaveWithTheirBundles: after a domain changed hands,
// both IMVUs' exit bundles verify offline, and the receiver's carries the zone.
func TestTransferredDomainsLeaveWithTheirBundles(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.must(w.o42, registry.KindBind, "imvu042", registry.BindParams{Name: "shop.world"})
	w.must(w.o42, registry.KindSet, "imvu042", registry.SetParams{Zone: "shop.world", Name: "@", Type: "A", Data: []string{"10.1.1.1"}})
	z := w.zone("imvu042", "shop.world")
	stale := z
	stale.Serial--
	if _, err := w.send(w.o42, registry.KindTransfer, "imvu042", registry.TransferParams{Name: "shop.world", To: identity.PublicOf(w.o43), IMVU: "imvu043", Zone: stale}, w.o43); err == nil {
		t.Fatal("a transfer naming a stale zone went through")
	}
	w.must(w.o42, registry.KindTransfer, "imvu042", registry.TransferParams{Name: "shop.world", To: identity.PublicOf(w.o43), IMVU: "imvu043", Zone: z}, w.o43)
	for id, k := range map[string]ed25519.PrivateKey{"imvu042": w.o42, "imvu043": w.o43} {
		w.must(k, handshake.KindExit, id, handshake.ExitParams{})
		var buf bytes.Buffer
		if err := w.c.Export(ctx, k, id, &buf, nil); err != nil {
			t.Fatal(err)
		}
		b, err := bundle.Open(&buf)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := bundle.Verify(ctx, b, bundle.Options{Register: []func(*handshake.Engine) error{registry.Register}})
		if err != nil {
			t.Fatalf("%s's bundle: %v", id, err)
		}
		_, hasShop := b.Files["zones/shop.world.zone"]
		if hasShop != (id == "imvu043") {
			t.Fatalf("%s's bundle: shop.world zone present %v; domains %v", id, hasShop, rep.Domains)
		}
	}
}

// TestOwnerOfTwoIMVUsExitsOneCleanly: actions the owner co-signed in its other
// IMVU stay out of this IMVU's bundle, which verifies.
func TestOwnerOfTwoIMVUsExitsOneCleanly(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	offer, _ := w.c.Offer(ctx)
	w.must(w.o42, handshake.KindCreate, "imvu044", offer.Handshake("imvu044", identity.PublicOf(w.o42)))
	env := offer.Envelope
	env.CPUMilli += 100
	w.must(w.admin, handshake.KindResize, "imvu044", handshake.EnvelopeParams{Envelope: env}, w.o42)
	w.must(w.o42, handshake.KindExit, "imvu042", handshake.ExitParams{})
	var buf bytes.Buffer
	if err := w.c.Export(ctx, w.o42, "imvu042", &buf, nil); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Verify(ctx, b, bundle.Options{Register: []func(*handshake.Engine) error{registry.Register}}); err != nil {
		t.Fatal(err)
	}
}
