package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// TestForgedAndRevokedKeys: G01 Authenticity. Requests with no valid identity
// at all are junk (401, counted in a G01 summary entry); authenticated actors
// whose identity or cosignatures do not hold are denied by G01 one by one.
func TestForgedAndRevokedKeys(t *testing.T) {
	t.Parallel()
	n := newNode(t, "")
	o42 := n.createViaCLI(t, "imvu042")
	n.createViaCLI(t, "imvu043")
	stranger := genKey(t)

	grow := func(t *testing.T) handshake.EnvelopeParams {
		env := n.envelope(t, "imvu042")
		env.CPUMilli += 100
		return handshake.EnvelopeParams{Envelope: env}
	}
	// forge builds an action naming actor (and cosigners) whose signatures are
	// made by the keys in sigs, filed under the keys the action names.
	forge := func(t *testing.T, actor identity.PublicKey, cosigners []identity.PublicKey, kind, scope string, params any, sigs map[identity.PublicKey]func([]byte) []byte) *action.Signed {
		a, err := action.New(kind, scope, actor, params)
		if err != nil {
			t.Fatal(err)
		}
		a.Cosigners = cosigners
		body, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		sa := &action.Signed{Body: body}
		for _, k := range a.Signers() {
			if f := sigs[k]; f != nil {
				sa.Sigs = append(sa.Sigs, action.Sig{Key: k, Sig: f(body)})
			}
		}
		return sa
	}
	signWith := func(k []byte) func([]byte) []byte {
		return func(body []byte) []byte {
			sig, err := identity.Sign(k, identity.ContextAction, body)
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	}

	var admin2, member, revokedMember []byte
	cases := []hostile{
		{
			name: "unknown key resizes imvu042", gate: "junk", junk: "unauthenticated", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, stranger, handshake.KindResize, "imvu042", grow(t))
			},
		},
		{
			name: "admin named as actor, signed by an unknown key", gate: "junk", junk: "unauthenticated", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				sa := forge(t, pub(n.admin), []identity.PublicKey{pub(o42)}, handshake.KindResize, "imvu042", grow(t),
					map[identity.PublicKey]func([]byte) []byte{pub(n.admin): signWith(stranger), pub(o42): signWith(o42)})
				return n.sendSigned(t, sa)
			},
		},
		{
			name: "owner named as actor of its own exit, signed by an unknown key", gate: "junk", junk: "unauthenticated", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				sa := forge(t, pub(o42), nil, handshake.KindExit, "imvu042", handshake.ExitParams{},
					map[identity.PublicKey]func([]byte) []byte{pub(o42): signWith(stranger)})
				return n.sendSigned(t, sa)
			},
		},
		{
			name: "admin named as actor, only a non-signer's valid signature attached", gate: "junk", junk: "unauthenticated", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				sa := forge(t, pub(n.admin), nil, handshake.KindCapacity, identity.ScopePlatform, handshake.CapacityParams{Capacity: config.Default().Capacity}, nil)
				sa.Sigs = []action.Sig{{Key: pub(stranger), Sig: signWith(stranger)(sa.Body)}}
				return n.sendSigned(t, sa)
			},
		},
		{
			name: "undecodable action body", gate: "junk", junk: "malformed",
			try: func(t *testing.T) attempt {
				body := []byte(`{"kind":"envelope.resize","scope":"imvu042","force":true}`)
				sa := &action.Signed{Body: body, Sigs: []action.Sig{{Key: pub(n.admin), Sig: signWith(n.admin)(body)}}}
				a := attempt{sa: sa}
				a.res, a.err = n.submit(t, sa)
				return a
			},
		},
		{
			name: "admin's action with a forged owner cosignature", gate: "G01", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				sa := forge(t, pub(n.admin), []identity.PublicKey{pub(o42)}, handshake.KindResize, "imvu042", grow(t),
					map[identity.PublicKey]func([]byte) []byte{pub(n.admin): signWith(n.admin), pub(o42): signWith(stranger)})
				return n.sendSigned(t, sa)
			},
		},
		{
			name: "admin's action naming the owner as cosigner without its signature", gate: "G01", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				sa := forge(t, pub(n.admin), []identity.PublicKey{pub(o42)}, handshake.KindResize, "imvu042", grow(t),
					map[identity.PublicKey]func([]byte) []byte{pub(n.admin): signWith(n.admin)})
				return n.sendSigned(t, sa)
			},
		},
		{
			name: "admin's action cosigned by a key with no identity", gate: "G01", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindResize, "imvu042", grow(t), stranger)
			},
		},
		{
			name: "second admin issued by root.key acts (positive control)", gate: "",
			setup: func(t *testing.T) {
				admin2 = n.newKey(t, "admin2")
				n.cliOK(t, "identity", "issue", "--scope", "platform", "--role", "admin", "--subject", pub(admin2).String(),
					"--key", n.dd.RootKey())
			},
			try: func(t *testing.T) attempt {
				return n.send(t, admin2, handshake.KindResize, "imvu042", grow(t), o42)
			},
		},
		{
			name: "revoked admin acts with the owner's cosignature", gate: "G01", watch: []string{"imvu042"},
			setup: func(t *testing.T) {
				n.cliOK(t, "identity", "revoke", pub(admin2).String(), "--scope", "platform", "--key", n.dd.RootKey())
			},
			try: func(t *testing.T) attempt {
				return n.send(t, admin2, handshake.KindResize, "imvu042", grow(t), o42)
			},
			check: func(t *testing.T, _ attempt) {
				// Its reads stop too.
				var out json.RawMessage
				err := n.query(t, admin2, api.QueryIMVUs, identity.ScopePlatform, nil, &out)
				expectRemote(t, err, 401)
				if len(out) != 0 {
					t.Fatalf("a revoked admin read %s", out)
				}
			},
		},
		{
			name: "revoked admin sets capacity", gate: "G01",
			try: func(t *testing.T) attempt {
				c := config.Default().Capacity
				c.CPUMilli++
				return n.send(t, admin2, handshake.KindCapacity, identity.ScopePlatform, handshake.CapacityParams{Capacity: c})
			},
		},
		{
			name: "owner issues a member with the CLI (positive control)", gate: "",
			setup: func(t *testing.T) {
				member = n.newKey(t, "member42")
			},
			try: func(t *testing.T) attempt {
				return n.cliAttempt(t, "imvu042", "identity", "issue", "--scope", "imvu042", "--role", "member",
					"--subject", pub(member).String(), "--key", n.keyFile("imvu042"))
			},
		},
		{
			name: "revoked member acts on its IMVU", gate: "G01", watch: []string{"imvu042"},
			setup: func(t *testing.T) {
				revokedMember = member
				n.cliOK(t, "identity", "revoke", pub(revokedMember).String(), "--scope", "imvu042", "--key", n.keyFile("imvu042"))
			},
			try: func(t *testing.T) attempt {
				return n.send(t, revokedMember, handshake.KindResize, "imvu042", grow(t), o42)
			},
			check: func(t *testing.T, _ attempt) {
				var out json.RawMessage
				expectRemote(t, n.query(t, revokedMember, api.QueryIMVU, "imvu042", nil, &out), 401)
				if len(out) != 0 {
					t.Fatalf("a revoked member read %s", out)
				}
			},
		},
		{
			name: "revoked member performs a handshake for a new IMVU", gate: "G01", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, revokedMember, handshake.KindCreate, "imvu070", n.handshakeFor(t, "imvu070", revokedMember))
			},
		},
		{
			name: "admin whose identity is not valid yet sets capacity", gate: "G01",
			setup: func(t *testing.T) {
				early := genKey(t)
				admin2 = early
				now := time.Now()
				n.must(t, n.root, handshake.KindIssue, identity.ScopePlatform,
					issueParams(t, n.root, pub(early), identity.ScopePlatform, identity.RoleAdmin, now.Add(time.Hour), now.Add(48*time.Hour)))
			},
			try: func(t *testing.T) attempt {
				c := config.Default().Capacity
				c.CPUMilli++
				return n.send(t, admin2, handshake.KindCapacity, identity.ScopePlatform, handshake.CapacityParams{Capacity: c})
			},
		},
		{
			name: "admin whose identity expired resizes with the owner's cosignature", gate: "G01", watch: []string{"imvu042"},
			setup: func(t *testing.T) {
				short := genKey(t)
				admin2 = short
				now := time.Now()
				exp := now.Add(2 * time.Second)
				n.must(t, n.root, handshake.KindIssue, identity.ScopePlatform,
					issueParams(t, n.root, pub(short), identity.ScopePlatform, identity.RoleAdmin, now.Add(-time.Minute), exp))
				// It works while valid ...
				n.must(t, short, handshake.KindResize, "imvu042", grow(t), o42)
				time.Sleep(time.Until(exp) + 100*time.Millisecond) // ... and not after.
			},
			try: func(t *testing.T) attempt {
				return n.send(t, admin2, handshake.KindResize, "imvu042", grow(t), o42)
			},
		},
		{
			name: "unknown action kind", gate: "G03", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, "imvu.destroy", "imvu042", struct{}{}, o42)
			},
		},
		{
			name: "parameters with a field the kind does not have", gate: "G03", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				env := n.envelope(t, "imvu042")
				env.CPUMilli /= 2
				return n.send(t, n.admin, handshake.KindResize, "imvu042", map[string]any{"envelope": env, "force": true})
			},
		},
	}
	n.run(t, cases)
}

// expectRemote asserts err is the daemon's refusal with HTTP code.
func expectRemote(t testing.TB, err error, code int) {
	t.Helper()
	re, ok := err.(*api.RemoteError)
	if !ok || re.Code != code {
		t.Fatalf("got %v; want the daemon to refuse with HTTP %d", err, code)
	}
}
