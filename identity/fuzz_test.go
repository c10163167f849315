package identity_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/identity"
)

func FuzzParsePublicKey(f *testing.F) {
	for seed := byte(0); seed < 4; seed++ {
		f.Add(identity.PublicOf(seededKey(seed)).String())
	}
	f.Add("")
	f.Add("ed25519:")
	f.Add("ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB")
	f.Add("ed25519:AAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add(strings.Repeat("é", 100))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := identity.ParsePublicKey(s)
		var u identity.PublicKey
		uerr := u.UnmarshalText([]byte(s))
		if (err == nil) != (uerr == nil) || u != p {
			t.Fatalf("ParsePublicKey and UnmarshalText disagree on %q: %v, %v", s, err, uerr)
		}
		if err != nil {
			if !p.IsZero() {
				t.Fatalf("error %v with non-zero key", err)
			}
			if !strings.HasPrefix(err.Error(), "public key ") {
				t.Fatalf("error %q does not say what failed", err)
			}
			return
		}
		// A key has exactly one text form.
		if p.String() != s {
			t.Fatalf("ParsePublicKey(%q) succeeded, but the key's text form is %q", s, p.String())
		}
		q, err := identity.ParsePublicKey(p.String())
		if err != nil || q != p {
			t.Fatalf("re-parse of %q: %v, %v", p.String(), q, err)
		}
	})
}

// FuzzIdentityUnmarshal feeds arbitrary bytes to Identity.UnmarshalJSON twice: once
// as the whole wire form, and once as a statement body validly signed by a fixed
// issuer, so the fuzzer also reaches the statement decoder and Check.
func FuzzIdentityUnmarshal(f *testing.F) {
	issuer := seededKey(1)
	id := mustIssue(f, issuer, validStatement(issuer, seededKey(2)))
	wire, err := json.Marshal(id)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	f.Add(id.Body)
	f.Add([]byte(strings.TrimSuffix(string(id.Body), "}") + `,"x":1}`))
	f.Add(append(bytes.Clone(id.Body), '}'))
	f.Add(bytes.Replace(id.Body, []byte(`Z"`), []byte(`+24:00"`), 1))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"body":null,"sig":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(got identity.Identity, wantIssuer *identity.PublicKey) {
			st := got.Statement()
			if err := st.Check(); err != nil {
				t.Fatalf("accepted identity fails Check: %v", err)
			}
			if !identity.Verify(st.Issuer, identity.ContextIdentity, got.Body, got.Sig) {
				t.Fatal("accepted identity does not verify")
			}
			if _, err := json.Marshal(st); err != nil {
				t.Fatalf("accepted statement does not re-encode: %v", err)
			}
			if wantIssuer != nil && st.Issuer != *wantIssuer {
				t.Fatalf("signed by %s, but accepted with issuer %s", *wantIssuer, st.Issuer)
			}
			// Its wire form decodes to the same thing.
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var again identity.Identity
			if err := json.Unmarshal(b, &again); err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			as := again.Statement()
			if !bytes.Equal(again.Body, got.Body) || !bytes.Equal(again.Sig, got.Sig) ||
				as.Issuer != st.Issuer || as.Subject != st.Subject || as.Scope != st.Scope ||
				as.Role != st.Role || as.Name != st.Name ||
				!as.NotBefore.Equal(st.NotBefore) || !as.NotAfter.Equal(st.NotAfter) {
				t.Fatalf("re-decode changed the identity: %+v vs %+v", as, st)
			}
		}

		var got identity.Identity
		if err := json.Unmarshal(data, &got); err == nil {
			check(got, nil)
		}

		sig, err := identity.Sign(issuer, identity.ContextIdentity, data)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(map[string][]byte{"body": data, "sig": sig})
		if err != nil {
			t.Fatal(err)
		}
		var signed identity.Identity
		if err := json.Unmarshal(b, &signed); err == nil {
			want := identity.PublicOf(issuer)
			check(signed, &want)
		}
	})
}
