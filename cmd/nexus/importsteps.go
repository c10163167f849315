package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/archive"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
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
	put := func(prefix string) (api.BlobParams, error) { return stageFiles(ctxOf(cmd), c, owner, b, prefix) }
	putFile := func(name string) (api.BlobParams, error) { return stageFile(ctxOf(cmd), c, owner, b, name) }
	dkim := func(domain, selector string) (mailbox.DKIM, error) {
		var k mailbox.DKIM
		err := c.Query(ctxOf(cmd), owner, mailbox.QueryKeys, id, mailbox.KeysParams{Domain: domain, Selector: selector}, &k)
		return k, err
	}
	more, err := serviceImportSteps(b, send, put, putFile, dkim)
	if err != nil {
		return nil, err
	}
	if offer.MailAddress != "" {
		// The mail exchanger is this platform's: the owner signs it anew.
		more = append(more, step{"mail exchanger", send(mailbox.KindMX, mailbox.MXParams{Address: offer.MailAddress})})
	}
	return append(steps, more...), nil
}

// stageFiles packs the bundle's files under prefix (a folder of the bundle)
// into an archive and stages it on the node for the IMVU, for an action that
// names its digest.
func stageFiles(ctx context.Context, c *api.Client, owner ed25519.PrivateKey, b *bundle.Bundle, prefix string) (api.BlobParams, error) {
	tmp, err := os.MkdirTemp("", "nexus-stage-")
	if err != nil {
		return api.BlobParams{}, err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	for name, data := range b.Files {
		rel, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		dst := filepath.Join(tree, filepath.FromSlash(rel))
		if !strings.HasPrefix(dst, tree+string(filepath.Separator)) {
			return api.BlobParams{}, fmt.Errorf("bundle file %q leaves its folder", name)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return api.BlobParams{}, err
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return api.BlobParams{}, err
		}
	}
	f, err := os.Create(filepath.Join(tmp, "archive.tar.gz"))
	if err != nil {
		return api.BlobParams{}, err
	}
	defer f.Close()
	if err := archive.Write(ctx, tree, f); err != nil {
		return api.BlobParams{}, fmt.Errorf("pack %s: %w", prefix, err)
	}
	if err := f.Close(); err != nil {
		return api.BlobParams{}, err
	}
	return c.PutBlob(ctx, owner, b.Manifest.IMVU, f.Name())
}

// stageFile stages one file of the bundle as it is.
func stageFile(ctx context.Context, c *api.Client, owner ed25519.PrivateKey, b *bundle.Bundle, name string) (api.BlobParams, error) {
	f, err := os.CreateTemp("", "nexus-stage-")
	if err != nil {
		return api.BlobParams{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(b.Files[name]); err != nil {
		return api.BlobParams{}, err
	}
	if err := f.Close(); err != nil {
		return api.BlobParams{}, err
	}
	return c.PutBlob(ctx, owner, b.Manifest.IMVU, f.Name())
}

// hasFiles reports whether the bundle holds any file under prefix.
func hasFiles(b *bundle.Bundle, prefix string) bool {
	for name := range b.Files {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}
