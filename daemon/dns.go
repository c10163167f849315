package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/registry"
)

// dnsService serves every bound domain from the derived state and meters the
// queries it answers.
type dnsService struct {
	n       *Node
	srv     *dns.Server
	mu      sync.Mutex
	served  map[string][]string // IMVU -> origins it serves now
	holder  map[string]string   // origin -> the IMVU whose zone is served
	serial  map[string]uint32   // origin -> SOA serial last served
	content map[string]string   // origin -> hash of what was last served
}

func (n *Node) startDNS(ctx context.Context, reg prometheus.Registerer) error {
	c := n.Config.DNS
	if c.Listen == "" {
		return nil
	}
	var secs []dns.Secondary
	for _, s := range c.Secondaries {
		secs = append(secs, dns.Secondary{Addr: s.Addr, TSIGName: s.TSIGName, TSIGSecret: s.TSIGSecret, TSIGAlgorithm: s.TSIGAlgorithm})
	}
	srv, err := dns.NewServer(dns.Config{Addr: c.Listen, Logger: n.logger.With("part", "dns"), Registerer: reg, Secondaries: secs})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("dns on %s: %w", c.Listen, err)
	}
	n.dns = &dnsService{n: n, srv: srv, served: map[string][]string{}, holder: map[string]string{}, serial: map[string]uint32{}, content: map[string]string{}}
	n.listeners = append(n.listeners, api.Listener{Name: "dns", Network: "udp", Address: srv.Addr()},
		api.Listener{Name: "dns", Network: "tcp", Address: srv.Addr()})
	n.Engine.Watch(n.dns.sync)
	return nil
}

// sync serves the zones of one IMVU as the ledger left them.
func (d *dnsService) sync(st *handshake.State, scope string) { d.syncZones(st, scope, false) }

// syncZones serves scope's zones. A zone whose content has not changed since it
// was last served is left alone (no new serial, no NOTIFY, no re-signing),
// unless force, the periodic refresh, asks for it.
func (d *dnsService) syncZones(st *handshake.State, scope string, force bool) {
	m := st.IMVUs[scope]
	if m == nil {
		return
	}
	var zones []registry.Zone
	if m.Status != handshake.StatusExited { // an exited IMVU's names left with its owner
		zones = registry.Zones(m)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := map[string]bool{}
	ns, hostmaster := registry.NameServers(st)
	for _, z := range zones {
		now[z.Origin] = true
		z.Records = append(append([]dns.Record(nil), z.Records...), mailRecords(d.n, st, scope, z.Records, z.Origin)...)
		sum := zoneSum(scope, z, ns, hostmaster)
		if !force && d.holder[z.Origin] == scope && d.content[z.Origin] == sum {
			continue
		}
		c, err := d.compile(scope, z, ns, hostmaster)
		if err != nil {
			d.n.logger.Error("dns zone", "imvu", scope, "zone", z.Origin, "err", err)
			continue
		}
		d.srv.SetZone(c)
		d.holder[z.Origin] = scope
		d.content[z.Origin] = sum
	}
	for _, o := range d.served[scope] {
		// A zone that moved to another IMVU is that IMVU's to serve now.
		if !now[o] && d.holder[o] == scope {
			d.srv.RemoveZone(o)
			delete(d.holder, o)
			delete(d.content, o)
		}
	}
	d.served[scope] = d.served[scope][:0]
	for o := range now {
		d.served[scope] = append(d.served[scope], o)
	}
}

func (d *dnsService) compile(imvu string, z registry.Zone, ns []string, hostmaster string) (*dns.Compiled, error) {
	var key *ecdsa.PrivateKey
	if d.n.Config.DNS.DNSSEC {
		var err error
		if key, err = zoneKey(d.n.Dir, imvu, z.Origin); err != nil {
			return nil, err
		}
	}
	// Served serials follow the clock (and always rise), so a periodic
	// re-serve gives secondaries fresh signatures before the old ones expire.
	serial := max(d.serial[z.Origin]+1, uint32(time.Now().Unix()))
	d.serial[z.Origin] = serial
	return dns.Build(dns.Zone{Origin: z.Origin, IMVU: imvu, Serial: serial, Records: z.Records, Key: key}, ns, hostmaster)
}

// refresh re-serves every zone on an interval shorter than the signature
// validity secondaries get with a transfer (14 days), so a zone that never
// changes is still re-signed and re-transferred.
func (d *dnsService) refresh(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.n.Engine.View(func(st *handshake.State) error {
			for id := range st.IMVUs {
				d.syncZones(st, id, true)
			}
			return nil
		})
	}
}

// zoneKey loads, or makes on first use, the zone's DNSSEC key under the IMVU's
// own folder.
func zoneKey(dir datadir.Dir, imvu, origin string) (*ecdsa.PrivateKey, error) {
	base, err := dir.IMVU(imvu)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(base, "dnssec", origin+".key")
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("DNSSEC key %s: not PEM", path)
		}
		return x509.ParseECPrivateKey(blk.Bytes)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := datadir.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// meterSources are the DNS counters the dns meter reports: queries the
// authoritative server answered for each IMVU, and lookups the resolver made
// for each IMVU's workloads.
func (d *dnsService) meterSources() map[string]map[string]uint64 {
	sources := map[string]map[string]uint64{"dns_queries": d.srv.Counts()}
	if r := d.n.resolver; r != nil {
		sources["dns_lookups"] = r.Counts()
	}
	return sources
}

// zoneSum identifies what a zone would be served as.
func zoneSum(imvu string, z registry.Zone, ns []string, hostmaster string) string {
	b, _ := json.Marshal(struct {
		IMVU       string
		Zone       registry.Zone
		NS         []string
		Hostmaster string
	}{imvu, z, ns, hostmaster})
	h := sha256.Sum256(b)
	return string(h[:])
}
