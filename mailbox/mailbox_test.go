package mailbox_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/handshake/handshaketest"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
)

type noExport struct{}

func (noExport) Export(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }
func (noExport) Import(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }

type env struct {
	*handshaketest.Env
	t                          *testing.T
	e                          *handshake.Engine
	admin, o42, o43, m42, m43x ed25519.PrivateKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	h := handshaketest.New(t, handshake.Resources{CPUMilli: 100, Mailboxes: 3},
		func(e *handshake.Engine) error { return mailbox.Register(e, noExport{}, noExport{}) })
	m43x, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return &env{Env: h, t: t, e: h.Engine, admin: h.Admin, o42: h.O42, o43: h.O43, m42: h.M42, m43x: m43x}
}

func (s *env) send(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) error {
	return s.Send(actor, kind, scope, params, cosign...)
}

func (s *env) must(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) {
	s.t.Helper()
	s.Must(actor, kind, scope, params, cosign...)
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
