package mailbox_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/revenue"
)

type noExport struct{}

func (noExport) Export(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }
func (noExport) Import(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }

type env struct {
	t                          *testing.T
	e                          *handshake.Engine
	admin, o42, o43, m42, m43x ed25519.PrivateKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "platform"), 0o700)
	dir, _ := datadir.Open(root)
	gen := func() ed25519.PrivateKey { k, _ := identity.Generate(); return k }
	platform, rootKey := gen(), gen()
	s := &env{t: t, admin: gen(), o42: gen(), o43: gen(), m42: gen(), m43x: gen()}
	signer, _ := ledger.NewSigner("test/mail", platform)
	verifier, _ := ledger.NewVerifier("test/mail", platform.Public().(ed25519.PublicKey))
	lg, err := ledger.Open(ctx, dir.Ledger(), ledger.Options{Origin: "test/mail", Signer: signer, Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	if s.e, err = handshake.New(handshake.Config{Log: lg, Store: dir, Platform: platform}); err != nil {
		t.Fatal(err)
	}
	if err := mailbox.Register(s.e, noExport{}, noExport{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	adminID, _ := identity.Issue(rootKey, identity.Statement{Issuer: identity.PublicOf(rootKey), Subject: identity.PublicOf(s.admin),
		Scope: identity.ScopePlatform, Role: identity.RoleAdmin, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	g := handshake.Genesis{Platform: identity.PublicOf(platform), Root: identity.PublicOf(rootKey), Identities: []identity.Identity{adminID},
		Capacity: handshake.Resources{CPUMilli: 1 << 20, Mailboxes: 100}, Skew: handshake.Duration(5 * time.Minute), GateSet: handshake.GateSet, TLDs: []string{"world"}}
	if err := s.e.Genesis(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := s.e.Replay(ctx); err != nil {
		t.Fatal(err)
	}
	sheet := revenue.DefaultPriceSheet()
	h := sheet.Hash()
	for id, k := range map[string]ed25519.PrivateKey{"imvu042": s.o42, "imvu043": s.o43} {
		s.must(k, handshake.KindCreate, id, handshake.Handshake{IMVU: id, Owner: identity.PublicOf(k), Platform: identity.PublicOf(platform),
			Envelope: handshake.Resources{CPUMilli: 100, Mailboxes: 3}, PriceSheet: sheet, SheetHash: hex.EncodeToString(h[:]), Split: [2]int{55, 45}, GateSet: handshake.GateSet})
	}
	mid, _ := identity.Issue(s.o42, identity.Statement{Issuer: identity.PublicOf(s.o42), Subject: identity.PublicOf(s.m42), Scope: "imvu042",
		Role: identity.RoleMember, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	s.must(s.o42, handshake.KindIssue, "imvu042", handshake.IssueParams{Identity: mid})
	return s
}

func (s *env) send(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) error {
	a, err := action.New(kind, scope, identity.PublicOf(actor), params)
	if err != nil {
		return err
	}
	for _, k := range cosign {
		a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
	}
	sa, _ := action.Seal(a, actor)
	for _, k := range cosign {
		sa.Sign(k)
	}
	_, err = s.e.Submit(context.Background(), sa)
	return err
}

func (s *env) must(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) {
	s.t.Helper()
	if err := s.send(actor, kind, scope, params, cosign...); err != nil {
		s.t.Fatalf("%s on %s: %v", kind, scope, err)
	}
}

func (s *env) mail(id string) mailbox.Mail {
	var m mailbox.Mail
	s.e.View(func(st *handshake.State) error { m = mailbox.Of(st.IMVUs[id]); return nil })
	return m
}

func TestMailboxesThroughTheEngine(t *testing.T) {
	s := newEnv(t)
	salt := []byte("0123456789abcdef")
	hash := mailbox.Hash("correct horse", salt)
	s.must(s.o42, mailbox.KindAdd, "imvu042", mailbox.AddParams{Address: "creator@imvu042.world", Identity: identity.PublicOf(s.o42)})
	s.must(s.o42, mailbox.KindAdd, "imvu042", mailbox.AddParams{Address: "Team@IMVU042.world", Identity: identity.PublicOf(s.m42), Password: hash})
	s.must(s.m42, mailbox.KindPasswd, "imvu042", mailbox.PasswdParams{Address: "team@imvu042.world", Password: mailbox.Hash("new one", salt)})
	got := s.mail("imvu042")
	if strings.Join(got.Addresses(), ",") != "creator@imvu042.world,team@imvu042.world" {
		t.Fatalf("mailboxes %v", got.Addresses())
	}
	if !mailbox.Check(got.Boxes["team@imvu042.world"].Password, "new one") || mailbox.Check(got.Boxes["team@imvu042.world"].Password, "correct horse") {
		t.Fatal("password change not applied")
	}
	cases := []struct {
		name   string
		actor  ed25519.PrivateKey
		scope  string
		kind   string
		params any
		cosign []ed25519.PrivateKey
		gate   string
	}{
		{"a mailbox in another IMVU's domain", s.o42, "imvu042", mailbox.KindAdd, mailbox.AddParams{Address: "ceo@imvu043.world", Identity: identity.PublicOf(s.o42)}, nil, "G12"},
		{"a mailbox bound to another IMVU's owner", s.o42, "imvu042", mailbox.KindAdd, mailbox.AddParams{Address: "x@imvu042.world", Identity: identity.PublicOf(s.o43)}, nil, "G03"},
		{"a mailbox taken twice", s.o42, "imvu042", mailbox.KindAdd, mailbox.AddParams{Address: "creator@imvu042.world", Identity: identity.PublicOf(s.o42)}, nil, "G04"},
		{"a plaintext password", s.o42, "imvu042", mailbox.KindPasswd, mailbox.PasswdParams{Address: "creator@imvu042.world", Password: "hunter2"}, nil, "G03"},
		{"a member sets another mailbox's password", s.m42, "imvu042", mailbox.KindPasswd, mailbox.PasswdParams{Address: "creator@imvu042.world", Password: hash}, nil, "G03"},
		{"another IMVU's owner sets a password", s.o43, "imvu042", mailbox.KindPasswd, mailbox.PasswdParams{Address: "team@imvu042.world", Password: hash}, nil, "G03"},
		{"the admin sets a password alone", s.admin, "imvu042", mailbox.KindPasswd, mailbox.PasswdParams{Address: "team@imvu042.world", Password: hash}, nil, "G03"},
		{"the admin removes a mailbox", s.admin, "imvu042", mailbox.KindRemove, mailbox.RemoveParams{Address: "team@imvu042.world"}, nil, "G03"},
		{"a DKIM selector for another IMVU's domain", s.o42, "imvu042", mailbox.KindRotate, mailbox.RotateParams{Domain: "imvu043.world", Selector: "s2"}, nil, "G12"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.mail("imvu042")
			err := s.send(c.actor, c.kind, c.scope, c.params, c.cosign...)
			var d *handshake.Denial
			if !errors.As(err, &d) || d.Gate != c.gate {
				t.Fatalf("got %v, want a denial by %s", err, c.gate)
			}
			after := s.mail("imvu042")
			if strings.Join(after.Addresses(), ",") != strings.Join(before.Addresses(), ",") || after.Boxes["team@imvu042.world"] != before.Boxes["team@imvu042.world"] {
				t.Fatal("a denied action changed the mailboxes")
			}
		})
	}
	s.must(s.o42, mailbox.KindAdd, "imvu042", mailbox.AddParams{Address: "third@imvu042.world", Identity: identity.PublicOf(s.o42)})
	err := s.send(s.o42, mailbox.KindAdd, "imvu042", mailbox.AddParams{Address: "fourth@imvu042.world", Identity: identity.PublicOf(s.o42)})
	if d, ok := err.(*handshake.Denial); !ok || d.Gate != "G07" {
		t.Fatalf("a mailbox past the envelope: %v, want G07", err)
	}
	s.must(s.o42, mailbox.KindRemove, "imvu042", mailbox.RemoveParams{Address: "third@imvu042.world"})
	s.must(s.o42, mailbox.KindRotate, "imvu042", mailbox.RotateParams{Domain: "imvu042.world", Selector: "s2"})
	s.must(s.o42, mailbox.KindRemove, "imvu042", mailbox.RemoveParams{Address: "team@imvu042.world"})
	if got := s.mail("imvu042"); got.Selectors["imvu042.world"] != "s2" || len(got.Boxes) != 1 {
		t.Fatalf("after rotate and remove: %+v", got)
	}
}

func TestPasswordHashes(t *testing.T) {
	h := mailbox.Hash("pw", []byte("saltsaltsaltsalt"))
	cases := []struct {
		hash, pw string
		ok       bool
	}{
		{h, "pw", true},
		{h, "pW", false},
		{h, "", false},
		{strings.Replace(h, "argon2id", "argon2i", 1), "pw", false},
		{"plaintext", "plaintext", false},
		{"", "", false},
	}
	for _, c := range cases {
		if got := mailbox.Check(c.hash, c.pw); got != c.ok {
			t.Errorf("Check(%q, %q) = %v", c.hash, c.pw, got)
		}
	}
}

func TestSplitAddress(t *testing.T) {
	for _, bad := range []string{"", "@x.world", "a@", "a..b@x.world", ".a@x.world", "a.@x.world", "a b@x.world", strings.Repeat("a", 65) + "@x.world"} {
		if _, _, err := mailbox.SplitAddress(bad); err == nil {
			t.Errorf("SplitAddress(%q) accepted", bad)
		}
	}
	l, d, err := mailbox.SplitAddress(" Creator@IMVU042.World. ")
	if err != nil || l != "creator" || d != "imvu042.world" {
		t.Fatalf("SplitAddress = %q %q %v", l, d, err)
	}
}
