package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

func start(t testing.TB) (*daemon.Node, *api.Client) {
	t.Helper()
	root := t.TempDir()
	ctx := context.Background()
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
	return n, c
}

func create(t testing.TB, c *api.Client, id string) []byte {
	t.Helper()
	owner, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	offer, err := c.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hs := offer.Handshake(id, identity.PublicOf(owner))
	a, err := action.New(handshake.KindCreate, id, identity.PublicOf(owner), hs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := action.Seal(a, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return owner
}

func TestQueriesStayInsideTheReadersScope(t *testing.T) {
	n, c := start(t)
	ctx := context.Background()
	owner42 := create(t, c, "imvu042")
	owner43 := create(t, c, "imvu043")
	admin, err := identity.ReadKeyFile(n.Dir.AdminKey())
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := identity.Generate()

	// The owner sees everything of its IMVU.
	var full map[string]any
	if err := c.Query(ctx, owner42, api.QueryIMVU, "imvu042", nil, &full); err != nil {
		t.Fatal(err)
	}
	if _, ok := full["members"]; !ok {
		t.Fatalf("owner's view lacks members: %v", full)
	}
	// An admin sees the summary, not the IMVU's data.
	var sum map[string]any
	if err := c.Query(ctx, admin, api.QueryIMVU, "imvu042", nil, &sum); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"members", "counters", "terms", "settled"} {
		if _, ok := sum[k]; ok {
			t.Errorf("admin's view carries %q", k)
		}
	}
	refused := []struct {
		name  string
		key   []byte
		kind  string
		scope string
	}{
		{"other owner reads the IMVU", owner43, api.QueryIMVU, "imvu042"},
		{"other owner reads the statement", owner43, api.QueryStatement, "imvu042"},
		{"other owner reads the ledger", owner43, api.QueryEntries, "imvu042"},
		{"owner lists the platform", owner42, api.QueryIMVUs, identity.ScopePlatform},
		{"stranger reads", stranger, api.QueryIMVU, "imvu042"},
		{"stranger lists", stranger, api.QueryIMVUs, identity.ScopePlatform},
	}
	for _, r := range refused {
		var out json.RawMessage
		err := c.Query(ctx, r.key, r.kind, r.scope, nil, &out)
		var re *api.RemoteError
		if !errors.As(err, &re) || re.Code != http.StatusForbidden {
			t.Errorf("%s: got %v (answer %s), want HTTP 403", r.name, err, out)
		}
	}
	// Inside its own scope the ledger shows whole entries; the admin outside it
	// sees headers only.
	var own, hdr []api.Entry
	if err := c.Query(ctx, owner42, api.QueryEntries, "imvu042", api.EntriesParams{}, &own); err != nil {
		t.Fatal(err)
	}
	if err := c.Query(ctx, admin, api.QueryEntries, identity.ScopePlatform, api.EntriesParams{}, &hdr); err != nil {
		t.Fatal(err)
	}
	for _, e := range own {
		if e.Scope != "imvu042" || e.Redacted || len(e.Record) == 0 {
			t.Errorf("owner's entry %+v", e)
		}
	}
	redacted := 0
	for _, e := range hdr {
		if e.Scope != identity.ScopePlatform {
			if !e.Redacted || len(e.Record) != 0 {
				t.Errorf("admin sees IMVU entry %d whole", e.Index)
			}
			redacted++
		}
	}
	if len(own) == 0 || redacted == 0 {
		t.Fatalf("owner saw %d entries, admin %d redacted: the test saw nothing", len(own), redacted)
	}
}

func TestRequestsThatAreNotSignedAreRefused(t *testing.T) {
	n, c := start(t)
	owner := create(t, c, "imvu042")
	q, err := action.NewQuery(owner, api.QueryIMVU, "imvu042", struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	q.Sig[0] ^= 1
	body, _ := json.Marshal(q)
	srv := api.NewServer(api.ServerConfig{Engine: n.Engine, Ledger: n.Ledger, Status: n.Status})
	cases := []struct {
		name string
		path string
		body string
		code int
	}{
		{"tampered query", api.PathQuery, string(body), http.StatusUnauthorized},
		{"not JSON", api.PathActions, "{", http.StatusBadRequest},
		{"unknown field", api.PathActions, `{"body":"","sigs":[],"force":true}`, http.StatusBadRequest},
		{"trailing data", api.PathActions, `{"body":"","sigs":[]} {}`, http.StatusBadRequest},
		{"empty action", api.PathActions, `{"body":"","sigs":[]}`, http.StatusUnauthorized},
		{"oversize", api.PathActions, `{"body":"` + strings.Repeat("A", 4<<20) + `"}`, http.StatusBadRequest},
	}
	for _, tc := range cases {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body)))
		if w.Code != tc.code {
			t.Errorf("%s: HTTP %d (%s), want %d", tc.name, w.Code, bytes.TrimSpace(w.Body.Bytes()), tc.code)
		}
	}
}

// FuzzActions posts arbitrary bodies to the actions and query endpoints: the
// server must answer every one with a 4xx and never fail or panic.
func FuzzActions(f *testing.F) {
	n, c := start(f)
	owner := create(f, c, "imvu042")
	a, _ := action.New(handshake.KindExit, "imvu042", identity.PublicOf(owner), handshake.ExitParams{})
	s, _ := action.Seal(a, owner)
	good, _ := json.Marshal(s)
	q, _ := action.NewQuery(owner, api.QueryIMVU, "imvu042", struct{}{})
	goodQ, _ := json.Marshal(q)
	f.Add(good)
	f.Add(goodQ)
	f.Add([]byte(`{"body":"e30=","sigs":[{"key":"ed25519:AAAA","sig":""}]}`))
	srv := api.NewServer(api.ServerConfig{Engine: n.Engine, Ledger: n.Ledger, Status: n.Status, Exec: refuseExec{}})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{api.PathActions, api.PathQuery, api.PathExec} {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
			if w.Code >= 500 {
				t.Fatalf("%s: HTTP %d: %s", path, w.Code, w.Body.String())
			}
		}
	})
}

// refuseExec is an Execer that runs nothing.
type refuseExec struct{}

func (refuseExec) Exec(context.Context, *action.Action) (int, []byte, error) {
	return 0, nil, errors.New("no workloads in this test")
}

// countStager counts the blobs it is asked to keep, and keeps none.
type countStager struct{ n *int }

func (c countStager) Stage(_ context.Context, _ string, _ api.BlobParams, r io.Reader) error {
	*c.n++
	_, err := io.Copy(io.Discard, r)
	return err
}

// FuzzBlobs sends arbitrary Nexus-Query headers and bodies to the blob
// endpoint: every one is refused with a 4xx before anything is staged.
func FuzzBlobs(f *testing.F) {
	n, c := start(f)
	owner := create(f, c, "imvu042")
	q, _ := action.NewQuery(owner, api.QueryBlob, "imvu042", api.BlobParams{SHA256: strings.Repeat("0", 64), Size: 3})
	good, _ := json.Marshal(q)
	f.Add(base64.StdEncoding.EncodeToString(good), []byte("abc"))
	f.Add("e30=", []byte{})
	f.Add("not base64", []byte("x"))
	staged := 0
	srv := api.NewServer(api.ServerConfig{Engine: n.Engine, Ledger: n.Ledger, Status: n.Status, Blobs: countStager{&staged}})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		before := staged
		req := httptest.NewRequest(http.MethodPost, api.PathBlobs, bytes.NewReader(body))
		req.Header.Set(api.HeaderQuery, header)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d: %s", w.Code, w.Body.String())
		}
		// Only the owner's signed query, fresh and for these bytes' size,
		// reaches the stager; a fuzzed one cannot sign.
		if w.Code/100 == 2 && header != base64.StdEncoding.EncodeToString(good) {
			t.Fatalf("a put with header %q was accepted", header)
		}
		if staged != before && w.Code/100 != 2 {
			t.Fatalf("refused with %d after staging", w.Code)
		}
	})
}
