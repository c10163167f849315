package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

// nexusBin is the nexus binary TestMain builds.
var nexusBin string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "nexus-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	nexusBin = filepath.Join(tmp, "nexus")
	build := exec.Command("go", "build", "-o", nexusBin, "github.com/nexus-core/nexus/cmd/nexus")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build nexus:", err)
		return 1
	}
	return m.Run()
}

// callTimeout bounds one call to the daemon, so a hung daemon fails a test
// instead of stalling the package.
const callTimeout = 30 * time.Second

// node is one data directory and the `nexus serve` process running on it.
type node struct {
	dir    string // data dir
	keys   string // key files of owners, members and other test actors
	dd     datadir.Dir
	client *api.Client
	cal    revenue.Calendar

	admin, root ed25519.PrivateKey
	meters      map[string]ed25519.PrivateKey
	owners      map[string]ed25519.PrivateKey // IMVU id -> owner key, for the IMVUs created
	proc        *proc
}

// proc is one `nexus serve` process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tempDir makes a short temporary directory (unix socket paths are limited to
// about 100 bytes, too short for t.TempDir under long test names).
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "nx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// newNode runs `nexus init --data DIR --dev [--period P]` and starts `nexus
// serve` on it; the daemon is stopped when the test ends.
func newNode(t testing.TB, period string) *node {
	t.Helper()
	return newNodeWith(t, nodeOptions{period: period})
}

// nodeOptions shape a node beyond `init --dev`: its platform TLDs and edits
// to nexus.toml made before the daemon first starts.
type nodeOptions struct {
	period string
	tlds   []string
	edit   func(*config.Config)
}

func newNodeWith(t testing.TB, o nodeOptions) *node {
	t.Helper()
	period := o.period
	root := tempDir(t)
	n := &node{dir: filepath.Join(root, "data"), keys: filepath.Join(root, "keys"),
		meters: map[string]ed25519.PrivateKey{}, owners: map[string]ed25519.PrivateKey{}}
	if err := os.Mkdir(n.keys, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"init", "--data", n.dir, "--dev"}
	if period != "" {
		args = append(args, "--period", period)
		d, err := time.ParseDuration(period)
		if err != nil {
			t.Fatal(err)
		}
		n.cal = revenue.Calendar{Length: d}
	}
	for _, tld := range o.tlds {
		args = append(args, "--tld", tld)
	}
	if out, err := exec.Command(nexusBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("nexus %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	n.editConfig(t, func(c *config.Config) {
		c.API.Listen = "" // the suites talk over the unix socket; parallel daemons must not race for loopback ports
		if o.edit != nil {
			o.edit(c)
		}
	})
	var err error
	if n.dd, err = datadir.Open(n.dir); err != nil {
		t.Fatal(err)
	}
	n.admin = readKey(t, n.dd.AdminKey())
	n.root = readKey(t, n.dd.RootKey())
	for _, m := range []string{"compute", "dns", "mail", "net"} {
		n.meters[m] = readKey(t, n.dd.MeterKey(m))
	}
	if n.client, err = api.Dial("unix:" + n.dd.Socket()); err != nil {
		t.Fatal(err)
	}
	n.start(t)
	t.Cleanup(func() {
		if t.Failed() && n.proc != nil && n.proc.log.String() != "" {
			t.Logf("nexus serve log (%s):\n%s", n.dir, tail(n.proc.log.String(), 4000))
		}
		n.stop(t)
		n.reap(t)
	})
	return n
}

// editConfig rewrites the node's nexus.toml; it takes effect at the next start.
func (n *node) editConfig(t testing.TB, edit func(*config.Config)) {
	t.Helper()
	path := filepath.Join(n.dir, "nexus.toml")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(&cfg)
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func readKey(t testing.TB, path string) ed25519.PrivateKey {
	t.Helper()
	k, err := identity.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// start runs `nexus serve --data DIR` and waits until its socket answers
// /v1/status.
func (n *node) start(t testing.TB) {
	t.Helper()
	if n.proc != nil && !n.proc.exited() {
		t.Fatal("start: the daemon is already running")
	}
	p := &proc{done: make(chan struct{}), log: &lockedBuffer{}}
	p.cmd = exec.Command(nexusBin, "serve", "--data", n.dir, "--log-level", "warn")
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start nexus serve: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	n.proc = p
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p.exited() {
			t.Fatalf("nexus serve exited before serving: %v\n%s", p.err, p.log)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := n.client.Status(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nexus serve did not answer on %s: %v\n%s", n.dd.Socket(), err, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop shuts the daemon down cleanly (SIGINT), or kills it after 15 s.
func (n *node) stop(t testing.TB) {
	t.Helper()
	p := n.proc
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("nexus serve did not stop on SIGINT within 15s")
	}
}

// kill9 SIGKILLs the daemon and waits for it to be gone.
func (n *node) kill9(t testing.TB) {
	t.Helper()
	if err := n.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.proc.done
}

func (n *node) restart(t testing.TB) {
	t.Helper()
	n.stop(t)
	n.start(t)
}

// keyFile is where the test keeps the key file of a named test actor.
func (n *node) keyFile(name string) string { return filepath.Join(n.keys, name+".key") }

// newKey generates a key for a named test actor and writes its key file.
func (n *node) newKey(t testing.TB, name string) ed25519.PrivateKey {
	t.Helper()
	k := genKey(t)
	if err := identity.WriteKeyFile(n.keyFile(name), k); err != nil {
		t.Fatal(err)
	}
	return k
}

func genKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(k ed25519.PrivateKey) identity.PublicKey { return identity.PublicOf(k) }

// ---- the CLI ----

// cli runs the nexus binary against this node's data dir.
func (n *node) cli(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nexusBin, append([]string{"--data", n.dir}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("nexus %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// cliOK runs a CLI command that must succeed and returns its stdout.
func (n *node) cliOK(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := n.cli(t, args...)
	if code != 0 {
		t.Fatalf("nexus %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var deniedRE = regexp.MustCompile(`denied by (G\d\d): (.*) \(ledger index (\d+)\)`)

// cliAttempt runs a CLI command as a hostile attempt: exit 0 is an acceptance,
// exit 3 a denial (parsed from what the CLI prints), anything else an error.
func (n *node) cliAttempt(t testing.TB, scope string, args ...string) attempt {
	t.Helper()
	out, errOut, code := n.cli(t, args...)
	a := attempt{scope: scope}
	switch code {
	case 0:
		a.res = &handshake.Result{}
	case 3:
		m := deniedRE.FindStringSubmatch(errOut)
		if m == nil {
			t.Fatalf("nexus %s: exit 3 but no denial on stderr:\n%s", strings.Join(args, " "), errOut)
		}
		idx, _ := strconv.ParseUint(m[3], 10, 64)
		a.err = &handshake.Denial{Gate: m[1], Reason: m[2], Index: idx}
	default:
		a.err = fmt.Errorf("nexus %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return a
}

// createViaCLI makes an owner key with `nexus key new` and performs the
// handshake with `nexus imvu create`, as a creator would.
func (n *node) createViaCLI(t testing.TB, id string) ed25519.PrivateKey {
	t.Helper()
	n.cliOK(t, "key", "new", "--out", n.keyFile(id))
	n.cliOK(t, "imvu", "create", id, "--owner-key", n.keyFile(id))
	k := readKey(t, n.keyFile(id))
	n.owners[id] = k
	return k
}

// ---- actions over the API ----

// signed builds an action, lets edit change it, and seals it with actor's key
// and every cosigner's (the cosigners are named in the action first).
func signed(t testing.TB, actor ed25519.PrivateKey, kind, scope string, params any, edit func(*action.Action), cosign ...ed25519.PrivateKey) *action.Signed {
	t.Helper()
	a, err := action.New(kind, scope, pub(actor), params)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cosign {
		a.Cosigners = append(a.Cosigners, pub(c))
	}
	if edit != nil {
		edit(a)
	}
	sa, err := action.Seal(a, actor)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cosign {
		if err := sa.Sign(c); err != nil {
			t.Fatal(err)
		}
	}
	return sa
}

func (n *node) submit(t testing.TB, sa *action.Signed) (*handshake.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return n.client.Submit(ctx, sa)
}

// send signs and submits an action and returns the attempt.
func (n *node) send(t testing.TB, actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) attempt {
	t.Helper()
	return n.sendSigned(t, signed(t, actor, kind, scope, params, nil, cosign...))
}

func (n *node) sendSigned(t testing.TB, sa *action.Signed) attempt {
	t.Helper()
	a := attempt{sa: sa}
	if act, err := sa.Open(); err == nil {
		a.scope = act.Scope
	}
	a.res, a.err = n.submit(t, sa)
	return a
}

// must submits an action that has to pass.
func (n *node) must(t testing.TB, actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) *handshake.Result {
	t.Helper()
	return n.mustSigned(t, signed(t, actor, kind, scope, params, nil, cosign...))
}

func (n *node) mustSigned(t testing.TB, sa *action.Signed) *handshake.Result {
	t.Helper()
	res, err := n.submit(t, sa)
	if err != nil {
		act, _ := sa.Open()
		t.Fatalf("%s on %s: %v", act.Kind, act.Scope, err)
	}
	return res
}

func (n *node) query(t testing.TB, key ed25519.PrivateKey, kind, scope string, params, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return n.client.Query(ctx, key, kind, scope, params, out)
}

func (n *node) mustQuery(t testing.TB, key ed25519.PrivateKey, kind, scope string, params, out any) {
	t.Helper()
	if err := n.query(t, key, kind, scope, params, out); err != nil {
		t.Fatalf("query %s on %s: %v", kind, scope, err)
	}
}

func (n *node) status(t testing.TB) api.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	s, err := n.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (n *node) size(t testing.TB) uint64 { return n.status(t).Ledger.Size }

// handshakeFor builds the handshake a creator signs from the platform's offer.
func (n *node) handshakeFor(t testing.TB, id string, owner ed25519.PrivateKey) handshake.Handshake {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	offer, err := n.client.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return offer.Handshake(id, pub(owner))
}

// create performs the handshake for id over the API with a fresh owner key.
func (n *node) create(t testing.TB, id string) ed25519.PrivateKey {
	t.Helper()
	k := n.newKey(t, id)
	n.must(t, k, handshake.KindCreate, id, n.handshakeFor(t, id, k))
	n.owners[id] = k
	return k
}

// imvu reads an IMVU's full state as its owner.
func (n *node) imvu(t testing.TB, id string) handshake.IMVU {
	t.Helper()
	var m handshake.IMVU
	n.mustQuery(t, n.owners[id], api.QueryIMVU, id, nil, &m)
	return m
}

func (n *node) envelope(t testing.TB, id string) handshake.Resources { return n.imvu(t, id).Envelope }

// usage is one usage.record action's params.
func usage(id, meter, resource string, counter uint64, at time.Time) handshake.UsageParams {
	return handshake.UsageParams{Events: []revenue.Usage{{IMVU: id, Resource: resource, Meter: meter, Counter: counter, At: at.UTC()}}}
}

// issueParams builds an identity statement signed by issuer.
func issueParams(t testing.TB, issuer ed25519.PrivateKey, subject identity.PublicKey, scope string, role identity.Role, nbf, exp time.Time) handshake.IssueParams {
	t.Helper()
	id, err := identity.Issue(issuer, identity.Statement{Issuer: pub(issuer), Subject: subject, Scope: scope, Role: role,
		Name: "e2e", NotBefore: nbf.UTC(), NotAfter: exp.UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return handshake.IssueParams{Identity: id}
}

// ---- hostile cases ----

// attempt is what one hostile try did.
type attempt struct {
	sa    *action.Signed // what was submitted; nil when the CLI submitted it
	scope string         // the scope the denial is filed under
	res   *handshake.Result
	err   error
}

// hostile is one case of a suite.
type hostile struct {
	name string
	// gate is the gate that must deny the attempt; "junk" for an
	// unauthenticated request (counted in a G01 summary entry); "" for a
	// positive control, which must pass.
	gate string
	// junk is the reason the summary entry must count ("unauthenticated",
	// "malformed").
	junk string
	// watch lists the IMVUs whose state must not change; the platform's state,
	// the IMVU folders and the IMVU count are always watched.
	watch []string
	// setup runs before the state is snapshotted and may change it.
	setup func(t *testing.T)
	try   func(t *testing.T) attempt
	// check, if set, runs after the assertions (positive controls check the
	// effect here).
	check func(t *testing.T, a attempt)
}

// run runs the cases in order, each as a subtest, on one daemon.
func (n *node) run(t *testing.T, cases []hostile) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup(t)
			}
			before := n.snap(t, c.watch...)
			size := n.size(t)
			a := c.try(t)
			switch c.gate {
			case "":
				if a.err != nil {
					t.Fatalf("positive control refused: %v", a.err)
				}
			case "junk":
				n.expectJunk(t, a, size, c.junk)
			default:
				n.expectDenial(t, a, c.gate)
			}
			if c.gate != "" {
				if diff := before.diff(n.snap(t, c.watch...)); diff != "" {
					t.Errorf("state changed by a refused attempt:\n%s", diff)
				}
			}
			if c.check != nil {
				c.check(t, a)
			}
		})
	}
}

// expectDenial asserts the attempt was denied by gate and that the ledger holds
// that denial at the index the denial names.
func (n *node) expectDenial(t testing.TB, a attempt, gate string) *handshake.Denial {
	t.Helper()
	if a.err == nil {
		t.Fatalf("accepted (ledger index %d); want a denial by %s", a.res.Index, gate)
	}
	d, ok := api.IsDenied(a.err)
	if !ok {
		t.Fatalf("failed with %v; want a denial by %s", a.err, gate)
	}
	if d.Gate != gate {
		t.Fatalf("denied by %s (%s); want %s", d.Gate, d.Reason, gate)
	}
	if d.Summarised {
		n.expectSummarised(t, d)
		return d
	}
	var body []byte
	if a.sa != nil {
		body = a.sa.Body
	}
	n.checkDenialEntry(t, d, a.scope, body)
	return d
}

// expectSummarised asserts a refused handshake from a key that holds no
// identity was counted in a G01 junk summary, by its gate, instead of getting
// an entry of its own (so throwaway keys cannot fill the ledger).
func (n *node) expectSummarised(t testing.TB, d *handshake.Denial) {
	t.Helper()
	reason := handshake.KindCreate + " denied by " + d.Gate
	start := n.size(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range n.entries(t, n.admin, identity.ScopePlatform, start) {
			if e.Type != "junk" {
				continue
			}
			if r := parseRecord(t, e); r.Gate == "G01" && r.Reasons[reason] > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no junk summary counting %q after 5s", reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ledgerRecord is the part of a ledger entry's payload the suites read.
type ledgerRecord struct {
	Type    string            `json:"type"`
	Scope   string            `json:"scope"`
	Kind    string            `json:"kind"`
	Gate    string            `json:"gate"`
	Reason  string            `json:"reason"`
	Ref     uint64            `json:"ref"`
	Count   uint64            `json:"count"`
	Reasons map[string]uint64 `json:"reasons"`
	Action  *action.Signed    `json:"action"`
}

// readerOf is who may read the entries of scope in full: the IMVU's owner, or
// the admin (platform entries whole, other scopes as headers).
func (n *node) readerOf(scope string) (ed25519.PrivateKey, string) {
	if k, ok := n.owners[scope]; ok {
		return k, scope
	}
	return n.admin, identity.ScopePlatform
}

// entry reads ledger entry idx through the ledger.entries query.
func (n *node) entry(t testing.TB, key ed25519.PrivateKey, scope string, idx uint64) (api.Entry, bool) {
	t.Helper()
	var es []api.Entry
	n.mustQuery(t, key, api.QueryEntries, scope, api.EntriesParams{Start: idx, Count: 1}, &es)
	if len(es) != 1 || es[0].Index != idx {
		return api.Entry{}, false
	}
	return es[0], true
}

// entries reads every entry from start on that key may see in scope.
func (n *node) entries(t testing.TB, key ed25519.PrivateKey, scope string, start uint64) []api.Entry {
	t.Helper()
	size := n.size(t)
	var all []api.Entry
	for s := start; s < size; s += 1000 {
		var es []api.Entry
		n.mustQuery(t, key, api.QueryEntries, scope, api.EntriesParams{Start: s, Count: 1000}, &es)
		all = append(all, es...)
	}
	return all
}

func parseRecord(t testing.TB, e api.Entry) ledgerRecord {
	t.Helper()
	var r ledgerRecord
	if err := json.Unmarshal(e.Record, &r); err != nil {
		t.Fatalf("ledger entry %d: %v", e.Index, err)
	}
	return r
}

// checkDenialEntry reads the entry at the denial's index and checks that it
// records this denial: type, gate, scope, reason and the action itself.
func (n *node) checkDenialEntry(t testing.TB, d *handshake.Denial, scope string, body []byte) {
	t.Helper()
	key, readScope := n.readerOf(scope)
	e, ok := n.entry(t, key, readScope, d.Index)
	if !ok {
		t.Fatalf("ledger entry %d (the denial) is not readable in scope %s", d.Index, readScope)
	}
	if e.Type != "denial" || e.Gate != d.Gate || (scope != "" && e.Scope != scope) {
		t.Fatalf("ledger entry %d = %s/%s on %s; want denial/%s on %s", d.Index, e.Type, e.Gate, e.Scope, d.Gate, scope)
	}
	if e.Redacted {
		return // a header is all a platform reader sees of another scope
	}
	r := parseRecord(t, e)
	if r.Type != "denial" || r.Gate != d.Gate || r.Reason == "" {
		t.Fatalf("ledger record %d = %+v; want the %s denial with its reason", d.Index, r, d.Gate)
	}
	if d.Reason != "" && r.Reason != d.Reason {
		t.Errorf("ledger record %d reason %q; the daemon answered %q", d.Index, r.Reason, d.Reason)
	}
	if body != nil && (r.Action == nil || !bytes.Equal(r.Action.Body, body)) {
		t.Fatalf("ledger record %d does not hold the denied action", d.Index)
	}
}

// expectJunk asserts an unauthenticated attempt was refused without a
// per-request denial, and that a G01 junk summary counting it reaches the
// ledger (the daemon flushes the count every second).
func (n *node) expectJunk(t testing.TB, a attempt, size uint64, reason string) {
	t.Helper()
	if a.err == nil {
		t.Fatalf("accepted (ledger index %d); want it refused as junk", a.res.Index)
	}
	if d, ok := api.IsDenied(a.err); ok {
		t.Fatalf("denied by %s at ledger index %d: an unauthenticated request must not get its own entry", d.Gate, d.Index)
	}
	var re *api.RemoteError
	if !errors.As(a.err, &re) || re.Code != 401 {
		t.Fatalf("refused with %v; want HTTP 401", a.err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range n.entries(t, n.admin, identity.ScopePlatform, size) {
			// The suites run their cases one at a time, so nothing but the
			// summary may follow an unauthenticated request.
			if e.Type != "junk" {
				t.Fatalf("ledger entry %d (%s/%s on %s) follows a junk request; want only a junk summary", e.Index, e.Type, e.Gate, e.Scope)
			}
			r := parseRecord(t, e)
			if r.Gate != "G01" || r.Count == 0 {
				t.Fatalf("junk summary %d = %+v; want gate G01 and a count", e.Index, r)
			}
			if r.Reasons[reason] > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no G01 junk summary counting %q in the ledger after 5s", reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- state snapshots ----

// snapshot is the observable state a refused attempt must leave alone.
type snapshot map[string]string

// snap records the platform state file, the list of IMVU folders and the IMVU
// count, and for each id its state file and its imvu.show as seen by its owner.
func (n *node) snap(t testing.TB, ids ...string) snapshot {
	t.Helper()
	s := snapshot{}
	s["platform/state.json"] = readOr(filepath.Join(n.dd.Platform(), "state.json"))
	ents, _ := os.ReadDir(filepath.Join(n.dir, "imvu"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	s["imvu/ folders"] = strings.Join(names, " ")
	s["status.imvus"] = strconv.Itoa(n.status(t).IMVUs)
	for _, id := range ids {
		s["imvu/"+id+"/state.json"] = readOr(filepath.Join(n.dir, "imvu", id, "state.json"))
		if k, ok := n.owners[id]; ok {
			var raw json.RawMessage
			if err := n.query(t, k, api.QueryIMVU, id, nil, &raw); err != nil {
				s["imvu.show "+id] = "error: " + err.Error()
			} else {
				s["imvu.show "+id] = string(raw)
			}
		}
	}
	return s
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func (s snapshot) diff(o snapshot) string {
	var keys []string
	for k := range s {
		keys = append(keys, k)
	}
	for k := range o {
		if _, ok := s[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if s[k] != o[k] {
			fmt.Fprintf(&b, "%s:\n  before: %s\n  after:  %s\n", k, tail(s[k], 600), tail(o[k], 600))
		}
	}
	return b.String()
}
