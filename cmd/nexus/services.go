package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/bundle"
	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/netfab"
	"github.com/nexus-core/nexus/registry"
)

// serviceKinds lists the registrations of the services beyond the core, for
// offline replay; the daemon registers the same.
func serviceKinds() []func(*handshake.Engine) error {
	return []func(*handshake.Engine) error{registry.Register, func(e *handshake.Engine) error {
		// Offline there are no Maildirs to re-export: their bytes are checked
		// by the manifest's hashes.
		return mailbox.Register(e, mailbox.Files{}, mailbox.Files{})
	}, func(e *handshake.Engine) error {
		return compute.Register(e, compute.Files{}, compute.Files{})
	}, func(e *handshake.Engine) error {
		return netfab.Register(e, noFiles{}, noFiles{})
	}}
}

// serviceImportSteps lists the actions that restore the services' data from a
// bundle: the IMVU's other domains, then every zone's records.
func serviceImportSteps(b *bundle.Bundle, send func(kind string, params any) func() error, put func(prefix string) (api.BlobParams, error), putFile func(name string) (api.BlobParams, error),
	dkim func(domain, selector string) (mailbox.DKIM, error)) ([]step, error) {
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
	// The network: a prefix here, the same policy and routes. Grants need
	// the peer's signature on this platform, so they are offered again.
	if ns := netfab.StateOf(b.State); ns.Prefix != "" {
		steps = append(steps, step{"network", send(netfab.KindCreate, netfab.CreateParams{})})
		if len(ns.Egress) > 0 {
			steps = append(steps, step{"egress policy", send(netfab.KindPolicy, netfab.PolicyParams{Egress: ns.Egress})})
		}
		for _, w := range sortedRoutes(ns.Routes) {
			rt := ns.Routes[w]
			steps = append(steps, step{"route " + w, send(netfab.KindRoute, netfab.RouteParams{Workload: w, Class: rt.Class, Egress: rt.Egress})})
		}
	}
	// Workloads, with their files and snapshots, then stopped if they were.
	cs := compute.Of(b.State)
	for _, name := range cs.Names() {
		w := cs.Workloads[name]
		steps = append(steps, step{"workload " + name, send(compute.KindRun, w.RunParams)})
		if archive := "compute/" + name + ".tar.gz"; b.Files[archive] != nil {
			var snaps []string
			for _, sn := range w.Snapshots {
				snaps = append(snaps, sn.Name)
			}
			steps = append(steps, step{"files of " + name, func() error {
				p, err := putFile(archive)
				if err != nil {
					return err
				}
				return send(compute.KindRestore, compute.RestoreParams{Name: name, Blob: p.SHA256, Bytes: uint64(p.Size), Snapshots: snaps})()
			}})
		}
		if !w.Running {
			steps = append(steps, step{"stop " + name, send(compute.KindStop, compute.NameParams{Name: name})})
		}
	}
	for domain, sel := range mail.Selectors {
		// New keys on this node under the same selector, signed anew.
		steps = append(steps, step{"dkim " + domain, func() error {
			k, err := dkim(domain, sel)
			if err != nil {
				return err
			}
			return send(mailbox.KindRotate, mailbox.RotateParams{Domain: domain, Selector: sel, Ed25519: k.Ed25519, RSA: k.RSA})()
		}})
	}
	return steps, nil
}

func firstTLD(b *bundle.Bundle) string {
	if len(b.Genesis.TLDs) == 0 {
		return ""
	}
	return b.Genesis.TLDs[0]
}

// noFiles is the exporter and importer of offline replay, which has no files.
type noFiles struct{}

func (noFiles) Export(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }
func (noFiles) Import(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }

func sortedRoutes(m map[string]netfab.Route) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
