// Package registry owns the names bound to IMVUs and the zone data under them:
// the action kinds that bind and transfer domains and change DNS records, and
// the exporter and importer of that data.
//
// Bindings and zones live in the engine's derived state, so they are exactly
// what the ledger says. This package never serves DNS (package dns does) and
// never changes a binding or a record except inside an applier the engine runs.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// The kinds this package registers.
const (
	KindBind     = "domain.bind"
	KindTransfer = "domain.transfer"
	KindSet      = "dns.set"
	KindRemove   = "dns.rm"
	KindImport   = "dns.import"
)

// Resource is the resource kind of domains and zones.
const Resource = "zone"

// Zone is one domain's records as the ledger left them.
type Zone struct {
	Origin  string       `json:"origin"`
	Serial  uint32       `json:"serial"`
	Records []dns.Record `json:"records"`
}

// key is where a zone is stored among the IMVU's resources.
func key(origin string) string { return "zone:" + canonical(origin) }

func canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// BindParams binds a domain to the scope IMVU.
type BindParams struct {
	Name string `json:"name"`
}

// TransferParams moves a domain to the IMVU whose owner holds To.
type TransferParams struct {
	Name string             `json:"name"`
	To   identity.PublicKey `json:"to"`
	IMVU string             `json:"imvu"` // the receiving IMVU
	// Zone is the zone as it moves, signed by both owners: it must equal the
	// holder's zone now, and it is all the receiver's own ledger needs.
	Zone Zone `json:"zone"`
}

// SetParams replaces one RRset: every record of Name and Type.
type SetParams struct {
	Zone string   `json:"zone"`
	Name string   `json:"name"`
	Type string   `json:"type"`
	TTL  uint32   `json:"ttl"`
	Data []string `json:"data"`
}

// RemoveParams removes the records of Name, of one Type or of all types.
type RemoveParams struct {
	Zone string `json:"zone"`
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
}

// ImportParams replaces a zone's records.
type ImportParams struct {
	Zone    string       `json:"zone"`
	Records []dns.Record `json:"records"`
}

// DefaultTTL is the TTL of records set without one.
const DefaultTTL = 3600

// Register adds the registry's resource and kinds to the engine.
func Register(e *handshake.Engine) error {
	imvu := []identity.Role{identity.RoleOwner, identity.RoleMember, identity.RoleAdmin, identity.RolePlatform}
	kinds := []handshake.Kind{
		{Name: KindBind, Resource: Resource, Where: handshake.OnIMVU, Roles: []identity.Role{identity.RoleOwner}, Prepare: prepareBind, Apply: applyBind},
		{Name: KindTransfer, Resource: Resource, Where: handshake.OnIMVU, Roles: []identity.Role{identity.RoleOwner}, Prepare: prepareTransfer, Apply: applyTransfer},
		{Name: KindSet, Resource: Resource, Where: handshake.OnIMVU, Roles: imvu, Prepare: prepareSet, Apply: applySet},
		{Name: KindRemove, Resource: Resource, Where: handshake.OnIMVU, Roles: imvu, Prepare: prepareRemove, Apply: applyRemove},
		{Name: KindImport, Resource: Resource, Where: handshake.OnIMVU, Roles: imvu, Prepare: prepareImport, Apply: applyImport},
	}
	return e.RegisterService(handshake.Resource{Name: Resource, Exporter: exporter{}, Importer: importer{}}, kinds...)
}

func prepareBind(r *handshake.Request) error {
	p, err := handshake.DecodeParams[BindParams](r)
	if err != nil {
		return err
	}
	name := canonical(p.Name)
	if err := validDomain(name); err != nil {
		return err
	}
	if !underTLD(r.State, name) {
		return fmt.Errorf("%s is not under a platform TLD (%s)", name, strings.Join(r.State.Platform.Genesis.TLDs, ", "))
	}
	r.Names = append(r.Names, handshake.Name{Type: "domain", ID: name, Use: handshake.Create})
	return nil
}

func applyBind(tx *handshake.Tx) error {
	return tx.Bind(handshake.Name{Type: "domain", ID: canonical(tx.Params().(*BindParams).Name)})
}

func prepareTransfer(r *handshake.Request) error {
	p, err := handshake.DecodeParams[TransferParams](r)
	if err != nil {
		return err
	}
	name := canonical(p.Name)
	r.Names = append(r.Names, handshake.Name{Type: "imvu", ID: p.IMVU, Use: handshake.Refer})
	if r.Replay {
		return nil // it passed its gates when ledgered
	}
	if cur := loadZone(r, name); !sameZone(cur, p.Zone) {
		return fmt.Errorf("the zone in the transfer is not %s as it stands (serial %d, %d records)", name, cur.Serial, len(cur.Records))
	}
	to, ok := r.State.IMVUs[p.IMVU]
	switch {
	case !ok:
		return fmt.Errorf("no IMVU %s to transfer %s to", p.IMVU, name)
	case to.Owner != p.To:
		return fmt.Errorf("%s is not the owner of %s", p.To, p.IMVU)
	case p.IMVU == r.Action.Scope:
		return fmt.Errorf("%s already holds %s", p.IMVU, name)
	}
	if home := homeOf(r.State, r.Action.Scope); name == home {
		return fmt.Errorf("%s is the home domain of %s; it leaves only with the IMVU's exit", name, r.Action.Scope)
	}
	r.Names = append(r.Names, handshake.Name{Type: "domain", ID: name, Use: handshake.Own})
	r.Transfer = &p.To // G12: the holder signs; the Refer name above makes G05 ask for both owners
	return nil
}

func sameZone(a, b Zone) bool {
	ja, _ := json.Marshal(Zone{Origin: canonical(a.Origin), Serial: a.Serial, Records: a.Records})
	jb, _ := json.Marshal(Zone{Origin: canonical(b.Origin), Serial: b.Serial, Records: b.Records})
	return string(ja) == string(jb)
}

func applyTransfer(tx *handshake.Tx) error {
	p := tx.Params().(*TransferParams)
	name := canonical(p.Name)
	// The holder's side; absent when a receiver's bundle is derived offline.
	if _, err := tx.IMVU(); err == nil {
		if err := tx.Unbind(handshake.Name{Type: "domain", ID: name}); err != nil {
			return err
		}
		if err := tx.Store(key(name), nil); err != nil {
			return err
		}
	} else if !tx.Offline() {
		return err
	}
	return tx.Hand(p.IMVU, func(to *handshake.Tx) error {
		if err := to.Bind(handshake.Name{Type: "domain", ID: name}); err != nil {
			return err
		}
		z := p.Zone
		z.Origin = name
		z.Serial++
		return to.Store(key(name), z)
	})
}

// zoneOf finds the bound domain that holds fqdn in the scope IMVU.
func zoneFor(r *handshake.Request, zone string) (string, error) {
	z := canonical(zone)
	m := r.IMVU()
	if m == nil {
		return "", fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	if _, ok := m.Bindings["domain:"+z]; !ok {
		return "", fmt.Errorf("%s is not a domain of %s", z, m.ID)
	}
	return z, nil
}

// fqdn is the absolute lower-case name of a record name in zone.
func fqdn(name, zone string) string {
	switch name = strings.ToLower(name); {
	case name == "@" || name == "":
		return zone
	case strings.HasSuffix(name, "."):
		return strings.TrimSuffix(name, ".")
	default:
		return name + "." + zone
	}
}

func prepareSet(r *handshake.Request) error {
	p, err := handshake.DecodeParams[SetParams](r)
	if err != nil {
		return err
	}
	zone, err := zoneFor(r, p.Zone)
	if err != nil {
		r.Domains = append(r.Domains, fqdn(p.Name, canonical(p.Zone)))
		return nil // G12 names the refusal
	}
	if len(p.Data) == 0 {
		return errors.New("no record data: use dns.rm to remove records")
	}
	if p.TTL == 0 {
		p.TTL = DefaultTTL
	}
	p.Type = strings.ToUpper(p.Type)
	for _, d := range p.Data {
		if err := dns.CheckRecord(zone, dns.Record{Name: p.Name, Type: p.Type, TTL: p.TTL, Data: d}); err != nil {
			return err
		}
	}
	r.Domains = append(r.Domains, fqdn(p.Name, zone))
	before := countOf(r, zone)
	after := before - len(match(loadZone(r, zone).Records, zone, p.Name, p.Type)) + len(p.Data)
	r.Demand = demand(after - before)
	return nil
}

func applySet(tx *handshake.Tx) error {
	p := tx.Params().(*SetParams)
	return edit(tx, canonical(p.Zone), func(z *Zone) {
		z.Records = remove(z.Records, z.Origin, p.Name, p.Type)
		for _, d := range p.Data {
			z.Records = append(z.Records, dns.Record{Name: relative(p.Name, z.Origin), Type: p.Type, TTL: p.TTL, Data: d})
		}
	})
}

func prepareRemove(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RemoveParams](r)
	if err != nil {
		return err
	}
	zone, err := zoneFor(r, p.Zone)
	if err != nil {
		r.Domains = append(r.Domains, fqdn(p.Name, canonical(p.Zone)))
		return nil
	}
	p.Type = strings.ToUpper(p.Type)
	if len(match(loadZone(r, zone).Records, zone, p.Name, p.Type)) == 0 {
		return fmt.Errorf("no %s records at %s", orAll(p.Type), fqdn(p.Name, zone))
	}
	r.Domains = append(r.Domains, fqdn(p.Name, zone))
	return nil
}

func applyRemove(tx *handshake.Tx) error {
	p := tx.Params().(*RemoveParams)
	zone := canonical(p.Zone)
	return edit(tx, zone, func(z *Zone) { z.Records = remove(z.Records, zone, p.Name, p.Type) })
}

func prepareImport(r *handshake.Request) error {
	p, err := handshake.DecodeParams[ImportParams](r)
	if err != nil {
		return err
	}
	zone, err := zoneFor(r, p.Zone)
	if err != nil {
		r.Domains = append(r.Domains, canonical(p.Zone))
		return nil
	}
	for i, rec := range p.Records {
		if err := dns.CheckRecord(zone, rec); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		r.Domains = append(r.Domains, fqdn(rec.Name, zone))
	}
	r.Demand = demand(len(p.Records) - countOf(r, zone))
	return nil
}

func applyImport(tx *handshake.Tx) error {
	p := tx.Params().(*ImportParams)
	return edit(tx, canonical(p.Zone), func(z *Zone) {
		z.Records = append([]dns.Record(nil), p.Records...)
	})
}

// edit changes one zone, bumps its serial and keeps the IMVU's record count.
func edit(tx *handshake.Tx, zone string, fn func(*Zone)) error {
	z := Zone{Origin: zone}
	if _, err := tx.Load(key(zone), &z); err != nil {
		return err
	}
	before := len(z.Records)
	fn(&z)
	z.Serial++
	sortRecords(z.Records)
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	used := int64(m.Used.DNSRecords) + int64(len(z.Records)-before)
	if used < 0 {
		used = 0
	}
	m.Used.DNSRecords = uint64(used)
	return tx.Store(key(zone), z)
}

func demand(delta int) handshake.Resources {
	if delta <= 0 {
		return handshake.Resources{}
	}
	return handshake.Resources{DNSRecords: uint64(delta)}
}

func loadZone(r *handshake.Request, zone string) Zone {
	z := Zone{Origin: zone}
	if m := r.IMVU(); m != nil {
		if raw, ok := m.Resources[key(zone)]; ok {
			_ = jsonUnmarshal(raw, &z)
		}
	}
	return z
}

func countOf(r *handshake.Request, zone string) int { return len(loadZone(r, zone).Records) }

// match lists the records of name (and typ, unless empty) in zone.
func match(recs []dns.Record, zone, name, typ string) []dns.Record {
	var out []dns.Record
	want := fqdn(name, zone)
	for _, rec := range recs {
		if fqdn(rec.Name, zone) == want && (typ == "" || strings.EqualFold(rec.Type, typ)) {
			out = append(out, rec)
		}
	}
	return out
}

func remove(recs []dns.Record, zone, name, typ string) []dns.Record {
	want := fqdn(name, zone)
	return slices.DeleteFunc(recs, func(rec dns.Record) bool {
		return fqdn(rec.Name, zone) == want && (typ == "" || strings.EqualFold(rec.Type, typ))
	})
}

// relative writes name relative to zone ("@" for the apex).
func relative(name, zone string) string {
	f := fqdn(name, zone)
	if f == zone {
		return "@"
	}
	return strings.TrimSuffix(f, "."+zone)
}

func sortRecords(recs []dns.Record) {
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Name != recs[j].Name {
			return recs[i].Name < recs[j].Name
		}
		if recs[i].Type != recs[j].Type {
			return recs[i].Type < recs[j].Type
		}
		return recs[i].Data < recs[j].Data
	})
}

func orAll(t string) string {
	if t == "" {
		return "any"
	}
	return t
}

func underTLD(s *handshake.State, name string) bool {
	for _, t := range s.Platform.Genesis.TLDs {
		if strings.HasSuffix(name, "."+canonical(t)) {
			return true
		}
	}
	return false
}

func homeOf(s *handshake.State, id string) string {
	if len(s.Platform.Genesis.TLDs) == 0 {
		return ""
	}
	return id + "." + canonical(s.Platform.Genesis.TLDs[0])
}

// validDomain checks a domain's syntax (LDH labels, at most 253 bytes).
func validDomain(name string) error {
	if len(name) == 0 || len(name) > 253 {
		return fmt.Errorf("domain %q: want 1 to 253 bytes", name)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return fmt.Errorf("domain %q: label %q is empty, longer than 63 bytes or starts or ends with '-'", name, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("domain %q: label %q has %q; want letters, digits and '-'", name, l, c)
			}
		}
	}
	return nil
}

// Zones returns the zones of an IMVU: one per bound domain, with the records
// the ledger left (none for a domain never edited).
func Zones(m *handshake.IMVU) []Zone {
	var out []Zone
	for b, typ := range m.Bindings {
		if typ != "domain" {
			continue
		}
		origin := strings.TrimPrefix(b, "domain:")
		z := Zone{Origin: origin}
		if raw, ok := m.Resources[key(origin)]; ok {
			_ = jsonUnmarshal(raw, &z)
		}
		out = append(out, z)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin < out[j].Origin })
	return out
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

type exporter struct{}

// Export writes one RFC 1035 zone file per domain into dir/zones.
func (exporter) Export(_ context.Context, st *handshake.State, m *handshake.IMVU, dir string) error {
	zdir := filepath.Join(dir, "zones")
	if err := os.MkdirAll(zdir, 0o755); err != nil {
		return err
	}
	for _, z := range Zones(m) {
		ns, hostmaster := NameServers(st)
		c, err := dns.Build(dns.Zone{Origin: z.Origin, IMVU: m.ID, Serial: z.Serial + 1, Records: z.Records}, ns, hostmaster)
		if err != nil {
			return fmt.Errorf("export zone %s: %w", z.Origin, err)
		}
		f, err := os.Create(filepath.Join(zdir, z.Origin+".zone"))
		if err != nil {
			return err
		}
		werr := dns.WriteZoneFile(f, c)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("export zone %s: %w", z.Origin, werr)
		}
	}
	return nil
}

type importer struct{}

// Import checks every exported zone file parses.
func (importer) Import(_ context.Context, _ *handshake.State, m *handshake.IMVU, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "zones", "*.zone"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.Open(f)
		if err != nil {
			return err
		}
		_, err = dns.ParseZoneFile(strings.TrimSuffix(filepath.Base(f), ".zone"), b)
		b.Close()
		if err != nil {
			return fmt.Errorf("import %s: %w", f, err)
		}
	}
	return nil
}

// NameServers are the NS names and SOA contact every zone gets: the platform's,
// from the genesis entry.
func NameServers(st *handshake.State) ([]string, string) {
	g := st.Platform.Genesis
	ns, hm := g.Nameservers, g.Hostmaster
	if len(ns) == 0 {
		ns = []string{"ns1.nexus.invalid."}
	}
	if hm == "" {
		hm = "hostmaster.nexus.invalid."
	}
	return ns, hm
}
