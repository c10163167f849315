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

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/registry"
	"github.com/nexus-core/nexus/revenue"
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
	base    map[string]uint64   // "imvu/resource" -> ledgered counter when this process first metered it
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
	n.dns = &dnsService{n: n, srv: srv, served: map[string][]string{}, holder: map[string]string{}, serial: map[string]uint32{}, content: map[string]string{}, base: map[string]uint64{}}
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

// meter turns the queries answered per IMVU (by the authoritative server, and
// by the resolver for the IMVU's workloads) into signed cumulative usage
// events, on an interval, through the engine like any other action.
func (d *dnsService) meter(ctx context.Context) {
	key, err := datadir.ReadKey(d.n.Dir.MeterKey("dns"))
	if err != nil {
		d.n.logger.Error("dns meter key", "err", err)
		return
	}
	t := time.NewTicker(d.n.Config.DNS.MeterEvery.Duration)
	defer t.Stop()
	last := map[string]uint64{}     // imvu/resource -> count last ledgered by this process
	quiet := map[string]time.Time{} // imvu/resource -> no new attempt before this time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sources := map[string]map[string]uint64{"dns_queries": d.srv.Counts()}
		if r := d.n.resolver; r != nil {
			sources["dns_lookups"] = r.Counts()
		}
		for resource, counts := range sources {
			for imvu, count := range counts {
				k := imvu + "/" + resource
				if count == last[k] {
					continue
				}
				total, ok := d.total(imvu, resource, count)
				if !ok {
					continue
				}
				if time.Now().Before(quiet[k]) {
					continue
				}
				if err := d.record(ctx, key, imvu, resource, total); err != nil {
					d.n.logger.Warn("dns usage", "imvu", imvu, "resource", resource, "err", err)
					// A refusal (a sheet without this resource, say) would be
					// refused again each tick: wait before asking once more.
					if _, denied := api.IsDenied(err); denied {
						quiet[k] = time.Now().Add(time.Hour)
					}
					continue
				}
				last[k] = count
			}
		}
	}
}

func (d *dnsService) record(ctx context.Context, key []byte, imvu, resource string, counter uint64) error {
	ev := revenue.Usage{IMVU: imvu, Resource: resource, Meter: "dns", Counter: counter, At: time.Now().UTC()}
	a, err := action.New(handshake.KindUsage, imvu, identity.PublicOf(key), handshake.UsageParams{Events: []revenue.Usage{ev}})
	if err != nil {
		return err
	}
	s, err := action.Seal(a, key)
	if err != nil {
		return err
	}
	_, err = d.n.Engine.Submit(ctx, s)
	return err
}

// total adds this process's count to the counter the ledger held when the
// process first metered the IMVU's resource, so counters keep rising across
// restarts. It reports false for an IMVU the platform may no longer charge (G17).
func (d *dnsService) total(imvu, resource string, count uint64) (uint64, bool) {
	k := imvu + "/" + resource
	ok := false
	d.n.Engine.View(func(st *handshake.State) error {
		m := st.IMVUs[imvu]
		if m == nil || m.Status != handshake.StatusActive {
			return nil
		}
		ok = true
		d.mu.Lock()
		if _, seen := d.base[k]; !seen {
			d.base[k] = m.Counters[resource+"/dns"].Value
		}
		d.mu.Unlock()
		return nil
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.base[k] + count, ok
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
