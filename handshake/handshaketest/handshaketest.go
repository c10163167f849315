// Package handshaketest runs a real handshake engine on a temporary ledger
// for the tests of the services that register with it: a genesis with an
// admin, two IMVUs (imvu042 and imvu043) and a member of imvu042.
package handshaketest

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
	"github.com/nexus-core/nexus/revenue"
)

// Env is an engine with its actors.
type Env struct {
	T      testing.TB
	Engine *handshake.Engine
	// Admin is a platform admin; O42 and O43 own imvu042 and imvu043; M42
	// is a member of imvu042.
	Admin, O42, O43, M42 ed25519.PrivateKey
}

// New makes the engine, registers the services, and creates the two IMVUs
// with envelope.
func New(t testing.TB, envelope handshake.Resources, register ...func(*handshake.Engine) error) *Env {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "platform"), 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := datadir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	gen := func() ed25519.PrivateKey {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	platform, rootKey := gen(), gen()
	s := &Env{T: t, Admin: gen(), O42: gen(), O43: gen(), M42: gen()}
	signer, _ := ledger.NewSigner("test/engine", platform)
	verifier, _ := ledger.NewVerifier("test/engine", platform.Public().(ed25519.PublicKey))
	lg, err := ledger.Open(ctx, dir.Ledger(), ledger.Options{Origin: "test/engine", Signer: signer, Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	if s.Engine, err = handshake.New(handshake.Config{Log: lg, Store: dir, Platform: platform}); err != nil {
		t.Fatal(err)
	}
	for _, r := range register {
		if err := r(s.Engine); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	adminID, _ := identity.Issue(rootKey, identity.Statement{Issuer: identity.PublicOf(rootKey), Subject: identity.PublicOf(s.Admin),
		Scope: identity.ScopePlatform, Role: identity.RoleAdmin, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	capacity, _ := envelope.Add(envelope)
	capacity, _ = capacity.Add(envelope)
	g := handshake.Genesis{Platform: identity.PublicOf(platform), Root: identity.PublicOf(rootKey), Identities: []identity.Identity{adminID},
		Capacity: capacity, Skew: handshake.Duration(5 * time.Minute), GateSet: handshake.GateSet, TLDs: []string{"world"}}
	if err := s.Engine.Genesis(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := s.Engine.Replay(ctx); err != nil {
		t.Fatal(err)
	}
	sheet := revenue.DefaultPriceSheet()
	h := sheet.Hash()
	for id, k := range map[string]ed25519.PrivateKey{"imvu042": s.O42, "imvu043": s.O43} {
		s.Must(k, handshake.KindCreate, id, handshake.Handshake{IMVU: id, Owner: identity.PublicOf(k), Platform: identity.PublicOf(platform),
			Envelope: envelope, PriceSheet: sheet, SheetHash: hex.EncodeToString(h[:]), Split: [2]int{55, 45}, GateSet: handshake.GateSet})
	}
	mid, _ := identity.Issue(s.O42, identity.Statement{Issuer: identity.PublicOf(s.O42), Subject: identity.PublicOf(s.M42), Scope: "imvu042",
		Role: identity.RoleMember, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	s.Must(s.O42, handshake.KindIssue, "imvu042", handshake.IssueParams{Identity: mid})
	return s
}

// Send signs an action by actor (and cosigners) and submits it.
func (s *Env) Send(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) error {
	a, err := action.New(kind, scope, identity.PublicOf(actor), params)
	if err != nil {
		return err
	}
	for _, k := range cosign {
		a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
	}
	sa, err := action.Seal(a, actor)
	if err != nil {
		return err
	}
	for _, k := range cosign {
		if err := sa.Sign(k); err != nil {
			return err
		}
	}
	_, err = s.Engine.Submit(context.Background(), sa)
	return err
}

// Must is Send that fails the test on a refusal.
func (s *Env) Must(actor ed25519.PrivateKey, kind, scope string, params any, cosign ...ed25519.PrivateKey) {
	s.T.Helper()
	if err := s.Send(actor, kind, scope, params, cosign...); err != nil {
		s.T.Fatalf("%s on %s: %v", kind, scope, err)
	}
}

// IMVU returns a copy of an IMVU's state as the engine holds it.
func (s *Env) IMVU(id string) handshake.IMVU {
	var m handshake.IMVU
	s.Engine.View(func(st *handshake.State) error {
		if p := st.IMVUs[id]; p != nil {
			m = *p
		}
		return nil
	})
	return m
}
