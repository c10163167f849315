package action_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
)

func seededKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

var (
	actorKey  = seededKey(1)
	ownerKey  = seededKey(2)
	meterKey  = seededKey(3)
	stranger  = seededKey(9)
	actor     = identity.PublicOf(actorKey)
	owner     = identity.PublicOf(ownerKey)
	meter     = identity.PublicOf(meterKey)
	issued    = time.Date(2030, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	goodNonce = "0123456789abcdef0123456789abcdef"
)

type dnsSet struct {
	Name string `json:"name"`
	TTL  int    `json:"ttl"`
}

// fixed returns a deterministic, valid action.
func fixed(cosigners ...identity.PublicKey) *action.Action {
	return &action.Action{
		Kind:      "dns.set",
		Scope:     "imvu-7",
		Actor:     actor,
		Cosigners: cosigners,
		Params:    json.RawMessage(`{"name":"www","ttl":300}`),
		Nonce:     goodNonce,
		IssuedAt:  issued,
	}
}

func mustSeal(t testing.TB, a *action.Action, key ed25519.PrivateKey) *action.Signed {
	t.Helper()
	s, err := action.Seal(a, key)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return s
}

func errContains(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

// errsContain reports whether some error in errs contains want.
func errsContain(errs []error, want string) bool {
	for _, e := range errs {
		if strings.Contains(e.Error(), want) {
			return true
		}
	}
	return false
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

// equalActions compares every field; times by instant, params byte for byte.
func equalActions(a, b *action.Action) bool {
	return a.Kind == b.Kind && a.Scope == b.Scope && a.Actor == b.Actor &&
		slices.Equal(a.Cosigners, b.Cosigners) && bytes.Equal(a.Params, b.Params) &&
		a.Nonce == b.Nonce && a.IssuedAt.Equal(b.IssuedAt)
}

func TestNew(t *testing.T) {
	before := time.Now().UTC().Add(-time.Millisecond)
	a, err := action.New("dns.set", "imvu-7", actor, dnsSet{Name: "www", TTL: 300})
	after := time.Now().UTC()
	if err != nil {
		t.Fatal(err)
	}
	if a.Kind != "dns.set" || a.Scope != "imvu-7" || a.Actor != actor || len(a.Cosigners) != 0 {
		t.Fatalf("New = %+v", a)
	}
	if string(a.Params) != `{"name":"www","ttl":300}` {
		t.Fatalf("params = %s", a.Params)
	}
	if len(a.Nonce) != 32 || strings.Trim(a.Nonce, "0123456789abcdef") != "" {
		t.Fatalf("nonce %q is not 32 lowercase hex digits", a.Nonce)
	}
	if a.IssuedAt.Location() != time.UTC || a.IssuedAt.Before(before) || a.IssuedAt.After(after) {
		t.Fatalf("issued_at %v not UTC within [%v, %v]", a.IssuedAt, before, after)
	}
	if a.IssuedAt.Nanosecond()%int(time.Millisecond) != 0 {
		t.Fatalf("issued_at %v is not truncated to the millisecond", a.IssuedAt)
	}
	nonces := map[string]bool{}
	for range 100 {
		b, err := action.New("dns.set", "imvu-7", actor, nil)
		if err != nil {
			t.Fatal(err)
		}
		if nonces[b.Nonce] {
			t.Fatalf("nonce %s repeated", b.Nonce)
		}
		nonces[b.Nonce] = true
		if string(b.Params) != "null" {
			t.Fatalf("nil params encode as %s", b.Params)
		}
	}

	cases := []struct {
		name, kind, scope string
		actor             identity.PublicKey
		params            any
		want              string
	}{
		{"bad kind", "DNS", "imvu-7", actor, nil, `action kind "DNS"`},
		{"bad scope", "dns.set", "IMVU", actor, nil, `scope "IMVU"`},
		{"zero actor", "dns.set", "imvu-7", identity.PublicKey{}, nil, "actor key is empty"},
		{"unencodable params", "dns.set", "imvu-7", actor, make(chan int), "encode params"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := action.New(tc.kind, tc.scope, tc.actor, tc.params)
			errContains(t, err, tc.want)
		})
	}
}

func TestSealOpenVerify(t *testing.T) {
	a, err := action.New("dns.set", "imvu-7", actor, dnsSet{Name: "www", TTL: 300})
	if err != nil {
		t.Fatal(err)
	}
	s := mustSeal(t, a, actorKey)
	if len(s.Sigs) != 1 || s.Sigs[0].Key != actor {
		t.Fatalf("Seal signatures: %+v", s.Sigs)
	}

	// Through the wire form.
	wire, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got action.Signed
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID() != s.ID() {
		t.Fatal("ID changed over the wire")
	}
	b, err := got.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !equalActions(a, b) {
		t.Fatalf("Open = %+v, want %+v", b, a)
	}
	var p dnsSet
	if err := b.Decode(&p); err != nil || p != (dnsSet{"www", 300}) {
		t.Fatalf("Decode = %+v, %v", p, err)
	}
	good, bad := got.Verify()
	if len(bad) != 0 || len(good) != 1 || !good[actor] {
		t.Fatalf("Verify = %v, %v", good, bad)
	}
	if !identity.Verify(actor, identity.ContextAction, got.Body, got.Sigs[0].Sig) {
		t.Fatal("signature is not an Ed25519ctx signature under ContextAction")
	}

	// ID is the hex SHA-256 of the body.
	sum := sha256.Sum256(s.Body)
	if s.ID() != hex.EncodeToString(sum[:]) {
		t.Fatalf("ID = %s", s.ID())
	}
	other := mustSeal(t, fixed(), actorKey)
	if other.ID() == s.ID() {
		t.Fatal("different actions share an ID")
	}

	// Seal refuses a malformed action.
	bad2 := fixed()
	bad2.Nonce = "short"
	if _, err := action.Seal(bad2, actorKey); err == nil {
		t.Fatal("Seal accepted a malformed action")
	}
}

func TestCosign(t *testing.T) {
	a := fixed(owner, meter)
	if got := a.Signers(); !slices.Equal(got, []identity.PublicKey{actor, owner, meter}) {
		t.Fatalf("Signers = %v", got)
	}
	// Signers must not alias the action's own slice.
	sg := a.Signers()
	sg[1] = identity.PublicKey{}
	if a.Cosigners[0] != owner {
		t.Fatal("Signers aliases Cosigners")
	}

	s := mustSeal(t, a, actorKey)
	good, bad := s.Verify()
	if len(bad) != 0 || !good[actor] || good[owner] || good[meter] {
		t.Fatalf("after Seal: good %v bad %v", good, bad)
	}
	body := bytes.Clone(s.Body)
	if err := s.Sign(ownerKey); err != nil {
		t.Fatal(err)
	}
	if err := s.Sign(meterKey); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Body, body) {
		t.Fatal("cosigning changed the body")
	}
	good, bad = s.Verify()
	if len(bad) != 0 || len(good) != 3 || !good[actor] || !good[owner] || !good[meter] {
		t.Fatalf("after cosigning: good %v bad %v", good, bad)
	}
	if len(s.Sigs) != 3 || s.Sigs[1].Key != owner || s.Sigs[2].Key != meter {
		t.Fatalf("signature order: %+v", s.Sigs)
	}
	// The signing order does not matter: a cosigner may sign first.
	s2 := &action.Signed{Body: body}
	for _, k := range []ed25519.PrivateKey{meterKey, ownerKey, actorKey} {
		if err := s2.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
	if good, bad := s2.Verify(); len(bad) != 0 || len(good) != 3 {
		t.Fatalf("reverse order: good %v bad %v", good, bad)
	}
}

func TestSignReplaces(t *testing.T) {
	s := mustSeal(t, fixed(owner), actorKey)
	if err := s.Sign(ownerKey); err != nil {
		t.Fatal(err)
	}
	// Spoil the owner's signature, then sign again: the entry is replaced, not
	// duplicated, and verifies.
	s.Sigs[1].Sig = flip(s.Sigs[1].Sig, 3)
	if _, bad := s.Verify(); !errsContain(bad, owner.String()+" does not verify") {
		t.Fatalf("spoiled signature not reported: %v", bad)
	}
	if err := s.Sign(ownerKey); err != nil {
		t.Fatal(err)
	}
	if len(s.Sigs) != 2 {
		t.Fatalf("re-signing added an entry: %d signatures", len(s.Sigs))
	}
	if s.Sigs[1].Key != owner {
		t.Fatalf("re-signing moved the entry: %+v", s.Sigs)
	}
	good, bad := s.Verify()
	if len(bad) != 0 || !good[owner] || !good[actor] {
		t.Fatalf("after re-signing: good %v bad %v", good, bad)
	}
	// Signing again and again is idempotent in shape.
	for range 3 {
		if err := s.Sign(actorKey); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.Sigs) != 2 || s.Sigs[0].Key != actor {
		t.Fatalf("repeated Sign: %+v", s.Sigs)
	}
}

func TestVerifyReports(t *testing.T) {
	base := mustSeal(t, fixed(owner), actorKey)
	if err := base.Sign(ownerKey); err != nil {
		t.Fatal(err)
	}
	clone := func() *action.Signed {
		c := &action.Signed{Body: bytes.Clone(base.Body)}
		for _, sg := range base.Sigs {
			c.Sigs = append(c.Sigs, action.Sig{Key: sg.Key, Sig: bytes.Clone(sg.Sig)})
		}
		return c
	}
	// A signature by the actor over the same body, under the query context.
	querySig, err := identity.Sign(actorKey, identity.ContextQuery, base.Body)
	if err != nil {
		t.Fatal(err)
	}
	plainSig := ed25519.Sign(actorKey, base.Body)

	cases := []struct {
		name     string
		mod      func(*action.Signed)
		good     []identity.PublicKey
		wantBad  []string
		wantNBad int
	}{
		{"all good", func(*action.Signed) {}, []identity.PublicKey{actor, owner}, nil, 0},
		{"no signatures", func(s *action.Signed) { s.Sigs = nil }, nil, nil, 0},
		{"actor's sig tampered", func(s *action.Signed) { s.Sigs[0].Sig = flip(s.Sigs[0].Sig, 0) },
			[]identity.PublicKey{owner}, []string{actor.String() + " does not verify"}, 1},
		{"owner's sig truncated", func(s *action.Signed) { s.Sigs[1].Sig = s.Sigs[1].Sig[:32] },
			[]identity.PublicKey{actor}, []string{owner.String() + " does not verify"}, 1},
		{"sig swapped to other key", func(s *action.Signed) { s.Sigs[0].Sig, s.Sigs[1].Sig = s.Sigs[1].Sig, s.Sigs[0].Sig },
			nil, []string{actor.String() + " does not verify", owner.String() + " does not verify"}, 2},
		{"query-context sig", func(s *action.Signed) { s.Sigs[0].Sig = querySig },
			[]identity.PublicKey{owner}, []string{actor.String() + " does not verify"}, 1},
		{"plain ed25519 sig", func(s *action.Signed) { s.Sigs[0].Sig = plainSig },
			[]identity.PublicKey{owner}, []string{actor.String() + " does not verify"}, 1},
		{"valid sig by a non-signer", func(s *action.Signed) {
			if err := s.Sign(stranger); err != nil {
				t.Fatal(err)
			}
		}, []identity.PublicKey{actor, owner}, []string{identity.PublicOf(stranger).String() + ", which is not a signer"}, 1},
		{"valid sig by an unlisted would-be cosigner", func(s *action.Signed) {
			if err := s.Sign(meterKey); err != nil {
				t.Fatal(err)
			}
		}, []identity.PublicKey{actor, owner}, []string{meter.String() + ", which is not a signer"}, 1},
		{"body changed after signing", func(s *action.Signed) {
			s.Body = bytes.Replace(s.Body, []byte(`"ttl":300`), []byte(`"ttl":301`), 1)
		}, nil, []string{actor.String() + " does not verify", owner.String() + " does not verify"}, 2},
		{"body does not open", func(s *action.Signed) { s.Body = []byte(`{}`) }, nil, []string{"action kind"}, 1},
		{"empty body", func(s *action.Signed) { s.Body = nil }, nil, []string{"action body: 0 bytes"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := clone()
			tc.mod(s)
			good, bad := s.Verify()
			if good == nil {
				t.Fatal("Verify returned a nil map")
			}
			if len(good) != len(tc.good) {
				t.Errorf("good = %v, want %v", good, tc.good)
			}
			for _, k := range tc.good {
				if !good[k] {
					t.Errorf("good lacks %s", k)
				}
			}
			if len(bad) != tc.wantNBad {
				t.Errorf("bad = %v, want %d errors", bad, tc.wantNBad)
			}
			for _, w := range tc.wantBad {
				if !errsContain(bad, w) {
					t.Errorf("bad = %v, want one containing %q", bad, w)
				}
			}
		})
	}
}

// rawBody returns a valid action body as a map, to be edited into invalid ones.
func rawBody() map[string]any {
	return map[string]any{
		"kind":      "dns.set",
		"scope":     "imvu-7",
		"actor":     actor.String(),
		"params":    json.RawMessage(`{"name":"www","ttl":300}`),
		"nonce":     goodNonce,
		"issued_at": issued.Format(time.RFC3339Nano),
	}
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenRejects(t *testing.T) {
	good := encode(t, rawBody())
	if _, err := (&action.Signed{Body: good}).Open(); err != nil {
		t.Fatalf("control body does not open: %v", err)
	}
	with := func(k string, v any) []byte {
		m := rawBody()
		m[k] = v
		return encode(t, m)
	}
	without := func(k string) []byte {
		m := rawBody()
		delete(m, k)
		return encode(t, m)
	}
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "action body: 0 bytes"},
		{"oversize", append(bytes.Clone(good), bytes.Repeat([]byte(" "), action.MaxBody)...), fmt.Sprintf("%d bytes, want 1..%d", len(good)+action.MaxBody, action.MaxBody)},
		{"not JSON", []byte("dns.set"), "action body:"},
		{"array", []byte("[]"), "action body:"},
		{"null", []byte("null"), "action kind"},
		{"unknown field", with("admin", true), `unknown field "admin"`},
		{"unknown field sigs", with("sigs", []int{}), `unknown field "sigs"`},
		{"trailing object", append(bytes.Clone(good), "{}"...), "trailing data"},
		{"trailing garbage", append(bytes.Clone(good), " x"...), "trailing data"},
		{"trailing brace", append(bytes.Clone(good), '}'), "trailing data"},
		{"trailing bracket", append(bytes.Clone(good), ']'), "trailing data"},
		{"trailing null", append(bytes.Clone(good), " null"...), "trailing data"},
		{"kind missing", without("kind"), `action kind ""`},
		{"kind one word", with("kind", "dns"), `action kind "dns"`},
		{"kind upper case", with("kind", "DNS.set"), `action kind "DNS.set"`},
		{"kind trailing dot", with("kind", "dns."), `action kind "dns."`},
		{"kind leading dot", with("kind", ".dns.set"), `action kind ".dns.set"`},
		{"kind digit first", with("kind", "1dns.set"), `action kind "1dns.set"`},
		{"kind hyphen in first word", with("kind", "dns-x.set"), `action kind "dns-x.set"`},
		{"kind space", with("kind", "dns. set"), `action kind "dns. set"`},
		{"kind newline", with("kind", "dns.set\n"), `action kind "dns.set\n"`},
		{"kind number", with("kind", 7), "action body:"},
		{"scope missing", without("scope"), `scope ""`},
		{"scope upper", with("scope", "IMVU-7"), `scope "IMVU-7"`},
		{"scope too long", with("scope", "a"+strings.Repeat("b", 63)), "scope"},
		{"actor missing", without("actor"), "actor key is empty"},
		{"actor not a key", with("actor", "alice"), `want prefix "ed25519:"`},
		{"actor non-canonical", with("actor", actor.String()+"\n"), "not in canonical form"},
		{"nonce missing", without("nonce"), `action nonce ""`},
		{"nonce short", with("nonce", goodNonce[:31]), "want 32 lowercase hex digits"},
		{"nonce long", with("nonce", goodNonce+"0"), "want 32 lowercase hex digits"},
		{"nonce upper", with("nonce", strings.ToUpper(goodNonce)), "want 32 lowercase hex digits"},
		{"nonce not hex", with("nonce", strings.Repeat("g", 32)), "want 32 lowercase hex digits"},
		{"nonce trailing newline", with("nonce", goodNonce+"\n"), "want 32 lowercase hex digits"},
		{"issued_at missing", without("issued_at"), "issued_at is missing"},
		{"issued_at not RFC 3339", with("issued_at", "yesterday"), "action body:"},
		{"issued_at number", with("issued_at", 1700000000), "action body:"},
		{"issued_at zone +24:00", with("issued_at", "2030-01-01T00:00:00+24:00"), "action issued_at:"},
		{"params missing", without("params"), "params are not valid JSON"},
		{"cosigner twice", with("cosigners", []string{owner.String(), owner.String()}), "listed twice"},
		{"cosigner is actor", with("cosigners", []string{actor.String()}), "listed twice"},
		{"cosigner zero key", with("cosigners", []identity.PublicKey{{}}), "cosigner key is empty"},
		{"cosigner bad text", with("cosigners", []string{"ed25519:xyz"}), "want 32 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &action.Signed{Body: tc.body}
			a, err := s.Open()
			errContains(t, err, tc.want)
			if a != nil {
				t.Fatal("Open returned an action with an error")
			}
		})
	}
}

func TestOpenAccepts(t *testing.T) {
	with := func(k string, v any) []byte {
		m := rawBody()
		m[k] = v
		return encode(t, m)
	}
	good := encode(t, rawBody())
	cases := []struct {
		name string
		body []byte
	}{
		{"canonical", good},
		{"trailing whitespace", append(bytes.Clone(good), " \n\t"...)},
		{"leading whitespace", append([]byte("\n "), good...)},
		{"platform scope", with("scope", "platform")},
		{"params null", with("params", json.RawMessage("null"))},
		{"params string", with("params", "x")},
		{"params array", with("params", []int{1, 2})},
		{"three-word kind", with("kind", "imvu.member.add")},
		{"hyphen in later word", with("kind", "dns.set-ttl")},
		{"empty cosigners", with("cosigners", []string{})},
		{"issued_at with offset", with("issued_at", "2030-05-06T09:08:09.123+02:00")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := (&action.Signed{Body: tc.body}).Open(); err != nil {
				t.Fatalf("Open: %v", err)
			}
		})
	}
}

// A body of exactly MaxBody bytes opens; one byte more does not.
func TestOpenMaxBody(t *testing.T) {
	a := fixed()
	a.Params = json.RawMessage(`""`)
	base, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	pad := action.MaxBody - len(base)
	a.Params = json.RawMessage(`"` + strings.Repeat("p", pad) + `"`)
	s := mustSeal(t, a, actorKey)
	if len(s.Body) != action.MaxBody {
		t.Fatalf("test setup: body is %d bytes, want %d", len(s.Body), action.MaxBody)
	}
	if _, err := s.Open(); err != nil {
		t.Fatalf("body of MaxBody bytes: %v", err)
	}
	if good, bad := s.Verify(); len(bad) != 0 || !good[actor] {
		t.Fatalf("Verify of MaxBody body: %v", bad)
	}
	s.Body = append(s.Body, ' ')
	_, err = s.Open()
	errContains(t, err, fmt.Sprintf("%d bytes, want 1..%d", action.MaxBody+1, action.MaxBody))
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*action.Action)
		want string
	}{
		{"valid", func(*action.Action) {}, ""},
		{"valid with cosigners", func(a *action.Action) { a.Cosigners = []identity.PublicKey{owner, meter} }, ""},
		{"bad kind", func(a *action.Action) { a.Kind = "set" }, `action kind "set"`},
		{"zero actor", func(a *action.Action) { a.Actor = identity.PublicKey{} }, "actor key is empty"},
		{"bad nonce", func(a *action.Action) { a.Nonce = "" }, `action nonce ""`},
		{"zero issued_at", func(a *action.Action) { a.IssuedAt = time.Time{} }, "issued_at is missing"},
		{"issued_at year 10000", func(a *action.Action) { a.IssuedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "action issued_at:"},
		{"issued_at zone +24:00", func(a *action.Action) { a.IssuedAt = issued.In(time.FixedZone("", 24*3600)) }, "action issued_at:"},
		{"nil params", func(a *action.Action) { a.Params = nil }, "params are not valid JSON"},
		{"invalid params", func(a *action.Action) { a.Params = json.RawMessage(`{"a":`) }, "params are not valid JSON"},
		{"two params values", func(a *action.Action) { a.Params = json.RawMessage(`1 2`) }, "params are not valid JSON"},
		{"actor as cosigner", func(a *action.Action) { a.Cosigners = []identity.PublicKey{actor} }, "signer " + actor.String() + " listed twice"},
		{"cosigner twice", func(a *action.Action) { a.Cosigners = []identity.PublicKey{owner, meter, owner} }, "signer " + owner.String() + " listed twice"},
		{"zero cosigner", func(a *action.Action) { a.Cosigners = []identity.PublicKey{owner, {}} }, "cosigner key is empty"},
		{"bad scope", func(a *action.Action) { a.Scope = "" }, `scope ""`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := fixed()
			tc.mod(a)
			err := a.Check()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				return
			}
			errContains(t, err, tc.want)
			if _, err := action.Seal(a, actorKey); err == nil {
				t.Fatal("Seal accepted an action that fails Check")
			}
		})
	}
}

// A signer listed twice is refused whether it comes from Seal or from the wire,
// even when every listed signer really signed.
func TestSignerListedTwice(t *testing.T) {
	a := fixed(owner, owner)
	_, err := action.Seal(a, actorKey)
	errContains(t, err, "listed twice")

	body := encode(t, a)
	s := &action.Signed{Body: body}
	for _, k := range []ed25519.PrivateKey{actorKey, ownerKey} {
		if err := s.Sign(k); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Open()
	errContains(t, err, "listed twice")
	if good, bad := s.Verify(); len(good) != 0 || len(bad) == 0 {
		t.Fatalf("Verify of an unopenable body: good %v bad %v", good, bad)
	}
}

func TestDecodeStrict(t *testing.T) {
	cases := []struct {
		name   string
		params string
		want   string // "" means it decodes
	}{
		{"exact", `{"name":"www","ttl":300}`, ""},
		{"subset", `{"name":"www"}`, ""},
		{"whitespace", " {\"name\" : \"www\"}\n", ""},
		{"unknown field", `{"name":"www","ttl":300,"admin":true}`, `unknown field "admin"`},
		{"wrong type", `{"name":"www","ttl":"300"}`, "cannot unmarshal"},
		{"trailing value", `{"name":"www"} {"ttl":1}`, "trailing data"},
		{"trailing brace", `{"name":"www"}}`, "trailing data"},
		{"trailing bracket", `{"name":"www"}]`, "trailing data"},
		{"not an object", `[1]`, "cannot unmarshal"},
		{"truncated", `{"name":`, "unexpected EOF"},
		{"empty", ``, "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := fixed()
			a.Params = json.RawMessage(tc.params)
			var v dnsSet
			err := a.Decode(&v)
			q := &action.Query{Params: json.RawMessage(tc.params)}
			var w dnsSet
			qerr := q.Decode(&w)
			if tc.want == "" {
				if err != nil || qerr != nil {
					t.Fatalf("Decode = %v, Query.Decode = %v", err, qerr)
				}
				if v.Name != "www" || v != w {
					t.Fatalf("Decode = %+v, Query.Decode = %+v", v, w)
				}
				return
			}
			errContains(t, err, tc.want)
			errContains(t, qerr, tc.want)
		})
	}
}

func ExampleSeal() {
	actorKey, _ := identity.Generate()
	ownerKey, _ := identity.Generate()
	a, err := action.New("dns.set", "imvu-7", identity.PublicOf(actorKey), map[string]any{"name": "www", "ttl": 300})
	fmt.Println("new:", err == nil)
	a.Cosigners = []identity.PublicKey{identity.PublicOf(ownerKey)}

	s, err := action.Seal(a, actorKey)
	fmt.Println("sealed:", err == nil)
	good, bad := s.Verify()
	fmt.Println("actor signed:", good[a.Actor], "owner signed:", good[a.Cosigners[0]], "bad:", len(bad))

	_ = s.Sign(ownerKey) // the owner cosigns the same body
	good, bad = s.Verify()
	fmt.Println("actor signed:", good[a.Actor], "owner signed:", good[a.Cosigners[0]], "bad:", len(bad))

	// The receiver opens the exact bytes that were signed.
	got, err := s.Open()
	fmt.Println("opened:", err == nil, got.Kind, got.Scope, len(got.Signers()), "signers")
	// Output:
	// new: true
	// sealed: true
	// actor signed: true owner signed: false bad: 0
	// actor signed: true owner signed: true bad: 0
	// opened: true dns.set imvu-7 2 signers
}
