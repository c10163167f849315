package action_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
)

// FuzzOpen: Open never panics on any body, and whatever it accepts survives a
// re-encode: marshalling the Action and opening that gives an equal Action.
func FuzzOpen(f *testing.F) {
	f.Add(mustSeal(f, fixed(), actorKey).Body)
	f.Add(mustSeal(f, fixed(owner, meter), actorKey).Body)
	a, err := action.New("imvu.member.add", "platform", actor, map[string]any{"k": []any{1, "<&>", nil}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mustSeal(f, a, actorKey).Body)
	f.Add([]byte(`{"kind":"dns.set","scope":"imvu-7","actor":"` + actor.String() +
		`","params": { "a" : [ 1 , 2 ] } ,"nonce":"` + goodNonce + `","issued_at":"2030-05-06T09:08:09.123456789+02:00"}`))
	f.Add(append(mustSeal(f, fixed(), actorKey).Body, '}'))
	// Odd but valid corners: extreme offsets and fractions, raw U+2028 and invalid
	// UTF-8 in params, case-folded and duplicated keys.
	head := `{"kind":"dns.set","scope":"imvu-7","actor":"` + actor.String() + `","nonce":"` + goodNonce + `",`
	for _, tail := range []string{
		`"params":{},"issued_at":"0001-01-01T00:00:00.000000001-23:59"}`,
		`"params":{},"issued_at":"9999-12-31T23:59:59.999999999+23:59"}`,
		"\"params\":\"\u2028<\xff\",\"issued_at\":\"2030-01-01T00:00:00Z\"}",
		`"PARAMS":1,"Issued_At":"2030-01-01T00:00:00Z","kind":"dns.del"}`,
		`"params":{},"issued_at":"2030-01-01T00:00:00.1234567891Z"}`,
		`"params":{},"issued_at":"2030-01-01T00:00:00+24:00"}`,
		`"params":{},"issued_at":"2030-01-01T00:00:00-99:59"}`,
	} {
		f.Add([]byte(head + tail))
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &action.Signed{Body: data}
		a, err := s.Open()
		good, bad := s.Verify() // must not panic either
		if len(good) != 0 {
			t.Fatalf("unsigned body has good signatures: %v", good)
		}
		if err != nil {
			if a != nil {
				t.Fatal("Open returned an action with an error")
			}
			if len(bad) != 1 {
				t.Fatalf("Verify of an unopenable body: %v", bad)
			}
			return
		}
		if err := a.Check(); err != nil {
			t.Fatalf("opened action fails Check: %v", err)
		}
		body, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("opened action does not re-encode: %v", err)
		}
		b, err := (&action.Signed{Body: body}).Open()
		if err != nil {
			t.Fatalf("re-encoded action does not open: %v\n%s", err, body)
		}
		// Params come back compacted (as json.Marshal writes any RawMessage);
		// every other field must be identical.
		wantParams, err := json.Marshal(a.Params)
		if err != nil {
			t.Fatal(err)
		}
		c := *a
		c.Params = wantParams
		if !equalActions(&c, b) {
			t.Fatalf("re-encode changed the action:\n%+v\n%+v", a, b)
		}
		// From there on the encoding is a fixed point.
		body2, err := json.Marshal(b)
		if err != nil || !bytes.Equal(body, body2) {
			t.Fatalf("second re-encode differs (%v):\n%s\n%s", err, body, body2)
		}
	})
}

// FuzzOpenQuery: SignedQuery.Open never panics. Each input is tried with the
// fuzzed signature and again properly signed by a fixed key, so the fuzzer also
// exercises everything past the signature check.
func FuzzOpenQuery(f *testing.F) {
	sq, err := action.NewQuery(actorKey, "imvu.show", "imvu-7", map[string]string{"id": "imvu-7"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sq.Body, sq.Sig)
	sq2, err := action.NewQuery(actorKey, "ledger.tail", "platform", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sq2.Body, sq2.Sig)
	f.Add(mustSeal(f, fixed(), actorKey).Body, []byte{})
	f.Add([]byte(`{}`), []byte{})
	f.Add(append(bytes.Clone(sq.Body), '}'), sq.Sig)
	f.Add(bytes.Replace(sq.Body, []byte(`Z"`), []byte(`+24:00"`), 1), []byte{})
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		if q, err := (&action.SignedQuery{Body: body, Sig: sig}).Open(); err == nil {
			// Only a genuine signature by the named reader gets through.
			if !identity.Verify(q.Reader, identity.ContextQuery, body, sig) {
				t.Fatal("opened a query whose signature does not verify")
			}
		} else if q != nil {
			t.Fatal("Open returned a query with an error")
		}

		sig, err := identity.Sign(actorKey, identity.ContextQuery, body)
		if err != nil {
			t.Fatal(err)
		}
		q, err := (&action.SignedQuery{Body: body, Sig: sig}).Open()
		if err != nil {
			return
		}
		if q.Reader != actor {
			t.Fatalf("signed by %s, opened with reader %s", actor, q.Reader)
		}
		if err := q.Check(); err != nil {
			t.Fatalf("opened query fails Check: %v", err)
		}
		// Re-encoded and re-signed, it opens to the same query.
		body2, err := json.Marshal(q)
		if err != nil {
			t.Fatalf("opened query does not re-encode: %v", err)
		}
		sig2, err := identity.Sign(actorKey, identity.ContextQuery, body2)
		if err != nil {
			t.Fatal(err)
		}
		q2, err := (&action.SignedQuery{Body: body2, Sig: sig2}).Open()
		if err != nil {
			t.Fatalf("re-encoded query does not open: %v\n%s", err, body2)
		}
		wantParams, err := json.Marshal(q.Params)
		if err != nil {
			t.Fatal(err)
		}
		if q2.Kind != q.Kind || q2.Scope != q.Scope || q2.Reader != q.Reader || q2.Nonce != q.Nonce ||
			!q2.IssuedAt.Equal(q.IssuedAt) || !bytes.Equal(q2.Params, wantParams) {
			t.Fatalf("re-encode changed the query:\n%+v\n%+v", q, q2)
		}
		// The body is no action: its signature is not an action signature.
		if good, _ := (&action.Signed{Body: body, Sigs: []action.Sig{{Key: actor, Sig: sig}}}).Verify(); good[actor] {
			t.Fatal("a query signature verified as an action signature")
		}
	})
}
