package identity_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/identity"
)

// seededKey returns a deterministic private key, so failures are reproducible.
func seededKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

var (
	t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
)

func validStatement(issuer, subject ed25519.PrivateKey) identity.Statement {
	return identity.Statement{
		Issuer:    identity.PublicOf(issuer),
		Subject:   identity.PublicOf(subject),
		Scope:     "imvu-7",
		Role:      identity.RoleMember,
		Name:      "alice",
		NotBefore: t0,
		NotAfter:  t1,
	}
}

func mustIssue(t testing.TB, issuer ed25519.PrivateKey, st identity.Statement) identity.Identity {
	t.Helper()
	id, err := identity.Issue(issuer, st)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return id
}

// wrap builds the wire form of an identity from raw body and signature bytes.
func wrap(t testing.TB, body, sig []byte) []byte {
	t.Helper()
	b, err := json.Marshal(map[string][]byte{"body": body, "sig": sig})
	if err != nil {
		t.Fatal(err)
	}
	return b
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

func TestSignVerifyContexts(t *testing.T) {
	key := seededKey(1)
	pub := identity.PublicOf(key)
	msg := []byte("set dns for imvu-7")
	contexts := []identity.Context{
		identity.ContextIdentity, identity.ContextAction, identity.ContextQuery,
		identity.ContextProof, identity.ContextCountersign, identity.ContextBundle, identity.ContextTransfer,
	}
	seen := map[identity.Context]bool{}
	for _, c := range contexts {
		if seen[c] {
			t.Fatalf("context %q defined twice", c)
		}
		seen[c] = true
	}
	for _, signCtx := range contexts {
		sig, err := identity.Sign(key, signCtx, msg)
		if err != nil {
			t.Fatalf("Sign(%s): %v", signCtx, err)
		}
		if len(sig) != ed25519.SignatureSize {
			t.Fatalf("Sign(%s): %d-byte signature", signCtx, len(sig))
		}
		for _, verifyCtx := range contexts {
			got := identity.Verify(pub, verifyCtx, msg, sig)
			if want := signCtx == verifyCtx; got != want {
				t.Errorf("signed under %s, Verify under %s = %v, want %v", signCtx, verifyCtx, got, want)
			}
		}
		// Plain Ed25519 (RFC 8032 without context) must not accept an Ed25519ctx signature.
		if ed25519.Verify(ed25519.PublicKey(pub[:]), msg, sig) {
			t.Errorf("plain ed25519.Verify accepted a signature made under %s", signCtx)
		}
		// Nor an empty context.
		if identity.Verify(pub, "", msg, sig) {
			t.Errorf("Verify under empty context accepted a signature made under %s", signCtx)
		}
	}

	// Conversely, a plain Ed25519 signature is not valid under any Nexus context.
	plain := ed25519.Sign(key, msg)
	for _, c := range contexts {
		if identity.Verify(pub, c, msg, plain) {
			t.Errorf("Verify under %s accepted a plain ed25519 signature", c)
		}
	}

	sig, err := identity.Sign(key, identity.ContextAction, msg)
	if err != nil {
		t.Fatal(err)
	}
	other := identity.PublicOf(seededKey(2))
	cases := []struct {
		name string
		pub  identity.PublicKey
		msg  []byte
		sig  []byte
		want bool
	}{
		{"good", pub, msg, sig, true},
		{"other key", other, msg, sig, false},
		{"zero key", identity.PublicKey{}, msg, sig, false},
		{"other message", pub, []byte("set dns for imvu-8"), sig, false},
		{"empty message", pub, nil, sig, false},
		{"nil signature", pub, msg, nil, false},
		{"short signature", pub, msg, sig[:63], false},
		{"long signature", pub, msg, append(append([]byte{}, sig...), 0), false},
		{"flipped first byte", pub, msg, flip(sig, 0), false},
		{"flipped last byte", pub, msg, flip(sig, len(sig)-1), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := identity.Verify(tc.pub, identity.ContextAction, tc.msg, tc.sig); got != tc.want {
				t.Fatalf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSignContextTooLong(t *testing.T) {
	// RFC 8032 limits a context to 255 bytes; Sign must report it, not panic.
	_, err := identity.Sign(seededKey(1), identity.Context(strings.Repeat("x", 256)), []byte("m"))
	if err == nil {
		t.Fatal("Sign with a 256-byte context succeeded")
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestPublicKeyText(t *testing.T) {
	for seed := byte(0); seed < 8; seed++ {
		pub := identity.PublicOf(seededKey(seed))
		s := pub.String()
		if !strings.HasPrefix(s, "ed25519:") || len(s) != len("ed25519:")+43 {
			t.Fatalf("String() = %q, want ed25519: and 43 base64url characters", s)
		}
		if strings.ContainsAny(s, "=+/") {
			t.Fatalf("String() = %q is not unpadded base64url", s)
		}
		got, err := identity.ParsePublicKey(s)
		if err != nil || got != pub {
			t.Fatalf("ParsePublicKey(%q) = %v, %v; want %v", s, got, err, pub)
		}
		txt, err := pub.MarshalText()
		if err != nil || string(txt) != s {
			t.Fatalf("MarshalText = %q, %v; want %q", txt, err, s)
		}
		var u identity.PublicKey
		if err := u.UnmarshalText(txt); err != nil || u != pub {
			t.Fatalf("UnmarshalText = %v, %v", u, err)
		}
		// As a JSON value and as a JSON map key.
		j, err := json.Marshal(map[identity.PublicKey]identity.PublicKey{pub: pub})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"` + s + `":"` + s + `"}`; string(j) != want {
			t.Fatalf("json = %s, want %s", j, want)
		}
		var m map[identity.PublicKey]identity.PublicKey
		if err := json.Unmarshal(j, &m); err != nil || m[pub] != pub || len(m) != 1 {
			t.Fatalf("json round trip = %v, %v", m, err)
		}
	}
	if !(identity.PublicKey{}).IsZero() {
		t.Fatal("zero PublicKey is not IsZero")
	}
	if identity.PublicOf(seededKey(1)).IsZero() {
		t.Fatal("real key IsZero")
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	pub := identity.PublicOf(seededKey(3))
	good := pub.String()
	b64 := strings.TrimPrefix(good, "ed25519:")
	// A spelling that decodes to the same 32 bytes but is not canonical: the last
	// character carries 2 unused bits.
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", b64[42])
	alias := "ed25519:" + b64[:42] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last^1])
	if b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(alias, "ed25519:")); err != nil || !bytes.Equal(b, pub[:]) {
		t.Fatalf("test setup: alias %q does not decode to the key (%v)", alias, err)
	}

	cases := []struct {
		name, in, want string
	}{
		{"empty", "", `want prefix "ed25519:"`},
		{"missing prefix", b64, `want prefix "ed25519:"`},
		{"wrong prefix", "ed448:" + b64, `want prefix "ed25519:"`},
		{"upper-case prefix", "ED25519:" + b64, `want prefix "ed25519:"`},
		{"leading space", " " + good, `want prefix "ed25519:"`},
		{"prefix only", "ed25519:", "want 32 bytes of unpadded base64url"},
		{"bad base64", "ed25519:" + b64[:40] + "!!!", "want 32 bytes of unpadded base64url"},
		{"std alphabet", "ed25519:" + strings.Repeat("+", 43), "want 32 bytes of unpadded base64url"},
		{"padded", good + "=", "want 32 bytes of unpadded base64url"},
		{"too short", "ed25519:" + b64[:42], "want 32 bytes of unpadded base64url"},
		{"31 bytes", "ed25519:" + base64.RawURLEncoding.EncodeToString(make([]byte, 31)), "want 32 bytes of unpadded base64url"},
		{"33 bytes", "ed25519:" + base64.RawURLEncoding.EncodeToString(make([]byte, 33)), "want 32 bytes of unpadded base64url"},
		{"64 bytes", "ed25519:" + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), "want 32 bytes of unpadded base64url"},
		{"trailing space", good + " ", "want 32 bytes of unpadded base64url"},
		{"embedded newline", "ed25519:" + b64[:20] + "\n" + b64[20:], "not in canonical form"},
		{"trailing CRLF", good + "\r\n", "not in canonical form"},
		{"non-canonical trailing bits", alias, "not in canonical form"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := identity.ParsePublicKey(tc.in)
			errContains(t, err, tc.want)
			if !got.IsZero() {
				t.Errorf("ParsePublicKey returned non-zero key %v with an error", got)
			}
			var u identity.PublicKey
			if err := u.UnmarshalText([]byte(tc.in)); err == nil {
				t.Errorf("UnmarshalText accepted %q", tc.in)
			}
		})
	}

	// A long input is abbreviated in the error, not echoed in full.
	long := strings.Repeat("x", 10000)
	_, err := identity.ParsePublicKey(long)
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error for a 10000-byte input is %d bytes: %v", len(err.Error()), err)
	}
}

func TestValidScope(t *testing.T) {
	cases := []struct {
		scope string
		ok    bool
	}{
		{"platform", true},
		{"a", true},
		{"imvu-7", true},
		{"abc123", true},
		{"a-b-c", true},
		{"a" + strings.Repeat("b", 62), true},  // 63 characters
		{"a" + strings.Repeat("b", 63), false}, // 64 characters
		{"", false},
		{"Platform", false},
		{"IMVU", false},
		{"1abc", false},
		{"-abc", false},
		{"ab_c", false},
		{"ab.c", false},
		{"ab c", false},
		{"ab/c", false},
		{"abc\n", false},
		{"\nabc", false},
		{"abc\x00", false},
		{"café", false},
		{"ａbc", false}, // full-width a
	}
	for _, tc := range cases {
		t.Run(tc.scope, func(t *testing.T) {
			err := identity.ValidScope(tc.scope)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidScope(%q) = %v, want ok=%v", tc.scope, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "scope") {
				t.Fatalf("error %q does not name the scope", err)
			}
		})
	}
	if identity.ValidScope(identity.ScopePlatform) != nil {
		t.Fatal("ScopePlatform is not a valid scope")
	}
}

func TestStatementCheck(t *testing.T) {
	issuer, subject := seededKey(1), seededKey(2)
	cases := []struct {
		name string
		mod  func(*identity.Statement)
		want string // "" means valid
	}{
		{"valid", func(*identity.Statement) {}, ""},
		{"platform scope", func(s *identity.Statement) { s.Scope = identity.ScopePlatform; s.Role = identity.RoleAdmin }, ""},
		{"no name", func(s *identity.Statement) { s.Name = "" }, ""},
		{"name 254 bytes", func(s *identity.Statement) { s.Name = strings.Repeat("n", 254) }, ""},
		{"self-issued", func(s *identity.Statement) { s.Subject = s.Issuer }, ""},
		{"one nanosecond window", func(s *identity.Statement) { s.NotAfter = s.NotBefore.Add(1) }, ""},
		{"role platform", func(s *identity.Statement) { s.Role = identity.RolePlatform }, ""},
		{"role owner", func(s *identity.Statement) { s.Role = identity.RoleOwner }, ""},
		{"role meter", func(s *identity.Statement) { s.Role = identity.RoleMeter }, ""},
		{"zero issuer", func(s *identity.Statement) { s.Issuer = identity.PublicKey{} }, "issuer key is empty"},
		{"zero subject", func(s *identity.Statement) { s.Subject = identity.PublicKey{} }, "subject key is empty"},
		{"empty role", func(s *identity.Statement) { s.Role = "" }, `unknown role ""`},
		{"unknown role", func(s *identity.Statement) { s.Role = "root" }, `unknown role "root"`},
		{"role wrong case", func(s *identity.Statement) { s.Role = "Admin" }, `unknown role "Admin"`},
		{"empty window", func(s *identity.Statement) { s.NotAfter = s.NotBefore }, "validity ends"},
		{"inverted window", func(s *identity.Statement) { s.NotBefore, s.NotAfter = s.NotAfter, s.NotBefore }, "validity ends"},
		{"zero times", func(s *identity.Statement) { s.NotBefore, s.NotAfter = time.Time{}, time.Time{} }, "validity ends"},
		{"not_after year 10000", func(s *identity.Statement) { s.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "statement: validity:"},
		{"not_before zone +24:00", func(s *identity.Statement) { s.NotBefore = s.NotBefore.In(time.FixedZone("", 24*3600)) }, "statement: validity:"},
		{"name 255 bytes", func(s *identity.Statement) { s.Name = strings.Repeat("n", 255) }, "name longer than 254 bytes"},
		{"empty scope", func(s *identity.Statement) { s.Scope = "" }, `scope ""`},
		{"bad scope", func(s *identity.Statement) { s.Scope = "IMVU_7" }, `scope "IMVU_7"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := validStatement(issuer, subject)
			tc.mod(&st)
			err := st.Check()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			errContains(t, err, tc.want)
		})
	}
}

func TestIssue(t *testing.T) {
	issuer, subject := seededKey(1), seededKey(2)
	st := validStatement(issuer, subject)

	id := mustIssue(t, issuer, st)
	if got := id.Statement(); got != st {
		t.Fatalf("Statement() = %+v, want %+v", got, st)
	}
	if !identity.Verify(st.Issuer, identity.ContextIdentity, id.Body, id.Sig) {
		t.Fatal("issued signature does not verify under ContextIdentity")
	}
	if identity.Verify(st.Issuer, identity.ContextAction, id.Body, id.Sig) {
		t.Fatal("issued signature verifies under ContextAction")
	}

	// The signing key must be the statement's issuer: not the subject, not a stranger.
	for name, k := range map[string]ed25519.PrivateKey{"subject": subject, "stranger": seededKey(9)} {
		t.Run(name, func(t *testing.T) {
			id, err := identity.Issue(k, st)
			errContains(t, err, "not the statement's issuer")
			if id.Body != nil || id.Sig != nil {
				t.Fatal("refused Issue returned a body or signature")
			}
		})
	}
	// A malformed statement is refused, naming the problem.
	bad := st
	bad.Role = "god"
	_, err := identity.Issue(issuer, bad)
	errContains(t, err, `unknown role "god"`)
}

func TestIdentityJSONRoundTrip(t *testing.T) {
	issuer, subject := seededKey(1), seededKey(2)
	st := validStatement(issuer, subject)
	st.NotBefore = time.Date(2030, 1, 1, 12, 0, 0, 123_000_000, time.FixedZone("x", 3600))
	id := mustIssue(t, issuer, st)

	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	var got identity.Identity
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !bytes.Equal(got.Body, id.Body) || !bytes.Equal(got.Sig, id.Sig) {
		t.Fatal("round trip changed body or signature bytes")
	}
	gs := got.Statement()
	if gs.Issuer != st.Issuer || gs.Subject != st.Subject || gs.Scope != st.Scope ||
		gs.Role != st.Role || gs.Name != st.Name ||
		!gs.NotBefore.Equal(st.NotBefore) || !gs.NotAfter.Equal(st.NotAfter) {
		t.Fatalf("Statement() = %+v, want %+v", gs, st)
	}

	// Embedded in a larger document, and as a slice.
	type doc struct {
		IDs []identity.Identity `json:"ids"`
	}
	b, err = json.Marshal(doc{IDs: []identity.Identity{id, id}})
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil || len(d.IDs) != 2 || d.IDs[1].Statement().Subject != st.Subject {
		t.Fatalf("embedded round trip: %v, %+v", err, d)
	}
}

func TestIdentityUnmarshalTampered(t *testing.T) {
	issuer, subject := seededKey(1), seededKey(2)
	id := mustIssue(t, issuer, validStatement(issuer, subject))

	// Every single-bit change to the body or the signature must be rejected: the
	// signature covers the exact bytes, so even a change JSON would ignore (the
	// case of a key name, say) fails.
	for i := range id.Body {
		var got identity.Identity
		if err := json.Unmarshal(wrap(t, flip(id.Body, i), id.Sig), &got); err == nil {
			t.Fatalf("body byte %d (%q) flipped: accepted", i, id.Body[i])
		}
	}
	for i := range id.Sig {
		var got identity.Identity
		err := json.Unmarshal(wrap(t, id.Body, flip(id.Sig, i)), &got)
		errContains(t, err, "issuer signature does not verify")
	}

	// A failed unmarshal leaves the destination untouched.
	keep := mustIssue(t, issuer, validStatement(issuer, seededKey(5)))
	dst := keep
	if err := json.Unmarshal(wrap(t, id.Body, flip(id.Sig, 0)), &dst); err == nil {
		t.Fatal("accepted tampered signature")
	}
	if dst.Statement() != keep.Statement() {
		t.Fatal("failed UnmarshalJSON overwrote the destination")
	}
}

func TestIdentityUnmarshalRejects(t *testing.T) {
	issuer, subject := seededKey(1), seededKey(2)
	st := validStatement(issuer, subject)
	id := mustIssue(t, issuer, st)

	// signed wraps body with the issuer's valid signature, so the test shows the
	// body itself is refused, not its signature.
	signed := func(body string) []byte {
		sig, err := identity.Sign(issuer, identity.ContextIdentity, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return wrap(t, []byte(body), sig)
	}
	good := string(id.Body)
	withField := strings.TrimSuffix(good, "}") + `,"admin":true}`
	badRole := strings.Replace(good, `"role":"member"`, `"role":"root"`, 1)
	if badRole == good {
		t.Fatalf("test setup: no role in %s", good)
	}
	wrongCtx, err := identity.Sign(issuer, identity.ContextAction, id.Body)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := identity.Sign(seededKey(9), identity.ContextIdentity, id.Body)
	if err != nil {
		t.Fatal(err)
	}
	subjSig, err := identity.Sign(subject, identity.ContextIdentity, id.Body)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"unknown field in body", signed(withField), `unknown field "admin"`},
		{"trailing object in body", signed(good + `{"scope":"platform"}`), "trailing data"},
		{"trailing brace in body", signed(good + `}`), "trailing data"},
		{"body not JSON", signed(`not json`), "identity statement"},
		{"body empty", signed(``), "identity statement"},
		{"body array", signed(`[]`), "identity statement"},
		{"malformed statement", signed(badRole), `unknown role "root"`},
		{"empty statement", signed(`{}`), "issuer key is empty"},
		{"zone +24:00 in body", signed(strings.Replace(good, `"nbf":"2030-01-01T00:00:00Z"`, `"nbf":"2030-01-01T00:00:00+24:00"`, 1)), "statement: validity:"},
		{"bad key text in body", signed(strings.Replace(good, `"iss":"ed25519:`, `"iss":"ed448:`, 1)), `want prefix "ed25519:"`},
		{"missing sig", wrap(t, id.Body, nil), "issuer signature does not verify"},
		{"signed under action context", wrap(t, id.Body, wrongCtx), "issuer signature does not verify"},
		{"signed by a stranger", wrap(t, id.Body, stranger), "issuer signature does not verify"},
		{"signed by the subject", wrap(t, id.Body, subjSig), "issuer signature does not verify"},
		{"wrapper not JSON", []byte(`{"body":`), "unexpected end of JSON input"},
		{"wrapper is a string", []byte(`"x"`), "identity"},
		{"wrapper null body", []byte(`{"body":null,"sig":null}`), "identity statement"},
		{"body not base64", []byte(`{"body":"!!!","sig":""}`), "identity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got identity.Identity
			err := json.Unmarshal(tc.in, &got)
			errContains(t, err, tc.want)
		})
	}
	// The good body with the good signature still passes through signed().
	var got identity.Identity
	if err := json.Unmarshal(signed(good), &got); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestValidAt(t *testing.T) {
	issuer, subject := seededKey(1), seededKey(2)
	id := mustIssue(t, issuer, validStatement(issuer, subject))
	cases := []struct {
		name string
		at   time.Time
		want string // "" means valid
	}{
		{"long before", t0.AddDate(-10, 0, 0), "not valid before"},
		{"just before", t0.Add(-time.Nanosecond), "not valid before"},
		{"at start", t0, ""},
		{"inside", t0.Add(24 * time.Hour), ""},
		{"inside, other zone", t0.Add(time.Hour).In(time.FixedZone("east", 5*3600)), ""},
		{"just before end", t1.Add(-time.Nanosecond), ""},
		{"at end", t1, "expired"},
		{"after", t1.Add(time.Second), "expired"},
		{"zero time", time.Time{}, "not valid before"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := id.ValidAt(tc.at)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidAt(%s) = %v", tc.at, err)
				}
				return
			}
			errContains(t, err, tc.want)
		})
	}
	// An Identity that was never issued or verified is valid at no time.
	var zero identity.Identity
	if zero.ValidAt(t0) == nil {
		t.Fatal("zero Identity is valid")
	}
}

func TestProof(t *testing.T) {
	key := seededKey(4)
	const aud = "nexus.example:api"
	challenge := []byte("0123456789abcdef")
	p, err := identity.Prove(key, aud, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if p.Key != identity.PublicOf(key) || p.Audience != aud || !bytes.Equal(p.Challenge, challenge) {
		t.Fatalf("Prove = %+v", p)
	}
	if err := identity.VerifyProof(p, aud, challenge); err != nil {
		t.Fatalf("VerifyProof: %v", err)
	}
	// The proof survives its wire form.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var wire identity.Proof
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	if err := identity.VerifyProof(wire, aud, challenge); err != nil {
		t.Fatalf("VerifyProof after JSON: %v", err)
	}

	other := identity.PublicOf(seededKey(5))
	// A proof whose fields are rewritten to match what the verifier asks still
	// fails, because the signature covers audience and challenge.
	relabel := func(a string, c []byte) identity.Proof { q := p; q.Audience, q.Challenge = a, c; return q }
	// Same message bytes under another context.
	actionSig, err := identity.Sign(key, identity.ContextAction, append([]byte(aud+"\x00"), challenge...))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		p         identity.Proof
		aud       string
		challenge []byte
		want      string
	}{
		{"wrong challenge", p, aud, []byte("fedcba9876543210"), "different challenge or audience"},
		{"empty challenge", p, aud, nil, "different challenge or audience"},
		{"wrong audience", p, "other.example:api", challenge, "different challenge or audience"},
		{"relabelled challenge", relabel(aud, []byte("fedcba9876543210")), aud, []byte("fedcba9876543210"), "does not verify"},
		{"relabelled audience", relabel("other.example:api", challenge), "other.example:api", challenge, "does not verify"},
		{"wrong key", func() identity.Proof { q := p; q.Key = other; return q }(), aud, challenge, "does not verify"},
		{"zero key", func() identity.Proof { q := p; q.Key = identity.PublicKey{}; return q }(), aud, challenge, "does not verify"},
		{"tampered sig", func() identity.Proof { q := p; q.Sig = flip(p.Sig, 10); return q }(), aud, challenge, "does not verify"},
		{"no sig", func() identity.Proof { q := p; q.Sig = nil; return q }(), aud, challenge, "does not verify"},
		{"action-context sig", func() identity.Proof { q := p; q.Sig = actionSig; return q }(), aud, challenge, "does not verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errContains(t, identity.VerifyProof(tc.p, tc.aud, tc.challenge), tc.want)
		})
	}
}

// The proof message joins audience and challenge with a NUL, so an audience with
// a NUL in it would make two different (audience, challenge) pairs sign the same
// bytes. Such audiences are refused on both sides.
func TestProofAudienceNUL(t *testing.T) {
	key := seededKey(4)
	p, err := identity.Prove(key, "a", []byte("\x00b"))
	if err != nil {
		t.Fatal(err)
	}
	shifted := p
	shifted.Audience, shifted.Challenge = "a\x00", []byte("b")
	if identity.VerifyProof(shifted, "a\x00", []byte("b")) == nil {
		t.Fatal("a proof for (\"a\", \"\\x00b\") was accepted for (\"a\\x00\", \"b\")")
	}
	if _, err := identity.Prove(key, "a\x00", []byte("b")); err == nil {
		t.Fatal("Prove accepted an audience containing NUL")
	}
	// A NUL inside the challenge is fine.
	if err := identity.VerifyProof(p, "a", []byte("\x00b")); err != nil {
		t.Fatalf("challenge with NUL: %v", err)
	}
}

func ExampleIssue() {
	root, _ := identity.Generate()
	admin, _ := identity.Generate()
	id, err := identity.Issue(root, identity.Statement{
		Issuer:    identity.PublicOf(root),
		Subject:   identity.PublicOf(admin),
		Scope:     identity.ScopePlatform,
		Role:      identity.RoleAdmin,
		NotBefore: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:  time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	fmt.Println("issued:", err == nil)

	// On the wire an identity is its body and signature; decoding verifies it.
	wire, _ := json.Marshal(id)
	var got identity.Identity
	fmt.Println("decoded:", json.Unmarshal(wire, &got) == nil)
	fmt.Println("role:", got.Statement().Role, "in", got.Statement().Scope)
	fmt.Println("valid mid-2030:", got.ValidAt(time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)) == nil)
	fmt.Println("valid in 2032:", got.ValidAt(time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)) == nil)

	// Only the issuer can sign: the admin cannot issue itself a statement from root.
	_, err = identity.Issue(admin, id.Statement())
	fmt.Println("admin may forge root's statement:", err == nil)
	// Output:
	// issued: true
	// decoded: true
	// role: admin in platform
	// valid mid-2030: true
	// valid in 2032: false
	// admin may forge root's statement: false
}
