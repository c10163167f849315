package main

import (
	"crypto/ed25519"
	"errors"
	"slices"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// step is one action of an import.
type step struct {
	what string
	run  func() error
}

// importSteps turns a verified bundle into the actions that restore it on this
// node: each goes through the engine like any other.
func importSteps(e *env, cmd *cobra.Command, b *bundle.Bundle, owner ed25519.PrivateKey) ([]step, error) {
	if identity.PublicOf(owner) != b.Manifest.Owner {
		return nil, errors.New("the key is not the bundle's owner: only the owner restores an IMVU")
	}
	c, err := e.client()
	if err != nil {
		return nil, err
	}
	offer, err := c.Offer(ctxOf(cmd))
	if err != nil {
		return nil, err
	}
	id, st := b.Manifest.IMVU, b.State
	send := func(kind string, params any) func() error {
		return func() error {
			a, err := action.New(kind, id, identity.PublicOf(owner), params)
			if err != nil {
				return err
			}
			s, err := action.Seal(a, owner)
			if err != nil {
				return err
			}
			_, err = c.Submit(ctxOf(cmd), s)
			return err
		}
	}
	// The new platform's prices apply: the owner agrees to them by importing.
	// The envelope and the powers (those this platform offers) come along.
	h := offer.Handshake(id, b.Manifest.Owner)
	h.Envelope, h.Powers = st.Envelope, nil
	for _, p := range st.Powers {
		if slices.Contains(offer.Powers, p) {
			h.Powers = append(h.Powers, p)
		}
	}
	steps := []step{{"handshake", send(handshake.KindCreate, h)}}
	for key, mid := range st.Members {
		if _, revoked := st.Revoked[key]; revoked {
			continue
		}
		steps = append(steps, step{"member " + key.String(), send(handshake.KindIssue, handshake.IssueParams{Identity: mid})})
	}
	more, err := serviceImportSteps(b, send)
	if err != nil {
		return nil, err
	}
	return append(steps, more...), nil
}
