package handshake

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
	"github.com/nexus-core/nexus/revenue"
)

// fixture is a real engine on a real ledger in a temp dir, with a platform, an
// admin, a meter and two IMVUs (imvu042, imvu043) created through Submit.
type fixture struct {
	t                     testing.TB
	dir                   datadir.Dir
	log                   *ledger.Log
	eng                   *Engine
	now                   time.Time
	platform, root, admin ed25519.PrivateKey
	meter, dnsMeter       ed25519.PrivateKey
	owner, owner2, member ed25519.PrivateKey
	stranger              ed25519.PrivateKey
	genesis               Genesis
	lastBefore            string
}

const origin = "test.nexus/ledger"

func key(t testing.TB) ed25519.PrivateKey {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func issue(t testing.TB, issuer, subject ed25519.PrivateKey, scope string, role identity.Role, name string, now time.Time) identity.Identity {
	id, err := identity.Issue(issuer, identity.Statement{Issuer: identity.PublicOf(issuer), Subject: identity.PublicOf(subject),
		Scope: scope, Role: role, Name: name, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "platform"), 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := datadir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, now: time.Now().UTC().Truncate(time.Millisecond),
		platform: key(t), root: key(t), admin: key(t), meter: key(t), dnsMeter: key(t),
		owner: key(t), owner2: key(t), member: key(t), stranger: key(t)}
	f.genesis = Genesis{
		Platform: identity.PublicOf(f.platform), Root: identity.PublicOf(f.root),
		Identities: []identity.Identity{
			issue(t, f.root, f.admin, identity.ScopePlatform, identity.RoleAdmin, "admin", f.now),
			issue(t, f.root, f.meter, identity.ScopePlatform, identity.RoleMeter, "compute", f.now),
			issue(t, f.root, f.dnsMeter, identity.ScopePlatform, identity.RoleMeter, "dns", f.now),
		},
		Capacity:     Resources{CPUMilli: 8000, MemoryBytes: 8 << 30, Pids: 4096, DiskBytes: 100 << 30, DNSRecords: 1000},
		PlatformEnv:  Resources{CPUMilli: 1000, MemoryBytes: 1 << 30},
		Skew:         Duration(5 * time.Minute),
		PeriodLength: Duration(time.Hour),
		GateSet:      GateSet,
		Powers:       []string{"mail.rate-cap-on-abuse"},
		TLDs:         []string{"world"},
	}
	f.open()
	if err := f.eng.Genesis(context.Background(), f.genesis); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.mustSubmit(f.owner, KindCreate, "imvu042", f.handshake("imvu042", f.owner))
	f.mustSubmit(f.owner2, KindCreate, "imvu043", f.handshake("imvu043", f.owner2))
	f.mustSubmit(f.owner, KindIssue, "imvu042", IssueParams{Identity: issue(t, f.owner, f.member, "imvu042", identity.RoleMember, "creator@imvu042.world", f.now)})
	return f
}

// open opens the ledger and a fresh engine over the fixture's data dir.
func (f *fixture) open() {
	f.t.Helper()
	signer, err := ledger.NewSigner(origin, f.platform)
	if err != nil {
		f.t.Fatal(err)
	}
	verifier, err := ledger.NewVerifier(origin, f.platform.Public().(ed25519.PublicKey))
	if err != nil {
		f.t.Fatal(err)
	}
	f.log, err = ledger.Open(context.Background(), f.dir.Ledger(), ledger.Options{Origin: origin, Signer: signer, Verifier: verifier})
	if err != nil {
		f.t.Fatal(err)
	}
	f.eng, err = New(Config{Log: f.log, Store: f.dir, Platform: f.platform, Now: func() time.Time { return f.now }})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { f.log.Close() })
}

// reopen closes the ledger and replays it into a new engine, as a restart does.
func (f *fixture) reopen() {
	f.t.Helper()
	if err := f.log.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.open()
	if err := f.eng.Replay(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) handshake(id string, owner ed25519.PrivateKey) Handshake {
	sheet := revenue.DefaultPriceSheet()
	h := sheet.Hash()
	return Handshake{IMVU: id, Owner: identity.PublicOf(owner), Platform: identity.PublicOf(f.platform), Envelope: Resources{CPUMilli: 1000, MemoryBytes: 1 << 30, Pids: 100, DNSRecords: 10},
		PriceSheet: sheet, SheetHash: hex.EncodeToString(h[:]), Split: [2]int{55, 45}, GateSet: GateSet, Powers: []string{"mail.rate-cap-on-abuse"}}
}

// signed builds an action by actor with the given cosigners, issued now.
func (f *fixture) signed(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) *action.Signed {
	f.t.Helper()
	a, err := action.New(kind, scope, identity.PublicOf(actor), params)
	if err != nil {
		f.t.Fatal(err)
	}
	a.IssuedAt = f.now
	for _, k := range cosign {
		a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
	}
	s, err := action.Seal(a, actor)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, k := range cosign {
		if err := s.Sign(k); err != nil {
			f.t.Fatal(err)
		}
	}
	return s
}

func (f *fixture) submit(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) (*Result, error) {
	return f.send(f.signed(actor, kind, scope, params, cosign...))
}

// send submits s, remembering the state just before, so a test can check a
// denial changed nothing.
func (f *fixture) send(s *action.Signed) (*Result, error) {
	f.lastBefore = f.stateHashes()
	return f.eng.Submit(context.Background(), s)
}

func (f *fixture) mustSubmit(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) *Result {
	f.t.Helper()
	res, err := f.submit(actor, kind, scope, params, cosign...)
	if err != nil {
		f.t.Fatalf("%s on %s: %v", kind, scope, err)
	}
	return res
}

// mustDeny submits and checks the denial's gate and that it is ledgered.
func (f *fixture) mustDeny(gate string, actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) *Denial {
	f.t.Helper()
	before := f.stateHashes()
	_, err := f.submit(actor, kind, scope, params, cosign...)
	var d *Denial
	if !errors.As(err, &d) {
		f.t.Fatalf("%s on %s: want denial by %s, got %v", kind, scope, gate, err)
	}
	if d.Gate != gate {
		f.t.Fatalf("%s on %s: denied by %s (%s), want %s", kind, scope, d.Gate, d.Reason, gate)
	}
	if after := f.stateHashes(); after != before {
		f.t.Fatalf("%s on %s: state changed by a denied action", kind, scope)
	}
	rec := f.record(d.Index)
	if rec.Type != RecordDenial || rec.Gate != gate || rec.Kind != kind {
		f.t.Fatalf("ledger entry %d = %+v, want a %s denial of %s", d.Index, rec, gate, kind)
	}
	return d
}

// stateHashes summarises every scope's state.
func (f *fixture) stateHashes() string {
	var out string
	f.eng.View(func(s *State) error {
		h, _, _ := s.Platform.Hash()
		out = h
		for _, id := range []string{"imvu042", "imvu043"} {
			if m := s.IMVUs[id]; m != nil {
				h, _, _ := m.Hash()
				out += h
			}
		}
		return nil
	})
	return out
}

func (f *fixture) record(i uint64) Record {
	f.t.Helper()
	b, err := f.log.Read(context.Background(), i)
	if err != nil {
		f.t.Fatal(err)
	}
	var r Record
	if err := jsonUnmarshal(b, &r); err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) imvu(id string) *IMVU {
	var m *IMVU
	f.eng.View(func(s *State) error { m = s.IMVUs[id]; return nil })
	return m
}

// period is the fixture calendar's current period.
func (f *fixture) period() revenue.Period {
	return revenue.Calendar{Length: time.Duration(f.genesis.PeriodLength)}.Of(f.now)
}

func (f *fixture) usage(meter string, resource string, counter uint64, at time.Time) UsageParams {
	return UsageParams{Events: []revenue.Usage{{IMVU: "imvu042", Resource: resource, Meter: meter, Counter: counter, At: at}}}
}

// sealAs re-signs a modified action.
func sealAs(a *action.Action, key ed25519.PrivateKey) (*action.Signed, error) {
	return action.Seal(a, key)
}
