package main

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/registry"
)

// serviceKinds lists the registrations of the services beyond the core, for
// offline replay; the daemon registers the same.
func serviceKinds() []func(*handshake.Engine) error {
	return []func(*handshake.Engine) error{registry.Register, func(e *handshake.Engine) error {
		// Offline there are no Maildirs to re-export: their bytes are checked
		// by the manifest's hashes.
		return mailbox.Register(e, mailbox.Files{}, mailbox.Files{})
	}}
}

// serviceImportSteps lists the actions that restore the services' data from a
// bundle: the IMVU's other domains, then every zone's records.
func serviceImportSteps(b *bundle.Bundle, send func(kind string, params any) func() error, put func(prefix string) (api.BlobParams, error)) ([]step, error) {
	var steps []step
	home := b.Manifest.IMVU + "." + firstTLD(b)
	var zones []string
	for name := range b.Files {
		if z, ok := strings.CutPrefix(name, "zones/"); ok && strings.HasSuffix(z, ".zone") {
			zones = append(zones, strings.TrimSuffix(z, ".zone"))
		}
	}
	sort.Strings(zones)
	for _, z := range zones {
		if z != home {
			steps = append(steps, step{"bind " + z, send(registry.KindBind, registry.BindParams{Name: z})})
		}
		recs, err := dns.ParseZoneFile(z, bytes.NewReader(b.Files["zones/"+z+".zone"]))
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", z, err)
		}
		if len(recs) > 0 {
			steps = append(steps, step{"zone " + z, send(registry.KindImport, registry.ImportParams{Zone: z, Records: recs})})
		}
	}
	// Mailboxes, bound to the same identities, with the same password hashes,
	// then their messages: each Maildir is staged and restored by digest.
	mail := mailbox.Of(b.State)
	for _, addr := range mail.Addresses() {
		box := mail.Boxes[addr]
		steps = append(steps, step{"mailbox " + addr, send(mailbox.KindAdd, mailbox.AddParams{Address: addr, Identity: box.Identity, Password: box.Password})})
		if prefix := "mail/" + addr + "/"; hasFiles(b, prefix) {
			steps = append(steps, step{"messages of " + addr, func() error {
				p, err := put(prefix)
				if err != nil {
					return err
				}
				return send(mailbox.KindRestore, mailbox.RestoreParams{Address: addr, Blob: p.SHA256, Bytes: uint64(p.Size)})()
			}})
		}
	}
	for domain, sel := range mail.Selectors {
		steps = append(steps, step{"dkim " + domain, send(mailbox.KindRotate, mailbox.RotateParams{Domain: domain, Selector: sel})})
	}
	return steps, nil
}

func firstTLD(b *bundle.Bundle) string {
	if len(b.Genesis.TLDs) == 0 {
		return ""
	}
	return b.Genesis.TLDs[0]
}
