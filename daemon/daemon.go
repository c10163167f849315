// Package daemon wires a Nexus node together: it creates a data directory
// (Init) and runs `nexus serve` (Start): the ledger, the handshake engine, and
// the API listeners. Later services (DNS, mail, compute, network) attach here.
// It holds no rules of its own: every change goes through the engine.
package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/ledger"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/netfab"
	"github.com/nexus-core/nexus/registry"
	"github.com/nexus-core/nexus/resolver"
)

// Version is the node's version string.
const Version = "0.1.0"

// MeterNames lists the platform's meters, one per metered service.
func MeterNames() []string { return []string{"compute", "dns", "mail", "net"} }

// InitOptions tune Init.
type InitOptions struct {
	Dev    bool     // pick free loopback ports
	Period string   // settlement period ("month" or a duration); "" keeps the default
	TLDs   []string // platform TLDs; empty keeps the default ("world")
}

// Init creates a data directory: config, platform keys, the first admin and the
// meters, and the genesis entry.
func Init(ctx context.Context, root string, opts InitOptions) error {
	if err := os.MkdirAll(filepath.Join(root, "platform"), 0o700); err != nil {
		return fmt.Errorf("init %s: %w", root, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "imvu"), 0o700); err != nil {
		return fmt.Errorf("init %s: %w", root, err)
	}
	dir, err := datadir.Open(root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir.Ledger()); err == nil {
		return fmt.Errorf("init: %s already holds a ledger; refusing to start another", dir.Root())
	}
	cfg := config.Default()
	if opts.Dev {
		// Port 0: each listener gets a free loopback port when it binds, so
		// nothing can take it between init and serve; `nexus status` shows them.
		for _, p := range []*string{&cfg.API.Listen, &cfg.DNS.Listen, &cfg.Mail.MX, &cfg.Mail.Submission, &cfg.Mail.IMAP} {
			*p = "127.0.0.1:0"
		}
	}
	if opts.Period != "" {
		cfg.Platform.Period = opts.Period
	}
	if len(opts.TLDs) > 0 {
		cfg.Platform.TLDs = opts.TLDs
	}
	if err := cfg.Check(); err != nil {
		return err
	}
	if err := cfg.Write(dir.Config()); err != nil {
		return err
	}
	keys := map[string]ed25519.PrivateKey{}
	paths := []string{dir.LedgerKey(), dir.RootKey(), dir.AdminKey()}
	for _, m := range MeterNames() {
		paths = append(paths, dir.MeterKey(m))
	}
	for _, p := range paths {
		k, err := identity.Generate()
		if err != nil {
			return err
		}
		if err := identity.WriteKeyFile(p, k); err != nil {
			return err
		}
		keys[p] = k
	}
	rootKey := keys[dir.RootKey()]
	now := time.Now().UTC().Truncate(time.Second)
	issue := func(k ed25519.PrivateKey, role identity.Role, name string) (identity.Identity, error) {
		return identity.Issue(rootKey, identity.Statement{Issuer: identity.PublicOf(rootKey), Subject: identity.PublicOf(k),
			Scope: identity.ScopePlatform, Role: role, Name: name, NotBefore: now, NotAfter: now.AddDate(10, 0, 0)})
	}
	admin, err := issue(keys[dir.AdminKey()], identity.RoleAdmin, "admin")
	if err != nil {
		return err
	}
	ids := []identity.Identity{admin}
	for _, m := range MeterNames() {
		id, err := issue(keys[dir.MeterKey(m)], identity.RoleMeter, m)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	ledgerKey := keys[dir.LedgerKey()]
	vkey, err := ledger.VerifierKey(cfg.Platform.Origin, ledgerKey.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	if err := datadir.WriteFile(dir.VerifierKey(), []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	cal, _ := cfg.Calendar()
	g := handshake.Genesis{
		Platform: identity.PublicOf(ledgerKey), Root: identity.PublicOf(rootKey), Identities: ids,
		Capacity: cfg.Capacity, PlatformEnv: cfg.Platform.Envelope, Skew: handshake.Duration(cfg.Platform.Skew.Duration),
		PeriodLength: handshake.Duration(cal.Length), GateSet: handshake.GateSet, Powers: cfg.Platform.Powers,
		TLDs: cfg.Platform.TLDs, Nameservers: cfg.DNS.Nameservers, Hostmaster: cfg.DNS.Hostmaster,
	}
	lg, err := openLedger(ctx, dir, cfg, ledgerKey, nil, nil)
	if err != nil {
		return err
	}
	defer lg.Close()
	eng, err := handshake.New(handshake.Config{Log: lg, Store: dir, Platform: ledgerKey})
	if err != nil {
		return err
	}
	return eng.Genesis(ctx, g)
}

func openLedger(ctx context.Context, dir datadir.Dir, cfg config.Config, key ed25519.PrivateKey, reg prometheus.Registerer, lg *slog.Logger) (*ledger.Log, error) {
	signer, err := ledger.NewSigner(cfg.Platform.Origin, key)
	if err != nil {
		return nil, err
	}
	verifier, err := ledger.NewVerifier(cfg.Platform.Origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return ledger.Open(ctx, dir.Ledger(), ledger.Options{Origin: cfg.Platform.Origin, Signer: signer, Verifier: verifier,
		Registerer: reg, Logger: lg})
}

// Node is a running daemon.
type Node struct {
	Dir    datadir.Dir
	Config config.Config
	Engine *handshake.Engine
	Ledger *ledger.Log

	logger   *slog.Logger
	dns      *dnsService
	resolver *resolver.Resolver
	mail     *mailService
	compute  *compute.Supervisor
	net      *netService
	blobs    *blobs

	keyFiles  keyFiles // parsed DKIM key files
	mxWarnMu  sync.Mutex
	mxWarned  map[string]bool // "imvu/address": warned that the config moved
	servers   []*http.Server
	listeners []api.Listener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Start opens the data directory, replays the ledger and serves the API.
func Start(ctx context.Context, root string, logger *slog.Logger) (*Node, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := datadir.Open(root)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(dir.Config())
	if err != nil {
		return nil, err
	}
	key, err := datadir.ReadKey(dir.LedgerKey())
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lg, err := openLedger(ctx, dir, cfg, key, reg, logger.With("part", "ledger"))
	if err != nil {
		return nil, err
	}
	eng, err := handshake.New(handshake.Config{Log: lg, Store: dir, Platform: key, Registerer: reg, Logger: logger.With("part", "handshake")})
	if err != nil {
		lg.Close()
		return nil, err
	}
	if err := registry.Register(eng); err != nil {
		lg.Close()
		return nil, err
	}
	mailFiles := mailbox.Files{Root: imvuFolder(dir, "mail")}
	if err := mailbox.Register(eng, mailFiles, mailFiles); err != nil {
		lg.Close()
		return nil, err
	}
	computeFiles := compute.Files{Root: imvuFolder(dir, "compute")}
	if err := compute.Register(eng, computeFiles, computeFiles); err != nil {
		lg.Close()
		return nil, err
	}
	if err := netfab.Register(eng, netFiles{}, netFiles{}); err != nil {
		lg.Close()
		return nil, err
	}
	n := &Node{Dir: dir, Config: cfg, Engine: eng, Ledger: lg, logger: logger}
	n.blobs = &blobs{n: n}
	eng.Watch(n.purgeExited)
	bg, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if err := n.startDNS(bg, reg); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startResolver(bg, reg); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startMail(bg, reg); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startNet(bg); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startCompute(); err != nil {
		n.Close()
		return nil, err
	}
	if err := eng.Replay(ctx); err != nil {
		n.Close()
		return nil, fmt.Errorf("replay ledger: %w", err)
	}
	if err := n.runMail(bg); err != nil {
		n.Close()
		return nil, err
	}
	n.runNet(bg)
	n.runCompute(bg)
	if err := n.listen(reg); err != nil {
		n.Close()
		return nil, err
	}
	n.wg.Add(1)
	go n.flushJunk(bg)
	if n.dns != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.newMeter("dns", n.Config.DNS.MeterEvery.Duration, n.dns.meterSources).run(bg)
		}()
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.dns.refresh(bg, 3*24*time.Hour) }()
	}
	logger.Info("serving", "data", dir.Root(), "listeners", n.listeners, "ledger_size", lg.Size())
	return n, nil
}

func (n *Node) listen(reg *prometheus.Registry) error {
	cal, _ := n.Config.Calendar()
	offer := api.Offer{Platform: identity.PublicOf(mustKey(n.Dir.LedgerKey())), Envelope: n.Config.Defaults.Envelope,
		Sheet: n.Config.Sheet(), Powers: n.Config.Platform.Powers, TLDs: n.Config.Platform.TLDs,
		Period: cal.Of(time.Now()).String(), GateSet: handshake.GateSet,
	}
	if n.Config.Mail.Hostname != "" {
		offer.MailAddress = n.Config.Mail.Address
	}
	// Zones are served with the genesis's nameservers; offer the same.
	n.Engine.View(func(st *handshake.State) error {
		offer.Nameservers, offer.Hostmaster = st.Platform.Genesis.Nameservers, st.Platform.Genesis.Hostmaster
		return nil
	})
	if vkey, err := os.ReadFile(n.Dir.VerifierKey()); err == nil {
		offer.VerifierKey = strings.TrimSpace(string(vkey))
	}
	srv := api.NewServer(api.ServerConfig{Engine: n.Engine, Ledger: n.Ledger, Status: n.Status, Offer: offer,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Logger: n.logger.With("part", "api"), Export: n.Export,
		Blobs: n.blobs, Views: n.views(), Exec: n.execer()})
	var ls []net.Listener
	if n.Config.API.Socket != "" {
		path := n.Config.API.Socket
		if !filepath.IsAbs(path) {
			path = filepath.Join(n.Dir.Root(), path)
		}
		if err := removeStaleSocket(path); err != nil {
			return err
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", path, err)
		}
		os.Chmod(path, 0o600)
		ls = append(ls, l)
		n.listeners = append(n.listeners, api.Listener{Name: "api", Network: "unix", Address: path})
	}
	if n.Config.API.Listen != "" {
		l, err := net.Listen("tcp", n.Config.API.Listen)
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return fmt.Errorf("listen on %s: %w", n.Config.API.Listen, err)
		}
		ls = append(ls, l)
		n.listeners = append(n.listeners, api.Listener{Name: "api", Network: "tcp", Address: l.Addr().String()})
	}
	for _, l := range ls {
		hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			ErrorLog: slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn)}
		n.servers = append(n.servers, hs)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.logger.Error("api listener", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

func publicOf(k ed25519.PrivateKey) identity.PublicKey { return identity.PublicOf(k) }

func mustKey(path string) ed25519.PrivateKey {
	k, err := datadir.ReadKey(path)
	if err != nil {
		panic(err) // read successfully moments before in Start
	}
	return k
}

// removeStaleSocket removes a socket file no daemon answers on, and refuses to
// start beside a live one.
func removeStaleSocket(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another daemon is serving %s", path)
	}
	return os.Remove(path)
}

// Status reports what `nexus status` shows.
func (n *Node) Status() api.Status {
	var s api.Status
	s.Version = Version
	s.Listeners = n.listeners
	cp := n.Ledger.Checkpoint()
	s.Ledger.Size = cp.Size
	s.Ledger.Root = fmt.Sprintf("%x", cp.Root)
	s.Origin = cp.Origin
	n.Engine.View(func(st *handshake.State) error {
		s.IMVUs = len(st.IMVUs)
		return nil
	})
	s.Healthy = n.Engine.Healthy()
	return s
}

func (n *Node) flushJunk(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.Engine.FlushJunk(ctx); err != nil {
				n.logger.Error("junk summary", "err", err)
			}
		}
	}
}

// Close stops serving, writes the last junk summary and closes the ledger.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range n.servers {
		s.Shutdown(ctx)
	}
	n.wg.Wait()
	if n.compute != nil {
		if err := n.compute.Close(); err != nil {
			n.logger.Warn("compute close", "err", err)
		}
	}
	if n.net != nil {
		// Networks outlive the daemon like workloads do; with none left, the
		// router goes too.
		if len(n.net.desired().Networks) == 0 {
			if err := n.net.plane.Teardown(ctx); err != nil {
				n.logger.Warn("net teardown", "err", err)
			}
		}
		n.net.plane.Close()
	}
	if n.mail != nil {
		n.mail.close()
	}
	if n.resolver != nil {
		n.resolver.Close()
	}
	if n.dns != nil {
		n.dns.srv.Close()
	}
	err := n.Engine.FlushJunk(ctx)
	return errors.Join(err, n.Ledger.Close())
}

// purgeExited deletes an exited IMVU's data: everything in its folder but the
// state file, which keeps the tombstone the ledger derives. It runs only after
// the owner's signed acknowledgement of the bundle (G17).
func (n *Node) purgeExited(st *handshake.State, scope string) {
	m := st.IMVUs[scope]
	if m == nil || m.Status != handshake.StatusExited {
		return
	}
	dir, err := n.Dir.IMVU(scope)
	if err != nil {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() == "state.json" || (e.Name() == "compute" && n.compute != nil) {
			continue // the compute supervisor stops the workloads, then removes their files
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			n.logger.Error("purge exited IMVU", "imvu", scope, "err", err)
			continue
		}
		n.logger.Info("purged exited IMVU data", "imvu", scope, "path", e.Name())
	}
}

// imvuFolder returns the function that names a service's folder in an IMVU's.
func imvuFolder(dir datadir.Dir, name string) func(id string) (string, error) {
	return func(id string) (string, error) {
		d, err := dir.IMVU(id)
		if err != nil {
			return "", err
		}
		return filepath.Join(d, name), nil
	}
}

// views are the services' reads the API answers.
func (n *Node) views() map[string]api.View {
	v := map[string]api.View{}
	if n.mail != nil {
		v[mailbox.QueryKeys] = n.dkimView
	}
	maps.Copy(v, n.computeViews())
	maps.Copy(v, n.netViews())
	return v
}
