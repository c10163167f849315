package action_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/identity"
)

type imvuShow struct {
	ID string `json:"id"`
}

func mustQuery(t testing.TB) *action.SignedQuery {
	t.Helper()
	q, err := action.NewQuery(actorKey, "imvu.show", "imvu-7", imvuShow{ID: "imvu-7"})
	if err != nil {
		t.Fatalf("NewQuery: %v", err)
	}
	return q
}

func TestQueryRoundTrip(t *testing.T) {
	before := time.Now().UTC().Add(-time.Millisecond)
	sq := mustQuery(t)
	after := time.Now().UTC()

	wire, err := json.Marshal(sq)
	if err != nil {
		t.Fatal(err)
	}
	var got action.SignedQuery
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	q, err := got.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if q.Kind != "imvu.show" || q.Scope != "imvu-7" || q.Reader != actor {
		t.Fatalf("Open = %+v", q)
	}
	if len(q.Nonce) != 32 || strings.Trim(q.Nonce, "0123456789abcdef") != "" {
		t.Fatalf("nonce %q", q.Nonce)
	}
	if q.IssuedAt.Before(before) || q.IssuedAt.After(after) || q.IssuedAt.Nanosecond()%int(time.Millisecond) != 0 {
		t.Fatalf("issued_at %v not within [%v, %v] at millisecond precision", q.IssuedAt, before, after)
	}
	var p imvuShow
	if err := q.Decode(&p); err != nil || p.ID != "imvu-7" {
		t.Fatalf("Decode = %+v, %v", p, err)
	}
	if !identity.Verify(actor, identity.ContextQuery, sq.Body, sq.Sig) {
		t.Fatal("query signature is not an Ed25519ctx signature under ContextQuery")
	}
	// Fresh nonce each time.
	if again := mustQuery(t); bytes.Equal(again.Body, sq.Body) {
		t.Fatal("two queries have the same body")
	}
}

func TestNewQueryRejects(t *testing.T) {
	cases := []struct {
		name, kind, scope string
		params            any
		want              string
	}{
		{"bad kind", "show", "imvu-7", nil, `query kind "show"`},
		{"bad scope", "imvu.show", "Imvu", nil, `scope "Imvu"`},
		{"unencodable params", "imvu.show", "imvu-7", func() {}, "encode params"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sq, err := action.NewQuery(actorKey, tc.kind, tc.scope, tc.params)
			errContains(t, err, tc.want)
			if sq != nil {
				t.Fatal("NewQuery returned a query with an error")
			}
		})
	}
}

func TestQueryTampered(t *testing.T) {
	sq := mustQuery(t)
	// Every single-bit change to the body or signature is refused.
	for i := range sq.Body {
		if _, err := (&action.SignedQuery{Body: flip(sq.Body, i), Sig: sq.Sig}).Open(); err == nil {
			t.Fatalf("body byte %d (%q) flipped: accepted", i, sq.Body[i])
		}
	}
	for i := range sq.Sig {
		_, err := (&action.SignedQuery{Body: sq.Body, Sig: flip(sq.Sig, i)}).Open()
		errContains(t, err, "does not verify")
	}

	var q action.Query
	if err := json.Unmarshal(sq.Body, &q); err != nil {
		t.Fatal(err)
	}
	reencode := func(mod func(*action.Query)) []byte {
		c := q
		mod(&c)
		return encode(t, c)
	}
	cases := []struct {
		name string
		body []byte
		sig  []byte
		want string
	}{
		{"no signature", sq.Body, nil, "does not verify"},
		{"reader swapped", reencode(func(q *action.Query) { q.Reader = owner }), sq.Sig, "signature of " + owner.String() + " does not verify"},
		{"scope widened", reencode(func(q *action.Query) { q.Scope = "platform" }), sq.Sig, "does not verify"},
		{"kind changed", reencode(func(q *action.Query) { q.Kind = "imvu.list" }), sq.Sig, "does not verify"},
		{"re-encoded with whitespace", append(bytes.Clone(sq.Body), ' '), sq.Sig, "does not verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := (&action.SignedQuery{Body: tc.body, Sig: tc.sig}).Open()
			errContains(t, err, tc.want)
			if q != nil {
				t.Fatal("Open returned a query with an error")
			}
		})
	}
}

// signedQuery signs an arbitrary query body with the actor key, so the test shows
// a body is refused for its shape, not its signature.
func signedQuery(t *testing.T, body []byte) *action.SignedQuery {
	t.Helper()
	sig, err := identity.Sign(actorKey, identity.ContextQuery, body)
	if err != nil {
		t.Fatal(err)
	}
	return &action.SignedQuery{Body: body, Sig: sig}
}

func rawQuery() map[string]any {
	return map[string]any{
		"kind":      "imvu.show",
		"scope":     "imvu-7",
		"reader":    actor.String(),
		"params":    json.RawMessage(`{"id":"imvu-7"}`),
		"nonce":     goodNonce,
		"issued_at": issued.Format(time.RFC3339Nano),
	}
}

func TestQueryOpenRejects(t *testing.T) {
	good := encode(t, rawQuery())
	if _, err := signedQuery(t, good).Open(); err != nil {
		t.Fatalf("control query does not open: %v", err)
	}
	with := func(k string, v any) []byte {
		m := rawQuery()
		m[k] = v
		return encode(t, m)
	}
	without := func(k string) []byte {
		m := rawQuery()
		delete(m, k)
		return encode(t, m)
	}
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "query body: 0 bytes"},
		{"oversize", append(bytes.Clone(good), bytes.Repeat([]byte(" "), action.MaxBody)...), fmt.Sprintf("want 1..%d", action.MaxBody)},
		{"not JSON", []byte("imvu.show"), "query body:"},
		{"unknown field", with("admin", true), `unknown field "admin"`},
		{"action field actor", with("actor", actor.String()), `unknown field "actor"`},
		{"trailing object", append(bytes.Clone(good), "{}"...), "trailing data"},
		{"trailing brace", append(bytes.Clone(good), '}'), "trailing data"},
		{"kind bad", with("kind", "IMVU.show"), `query kind "IMVU.show"`},
		{"kind missing", without("kind"), `query kind ""`},
		{"scope bad", with("scope", "imvu_7"), `scope "imvu_7"`},
		{"reader missing", without("reader"), "reader key is empty"},
		{"reader not a key", with("reader", "bob"), `want prefix "ed25519:"`},
		{"nonce bad", with("nonce", "xyz"), `query nonce "xyz"`},
		{"params missing", without("params"), "params are not valid JSON"},
		{"issued_at zone +24:00", with("issued_at", "2030-01-01T00:00:00+24:00"), "query issued_at:"},
		{"issued_at not RFC 3339", with("issued_at", "now"), "query body:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signedQuery(t, tc.body).Open()
			errContains(t, err, tc.want)
		})
	}
}

// Actions and queries are signed under different contexts: a signature made for
// one is never valid as the other, even over the very same bytes.
func TestDomainSeparation(t *testing.T) {
	// A query signature, checked as an action signature over the same body.
	sq := mustQuery(t)
	if identity.Verify(actor, identity.ContextAction, sq.Body, sq.Sig) {
		t.Fatal("query signature verifies under ContextAction")
	}
	s := &action.Signed{Body: sq.Body, Sigs: []action.Sig{{Key: actor, Sig: sq.Sig}}}
	if good, bad := s.Verify(); good[actor] || len(bad) == 0 {
		t.Fatalf("query as action: good %v bad %v", good, bad)
	}

	// The actor's query-context signature over a real action body: the body opens,
	// so the refusal is the context's doing.
	sealed := mustSeal(t, fixed(), actorKey)
	qsig, err := identity.Sign(actorKey, identity.ContextQuery, sealed.Body)
	if err != nil {
		t.Fatal(err)
	}
	forged := &action.Signed{Body: sealed.Body, Sigs: []action.Sig{{Key: actor, Sig: qsig}}}
	if _, err := forged.Open(); err != nil {
		t.Fatalf("test setup: action body does not open: %v", err)
	}
	good, bad := forged.Verify()
	if good[actor] || !errsContain(bad, actor.String()+" does not verify") {
		t.Fatalf("query-context signature accepted on an action: good %v bad %v", good, bad)
	}

	// And the other way: an action signature on an action body presented as a query.
	if _, err := (&action.SignedQuery{Body: sealed.Body, Sig: sealed.Sigs[0].Sig}).Open(); err == nil {
		t.Fatal("sealed action opened as a query")
	}
	// The reader's action-context signature over a real query body: the body is a
	// well-formed query, so only the context can refuse it.
	asig, err := identity.Sign(actorKey, identity.ContextAction, sq.Body)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&action.SignedQuery{Body: sq.Body, Sig: asig}).Open()
	errContains(t, err, "signature of "+actor.String()+" does not verify")
	// The identity context is not accepted either.
	isig, err := identity.Sign(actorKey, identity.ContextIdentity, sq.Body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&action.SignedQuery{Body: sq.Body, Sig: isig}).Open(); err == nil {
		t.Fatal("identity-context signature accepted on a query")
	}
}

func ExampleNewQuery() {
	reader, _ := identity.Generate()
	sq, err := action.NewQuery(reader, "imvu.show", "imvu-7", map[string]string{"id": "imvu-7"})
	fmt.Println("signed:", err == nil)

	q, err := sq.Open() // checks shape and the reader's signature
	fmt.Println("opened:", err == nil, q.Kind, q.Scope, q.Reader == identity.PublicOf(reader))

	sq.Body = append(sq.Body, ' ') // any change to the signed bytes is refused
	_, err = sq.Open()
	fmt.Println("tampered opens:", err == nil)
	// Output:
	// signed: true
	// opened: true imvu.show imvu-7 true
	// tampered opens: false
}
