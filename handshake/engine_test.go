package handshake

import (
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
)

func TestReplayReachesTheSameState(t *testing.T) {
	f := newFixture(t)
	f.mustSubmit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 5, f.now))
	env := f.imvu("imvu042").Envelope
	env.CPUMilli += 500
	f.mustSubmit(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.owner)
	f.mustDeny("G06", f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env})
	replayed := f.signed(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: env})
	if _, err := f.send(replayed); err != nil {
		t.Fatal(err)
	}
	before := f.stateHashes()
	size := f.log.Size()
	f.reopen()
	if got := f.stateHashes(); got != before {
		t.Fatal("replay derived a different state")
	}
	if f.log.Size() != size {
		t.Fatalf("replay of a clean ledger appended %d entries", f.log.Size()-size)
	}
	// Nonces survive a restart: the replayed action is still refused.
	if _, err := f.send(replayed); err == nil || !strings.Contains(err.Error(), "G02") {
		t.Fatalf("replay after restart: %v, want G02", err)
	}
}

func TestReplayCompletesAnEffectLostInACrash(t *testing.T) {
	f := newFixture(t)
	env := f.imvu("imvu042").Envelope
	env.Pids = 99
	// What a crash between the action entry and its effect leaves: the action
	// is in the ledger, the state file and effect entry are not.
	s := f.signed(f.owner, KindResize, "imvu042", EnvelopeParams{Envelope: env})
	b, err := json.Marshal(Record{Type: RecordAction, Time: f.now, Scope: "imvu042", Kind: KindResize, Action: s})
	if err != nil {
		t.Fatal(err)
	}
	ent, err := f.log.Append(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if got := f.imvu("imvu042").Envelope.Pids; got != 99 {
		t.Fatalf("pids %d after replay, want 99", got)
	}
	rec := f.record(ent.Index + 1)
	if rec.Type != RecordEffect || rec.Ref != ent.Index {
		t.Fatalf("entry after the action = %+v, want its effect", rec)
	}
	file, err := f.dir.ReadIMVU("imvu042")
	if err != nil {
		t.Fatal(err)
	}
	_, want, _ := f.imvu("imvu042").Hash()
	if string(file) != string(want) {
		t.Fatal("state file not written for the completed effect")
	}
}

func TestHandEditedStateIsRestoredAndLedgered(t *testing.T) {
	f := newFixture(t)
	dir, _ := f.dir.IMVU("imvu042")
	path := filepath.Join(dir, "state.json")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), `"cpu_millicores": 1000`, `"cpu_millicores": 9000`, 1)
	if edited == string(orig) {
		t.Fatal("test could not find the field to edit")
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	size := f.log.Size()
	f.reopen()
	got, _ := os.ReadFile(path)
	if string(got) != string(orig) {
		t.Fatal("hand edit not reverted")
	}
	rec := f.record(size)
	if rec.Type != RecordDrift || rec.Scope != "imvu042" {
		t.Fatalf("entry %d = %+v, want drift on imvu042", size, rec)
	}
}

func TestTxPermitsNothingOutsideApply(t *testing.T) {
	var zero Tx
	checks := map[string]error{}
	_, checks["IMVU"] = zero.IMVU()
	_, checks["Platform"] = zero.Platform()
	checks["CreateIMVU"] = zero.CreateIMVU(&IMVU{})
	checks["Bind"] = zero.Bind(Name{Type: "domain", ID: "x.world"})
	checks["Unbind"] = zero.Unbind(Name{Type: "domain", ID: "x.world"})
	for name, err := range checks {
		if !errors.Is(err, ErrNoPermit) {
			t.Errorf("zero Tx.%s: %v, want ErrNoPermit", name, err)
		}
	}
	// A Tx kept by an applier is dead once the applier returns.
	f := newFixture(t)
	var kept *Tx
	err := f.eng.Register(Kind{Name: "test.keep", Resource: "imvu", Roles: []identity.Role{identity.RoleOwner},
		Prepare: decodeInto[struct{}](nil),
		Apply:   func(tx *Tx) error { kept = tx; _, err := tx.IMVU(); return err }})
	if err != nil {
		t.Fatal(err)
	}
	f.mustSubmit(f.owner, "test.keep", "imvu042", struct{}{})
	if _, err := kept.IMVU(); !errors.Is(err, ErrNoPermit) {
		t.Fatalf("kept Tx after apply: %v, want ErrNoPermit", err)
	}
}

// isTx reports whether a type expression is handshake.Tx.
func isTx(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == "handshake" && sel.Sel.Name == "Tx"
}

// TestNoApplierCalledOutsideTheEngine reads every non-test Go file outside this
// package and fails on a call of anything named Apply, or on a Tx built by
// hand: appliers run only from the engine. (A zero Tx permits nothing anyway;
// TestTxPermitsNothingOutsideApply shows it.)
func TestNoApplierCalledOutsideTheEngine(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || path == filepath.Join(root, "handshake")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Apply" {
					bad = append(bad, fset.Position(x.Pos()).String()+": calls Apply")
				}
			case *ast.CompositeLit:
				if isTx(x.Type) {
					bad = append(bad, fset.Position(x.Pos()).String()+": builds a handshake.Tx")
				}
			}
			if call, ok := n.(*ast.CallExpr); ok {
				if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "new" && len(call.Args) == 1 && isTx(call.Args[0]) {
					bad = append(bad, fset.Position(call.Pos()).String()+": allocates a handshake.Tx")
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("walked only %d files from %s: the check is not looking at the module", files, root)
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

func TestRegisterRequiresExportAndImport(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		r    Resource
	}{
		{"no exporter", Resource{Name: "zone", Importer: stateResource{"x"}}},
		{"no importer", Resource{Name: "zone", Exporter: stateResource{"x"}}},
		{"no name", Resource{Exporter: stateResource{"x"}, Importer: stateResource{"x"}}},
	}
	for _, c := range cases {
		if err := f.eng.RegisterResource(c.r); err == nil {
			t.Errorf("%s: registered", c.name)
		}
	}
	err := f.eng.Register(Kind{Name: "dns.set", Resource: "zone", Roles: []identity.Role{identity.RoleOwner},
		Prepare: decodeInto[struct{}](nil), Apply: func(*Tx) error { return nil }})
	if err == nil || !strings.Contains(err.Error(), "G16") {
		t.Fatalf("kind over an unexportable resource: %v, want a G16 refusal", err)
	}
}

func TestMembersActInsideTheirIMVUOnly(t *testing.T) {
	f := newFixture(t)
	registerProbe(t, f.eng)
	f.mustSubmit(f.member, "test.probe", "imvu042", probeParams{})
	f.mustDeny("G03", f.member, "test.probe", "imvu043", probeParams{})
}

func BenchmarkGates(b *testing.B) {
	f := newFixture(b)
	env := f.imvu("imvu042").Envelope
	env.CPUMilli += 100
	s := f.signed(f.admin, KindResize, "imvu042", EnvelopeParams{Envelope: env}, f.owner)
	a, err := s.Open()
	if err != nil {
		b.Fatal(err)
	}
	good, bad := s.Verify()
	req := &Request{Signed: s, Action: a, Kind: f.eng.kinds[a.Kind], Now: f.now, State: f.eng.state, SignedBy: good, BadSigs: bad}
	if err := req.Kind.Prepare(req); err != nil {
		b.Fatal(err)
	}
	if d := f.eng.check(req, f.eng.gates); d != nil {
		b.Fatal(d)
	}
	samples := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if d := f.eng.check(req, f.eng.gates); d != nil {
			b.Fatal(d)
		}
		samples = append(samples, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

func TestReplayIsRefusedWhateverTheActorDoesMeanwhile(t *testing.T) {
	f := newFixture(t)
	registerProbe(t, f.eng)
	first := f.signed(f.owner, "test.probe", "imvu042", probeParams{})
	if _, err := f.send(first); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		f.mustSubmit(f.owner, "test.probe", "imvu042", probeParams{})
	}
	// Far-future actions (refused) and near-future ones (accepted) must not
	// push the first nonce out of memory while it could still pass G02.
	for _, ahead := range []time.Duration{4 * time.Minute, time.Hour, 24 * time.Hour} {
		s := f.signed(f.owner, "test.probe", "imvu042", probeParams{})
		a, _ := s.Open()
		a.IssuedAt = f.now.Add(ahead)
		s2, err := sealAs(a, f.owner)
		if err != nil {
			t.Fatal(err)
		}
		f.send(s2)
	}
	if _, err := f.send(first); err == nil || !strings.Contains(err.Error(), "G02") {
		t.Fatalf("replay: %v, want G02", err)
	}
	// A replay is named a replay whatever it asks for.
	iss := f.signed(f.owner, KindIssue, "imvu042", IssueParams{Identity: issue(t, f.owner, f.stranger, "imvu042", identity.RoleMember, "", f.now)})
	if _, err := f.send(iss); err != nil {
		t.Fatal(err)
	}
	if _, err := f.send(iss); err == nil || !strings.Contains(err.Error(), "G02") {
		t.Fatalf("replayed issue: %v, want G02", err)
	}
}

func TestHandshakeIsCountersigned(t *testing.T) {
	f := newFixture(t)
	res := f.mustSubmit(f.stranger, KindCreate, "imvu044", f.handshake("imvu044", f.stranger))
	rec := f.record(res.Index)
	if !identity.Verify(identity.PublicOf(f.platform), identity.ContextCountersign, rec.Action.Body, rec.Countersig) {
		t.Fatal("handshake record lacks a valid platform countersignature")
	}
	good, bad := rec.Action.Verify()
	if !good[identity.PublicOf(f.stranger)] || len(bad) != 0 {
		t.Fatalf("creator signature: good %v bad %v", good, bad)
	}
	h := f.handshake("imvu045", f.stranger)
	h.Platform = identity.PublicOf(f.stranger)
	f.mustDeny("G03", f.stranger, KindCreate, "imvu045", h)
}

func TestOnlyRootIssuesPlatformIdentities(t *testing.T) {
	f := newFixture(t)
	id := issue(t, f.platform, f.stranger, identity.ScopePlatform, identity.RoleAdmin, "", f.now)
	f.mustDeny("G03", f.platform, KindIssue, identity.ScopePlatform, IssueParams{Identity: id})
	id = issue(t, f.admin, f.stranger, identity.ScopePlatform, identity.RoleAdmin, "", f.now)
	f.mustDeny("G03", f.admin, KindIssue, identity.ScopePlatform, IssueParams{Identity: id})
	f.mustSubmit(f.root, KindIssue, identity.ScopePlatform, IssueParams{Identity: issue(t, f.root, f.stranger, identity.ScopePlatform, identity.RoleAdmin, "", f.now)})
}

func TestTheIMVUKeepsActingWhileItExits(t *testing.T) {
	f := newFixture(t)
	registerProbe(t, f.eng)
	f.mustSubmit(f.owner, KindExit, "imvu042", ExitParams{})
	f.mustSubmit(f.owner, "test.probe", "imvu042", probeParams{})
	f.mustSubmit(f.member, "test.probe", "imvu042", probeParams{})
	f.mustDeny("G17", f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", 1, f.now))
	f.mustDeny("G17", f.admin, "test.probe", "imvu042", probeParams{}, f.owner)
}

func TestHandEditedPlatformStateIsRestored(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir.Platform(), "state.json")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append([]byte(" "), orig...), 0o600); err != nil {
		t.Fatal(err)
	}
	size := f.log.Size()
	f.reopen()
	if got, _ := os.ReadFile(path); string(got) != string(orig) {
		t.Fatal("platform state not restored")
	}
	if rec := f.record(size); rec.Type != RecordDrift || rec.Scope != identity.ScopePlatform {
		t.Fatalf("entry %d = %+v, want platform drift", size, rec)
	}
	// A clean restart finds nothing.
	size = f.log.Size()
	f.reopen()
	if f.log.Size() != size {
		t.Fatalf("a clean restart appended %d entries", f.log.Size()-size)
	}
}

// BenchmarkSubmit measures accepted actions end to end: verify, gates, two
// durable ledger appends, apply and the state file write.
func BenchmarkSubmit(b *testing.B) {
	f := newFixture(b)
	registerProbe(b, f.eng)
	actions := make([]*action.Signed, b.N)
	for i := range actions {
		actions[i] = f.signed(f.owner, "test.probe", "imvu042", probeParams{})
	}
	b.ResetTimer()
	for _, s := range actions {
		if _, err := f.eng.Submit(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplay measures a restart: replaying a ledger of usage actions.
func BenchmarkReplay(b *testing.B) {
	f := newFixture(b)
	const n = 5000
	for i := 1; i <= n; i++ {
		f.mustSubmit(f.meter, KindUsage, "imvu042", f.usage("compute", "cpu_ms", uint64(i), f.now))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.reopen()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(f.log.Size()), "ns/entry")
}
