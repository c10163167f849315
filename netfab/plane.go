package netfab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Plane turns an approved Desired into kernel objects and keeps them so.
// Its methods are safe for concurrent use; kernel changes are serialised.
type Plane struct {
	opts  Options
	log   *slog.Logger
	names namer

	mu       sync.Mutex
	closed   bool
	model    *model               // nil until the first Sync
	applied  map[string]string    // namespace -> hash of the spec last made true
	handles  map[string]*nsHandle // owned namespaces, by name
	foreign  map[string]*nsHandle // egress namespaces, by path
	baseline map[string][]string  // namespace+chain -> rule fingerprints as last written
	totals   map[string]Traffic   // cumulative bytes per IMVU
	watching *watchState          // non-nil while Run runs
}

var errClosed = errors.New("netfab: plane closed")

// New checks opts and the egress namespaces and returns a Plane. It changes
// no network state: what a previous Plane with the same prefix left is
// adopted by the first Sync, so a restart does not interrupt traffic.
func New(ctx context.Context, opts Options) (*Plane, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("netfab options: %w", err)
	}
	opts.Egress = append([]EgressPoint(nil), opts.Egress...)
	if opts.Uplink != nil {
		u := *opts.Uplink
		opts.Uplink = &u
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Plane{
		opts: opts, log: log, names: namer{opts.Prefix},
		applied: map[string]string{}, handles: map[string]*nsHandle{}, foreign: map[string]*nsHandle{},
		baseline: map[string][]string{}, totals: map[string]Traffic{},
	}
	if err := ensureRunDir(); err != nil {
		return nil, err
	}
	eps, _ := egressPoints(&opts)
	for _, e := range eps {
		if _, err := p.foreignNS(e.NetNS); err != nil {
			p.closeHandles()
			return nil, fmt.Errorf("egress point %q: %w", e.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		p.closeHandles()
		return nil, err
	}
	return p, nil
}

// WorkloadNS returns the path of the workload's network namespace: what a
// container joins through its OCI spec, or where a VM's qemu runs.
func (p *Plane) WorkloadNS(imvu, workload string) string {
	return filepath.Join(runDir, p.names.workload(imvu, workload))
}

// Sync makes the kernel match d and removes what the plane owns but d no
// longer names. It is idempotent and touches only namespaces whose approved
// content changed. A path that d no longer allows is closed at once:
// conntrack entries it admitted are flushed, so live flows stop too.
func (p *Plane) Sync(ctx context.Context, d Desired) error {
	if err := d.validate(&p.opts); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	m := compile(&p.opts, &d)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	old := p.model
	p.model = m
	ps := p.newPass(false)
	err := ps.removeUndesired()
	var names []string
	for _, n := range m.order {
		if p.applied[n] != m.ns[n].hash {
			names = append(names, n)
		}
	}
	err = errors.Join(err, ps.run(ctx, names))
	if old != nil {
		err = errors.Join(err, p.flushFlows(old, m))
	}
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	return nil
}

// Reconcile reads back everything the plane owns, reverts every difference
// from the approved state and returns (and passes to OnDrift) what it found.
func (p *Plane) Reconcile(ctx context.Context) ([]Drift, error) {
	return p.reconcile(ctx, nil)
}

// reconcile checks the named namespaces, or all of them when names is nil.
func (p *Plane) reconcile(ctx context.Context, names []string) ([]Drift, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errClosed
	}
	if p.model == nil {
		p.mu.Unlock()
		return nil, nil // nothing approved yet
	}
	start := time.Now()
	ps := p.newPass(true)
	var err error
	if names == nil {
		err = ps.removeUndesired()
		names = p.model.order
	}
	err = errors.Join(err, ps.run(ctx, names))
	drifts := ps.drifts
	p.mu.Unlock()
	p.log.Debug("netfab: read back", "namespaces", len(names), "drift", len(drifts), "took", time.Since(start))

	for _, d := range drifts {
		p.log.Warn("netfab: drift", "imvu", d.IMVU, "netns", d.NetNS, "object", d.Object, "change", d.Change, "detail", d.Detail, "reverted", d.Reverted)
		if p.opts.OnDrift != nil {
			p.opts.OnDrift(d)
		}
	}
	if err != nil {
		return drifts, fmt.Errorf("reconcile: %w", err)
	}
	return drifts, nil
}

// Counters returns, per IMVU, the bytes its workloads sent and received,
// per class, since the plane started (IMVUs removed since keep their final
// totals). The kernel counters are read and zeroed atomically and added to
// totals kept here, so a read never loses or counts twice, and rewriting
// rules on a revert leaves them alone. Bytes counted in a table that was
// deleted by hand since the last read are lost with it.
func (p *Plane) Counters(ctx context.Context) (map[string]Traffic, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	var errs []error
	if p.model != nil {
		for _, name := range p.model.order {
			s := p.model.ns[name]
			if s.role != roleIMVU {
				continue
			}
			if h := p.handles[name]; h != nil && !h.stale() {
				errs = append(errs, p.harvest(h, s))
			}
		}
	}
	out := make(map[string]Traffic, len(p.totals))
	for imvu, t := range p.totals {
		c := make(Traffic, len(t))
		for k, v := range t {
			c[k] = v
		}
		out[imvu] = c
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("read counters: %w", err)
	}
	return out, ctx.Err()
}

// harvest moves the IMVU table's counter values into the totals.
func (p *Plane) harvest(h *nsHandle, s *nsSpec) error {
	objs, err := h.nft.ResetNamedObjects(&nftables.Table{Name: p.opts.Prefix, Family: nftables.TableFamilyBridge})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("reset counters in %s: %w", s.name, err)
	}
	t := p.totals[s.imvu]
	if t == nil {
		t = Traffic{}
		p.totals[s.imvu] = t
	}
	for _, o := range objs {
		n, ok := o.(*nftables.NamedObj)
		if !ok {
			continue
		}
		c, ok := n.Obj.(*expr.Counter)
		if !ok {
			continue
		}
		dir, class, ok := strings.Cut(n.Name, "_")
		if !ok {
			continue
		}
		b := t[Class(class)]
		switch dir {
		case "in":
			b.In += c.Bytes
		case "out":
			b.Out += c.Bytes
		default:
			continue
		}
		t[Class(class)] = b
	}
	return nil
}

// Close stops Run's watchers and releases the plane's sockets. Kernel
// state stays as it is, for a later Plane to adopt.
func (p *Plane) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.closeHandles()
	return nil
}

// Teardown removes everything the plane owns — its namespaces, and with
// them every link, route and table in them, and its links in the egress
// namespaces — then closes the plane.
func (p *Plane) Teardown(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if r := p.handles[p.names.router()]; r != nil && !p.closed {
		// Deleting our end takes the far end out of the foreign namespace
		// now rather than when the kernel gets round to the namespace.
		eps, _ := egressPoints(&p.opts)
		for _, e := range eps {
			if l, err := r.nl.LinkByName(p.names.egressLink(e.Name)); err == nil {
				if err := r.nl.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete egress link %s: %w", l.Attrs().Name, err))
				}
			}
		}
	}
	p.closed = true
	p.closeHandles()
	names, err := listOwned(p.names)
	errs = append(errs, err)
	for _, n := range names {
		errs = append(errs, deleteNS(filepath.Join(runDir, n)))
	}
	p.model = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	return ctx.Err()
}

func (p *Plane) closeHandles() {
	if p.watching != nil {
		p.watching.stopAll()
	}
	for n, h := range p.handles {
		h.close()
		delete(p.handles, n)
	}
	for n, h := range p.foreign {
		h.close()
		delete(p.foreign, n)
	}
}

func (p *Plane) foreignNS(path string) (*nsHandle, error) {
	if h := p.foreign[path]; h != nil && !h.stale() {
		return h, nil
	} else if h != nil {
		h.close()
		delete(p.foreign, path)
	}
	h, err := openNS("", path, nsForeign)
	if err != nil {
		return nil, err
	}
	p.foreign[path] = h
	return h, nil
}

// flushFlows deletes the router's conntrack entries of approved paths that
// are gone, so `ct state established` stops admitting their live flows.
func (p *Plane) flushFlows(old, cur *model) error {
	h := p.handles[p.names.router()]
	if h == nil {
		return nil
	}
	var filters []netlink.CustomConntrackFilter
	for k, f := range old.flows {
		if _, ok := cur.flows[k]; ok {
			continue
		}
		cf := &netlink.ConntrackFilter{}
		if err := cf.AddIPNet(netlink.ConntrackOrigSrcIP, toIPNet(f.src)); err != nil {
			return err
		}
		if f.dst.IsValid() {
			if err := cf.AddIPNet(netlink.ConntrackOrigDstIP, toIPNet(f.dst)); err != nil {
				return err
			}
		}
		if f.proto != 0 {
			if err := cf.AddProtocol(f.proto); err != nil {
				return err
			}
			if err := cf.AddPort(netlink.ConntrackOrigDstPort, f.dport); err != nil {
				return err
			}
		}
		filters = append(filters, cf)
	}
	if len(filters) == 0 {
		return nil
	}
	n, err := h.nl.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		return fmt.Errorf("flush conntrack of revoked paths: %w", err)
	}
	p.log.Debug("netfab: flushed conntrack entries of revoked paths", "paths", len(filters), "entries", n)
	return nil
}

// pass is one reconciling run over some namespaces. In an Sync (report
// false) differences are the intended change; otherwise they are drift.
type pass struct {
	p       *Plane
	report  bool
	drifts  []Drift
	queue   []string
	pending map[string]bool
}

func (p *Plane) newPass(report bool) *pass {
	return &pass{p: p, report: report, pending: map[string]bool{}}
}

func (ps *pass) note(s *nsSpec, imvu, object, change, detail string) {
	if !ps.report {
		return
	}
	ps.drifts = append(ps.drifts, Drift{IMVU: imvu, NetNS: s.name, Object: object, Change: change, Detail: detail, At: time.Now(), Reverted: true})
}

// again queues a namespace for (another) look in this pass.
func (ps *pass) again(name string) {
	if !ps.pending[name] {
		ps.pending[name] = true
		ps.queue = append(ps.queue, name)
	}
}

func (ps *pass) run(ctx context.Context, names []string) error {
	for _, n := range names {
		ps.again(n)
	}
	var errs []error
	for steps := 0; len(ps.queue) > 0; steps++ {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		name := ps.queue[0]
		ps.queue = ps.queue[1:]
		ps.pending[name] = false
		s := ps.p.model.ns[name]
		if s == nil || steps > 3*len(ps.p.model.ns)+8 {
			continue
		}
		mark := len(ps.drifts)
		if err := ps.reconcileNS(s); err != nil {
			errs = append(errs, err)
			for i := mark; i < len(ps.drifts); i++ {
				ps.drifts[i].Reverted = false
			}
			delete(ps.p.applied, name)
			continue
		}
		ps.p.applied[name] = s.hash
	}
	return errors.Join(errs...)
}

// ensureNS returns an open handle on the namespace, making it if missing
// (or if it was deleted by hand while the plane held it open).
func (ps *pass) ensureNS(s *nsSpec) (*nsHandle, error) {
	p := ps.p
	h := p.handles[s.name]
	if h != nil && h.stale() {
		ps.dropNS(s.name)
		ps.note(s, s.imvu, "netns "+s.name, ChangeRemoved, "deleted by hand; made again")
		h = nil
	}
	if h != nil {
		return h, nil
	}
	path := filepath.Join(runDir, s.name)
	socks := nsOwned
	if s.role == roleRouter {
		socks = nsRouter
	}
	if _, err := os.Stat(path); err == nil {
		// Adopt what a previous plane left; a file that is no namespace
		// (left by a crash between creating and mounting it) is replaced.
		if h, err = openNS(s.name, path, socks); err != nil {
			p.log.Warn("netfab: replacing unusable namespace", "netns", s.name, "err", err)
			if err := deleteNS(path); err != nil {
				return nil, err
			}
		}
	}
	if h == nil {
		if err := createNS(s.name, sysctlsFor(s.role)); err != nil {
			return nil, err
		}
		var err error
		if h, err = openNS(s.name, path, socks); err != nil {
			return nil, err
		}
	}
	p.handles[s.name] = h
	if p.watching != nil {
		p.watching.start(h)
	}
	return h, nil
}

// dropNS forgets an owned namespace's handle and what was learnt about it.
func (ps *pass) dropNS(name string) {
	p := ps.p
	if h := p.handles[name]; h != nil {
		if p.watching != nil {
			p.watching.stop(name)
		}
		h.close()
		delete(p.handles, name)
	}
	delete(p.applied, name)
	for k := range p.baseline {
		if strings.HasPrefix(k, name+"\x00") {
			delete(p.baseline, k)
		}
	}
}

// removeUndesired deletes owned namespaces the model does not name, after
// reading their counters one last time.
func (ps *pass) removeUndesired() error {
	p := ps.p
	names, err := listOwned(p.names)
	if err != nil {
		return err
	}
	for n := range p.handles {
		names = append(names, n)
	}
	var errs []error
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] || p.model.ns[n] != nil {
			continue
		}
		seen[n] = true
		h := p.handles[n]
		_, statErr := os.Stat(filepath.Join(runDir, n))
		if h != nil && !h.stale() {
			if strings.HasPrefix(n, p.names.prefix+"-i-") {
				errs = append(errs, p.harvest(h, &nsSpec{name: n, imvu: strings.TrimPrefix(n, p.names.prefix+"-i-")}))
			}
			// Deleting the links now ends their peers in other namespaces
			// at once instead of whenever the kernel frees this namespace.
			if ls, err := dump(h.nl.LinkList); err == nil {
				for _, l := range ls {
					if l.Attrs().Name != "lo" {
						_ = h.nl.LinkDel(l)
					}
				}
			}
		}
		ps.dropNS(n)
		if statErr != nil {
			continue
		}
		if err := deleteNS(filepath.Join(runDir, n)); err != nil {
			errs = append(errs, err)
			continue
		}
		ps.note(&nsSpec{name: n}, "", "netns "+n, ChangeAdded, "not approved; deleted")
	}
	return errors.Join(errs...)
}

// reconcileNS makes one namespace match its spec.
func (ps *pass) reconcileNS(s *nsSpec) error {
	h, err := ps.ensureNS(s)
	if err != nil {
		return err
	}
	var changed []string
	err = inNS(int(h.fd), func() error {
		var err error
		changed, err = applySysctls(sysctlsFor(s.role))
		return err
	})
	if err != nil {
		return fmt.Errorf("sysctls in %s: %w", s.name, err)
	}
	for _, c := range changed {
		ps.note(s, s.imvu, "sysctl", ChangeChanged, c)
	}
	if err := ps.links(h, s); err != nil {
		return err
	}
	if err := ps.routes(h, s); err != nil {
		return err
	}
	if err := ps.rules(h, s); err != nil {
		return err
	}
	return ps.nft(h, s)
}

func (ps *pass) harvest(h *nsHandle, s *nsSpec) {
	if s.role != roleIMVU {
		return
	}
	if err := ps.p.harvest(h, s); err != nil {
		ps.p.log.Warn("netfab: counters lost", "netns", s.name, "err", err)
	}
}
