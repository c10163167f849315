package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Local answers for the platform's own zones without touching the network.
// ok=false means q is not in a local zone. The returned message is not
// modified by the resolver.
type Local interface {
	Resolve(ctx context.Context, q mdns.Question, do bool) (*mdns.Msg, bool)
}

// Config configures a Resolver. Zero values take the documented defaults.
type Config struct {
	Addr       string   // "127.0.0.1:0": UDP and TCP on the same port
	Local      Local    // the platform's own zones; may be nil
	RootHints  []string // "ip:port" (or "ip", port 53) of root servers; default the IANA roots
	Forwarders []string // if set, forward (RD=1) to these instead of recursing
	// TrustAnchors are DS or DNSKEY records in presentation format (for
	// example the root's KSK DS); validation is on when there is at least one.
	TrustAnchors []string
	// Attribute names the IMVU a query comes from. Queries from sources it
	// does not attribute are answered REFUSED. Required.
	Attribute  func(src netip.Addr) (imvu string, ok bool)
	CacheSize  int                   // entries; default 10000
	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time      // default time.Now (TTLs, signature validity)

	// UpstreamPort is the port used for name servers learnt from referrals
	// and glue (whose records carry only addresses); default 53.
	UpstreamPort uint16
	// QueryTimeout bounds one upstream query; default 1s.
	QueryTimeout time.Duration
	// Timeout bounds the resolution of one client query; default 8s.
	Timeout time.Duration
	// MaxWork bounds the upstream queries one client query may cause
	// (including name server lookups and DNSSEC chain building); default 96.
	MaxWork int
	// MaxTTL and MaxNegativeTTL cap how long answers are cached; default
	// 24h and 1h.
	MaxTTL, MaxNegativeTTL time.Duration
}

// Resolver is a recursive, caching, validating DNS resolver.
type Resolver struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	local      Local
	attribute  func(netip.Addr) (string, bool)
	roots      []netip.AddrPort
	forwarders []netip.AddrPort
	anchors    map[string]*anchor
	validate   bool
	cache      *cache
	up         upstream
	met        *metrics
	reg        prometheus.Registerer

	countsMu sync.RWMutex
	counts   map[string]*atomic.Uint64

	mu     sync.Mutex
	udp    *mdns.Server
	tcp    *mdns.Server
	addr   string
	base   context.Context
	cancel context.CancelFunc
	closed bool
}

// anchor is a configured trust anchor for one zone.
type anchor struct {
	name string
	ds   []*mdns.DS
	keys []*mdns.DNSKEY
}

// ianaRoots are the addresses of the root servers a. to m.root-servers.net.
var ianaRoots = []string{
	"198.41.0.4", "2001:503:ba3e::2:30", "170.247.170.2", "2801:1b8:10::b",
	"192.33.4.12", "2001:500:2::c", "199.7.91.13", "2001:500:2d::d",
	"192.203.230.10", "2001:500:a8::e", "192.5.5.241", "2001:500:2f::f",
	"192.112.36.4", "2001:500:12::d0d", "198.97.190.53", "2001:500:1::53",
	"192.36.148.17", "2001:7fe::53", "192.58.128.30", "2001:503:c27::2:30",
	"193.0.14.129", "2001:7fd::1", "199.7.83.42", "2001:500:9f::42",
	"202.12.27.33", "2001:dc3::35",
}

func parseServers(list []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
			continue
		}
		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if err != nil {
			return nil, fmt.Errorf("resolver: bad server address %q", s)
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out, nil
}

// New checks cfg and builds a Resolver; Start serves it on the network,
// Lookup works without Start.
func New(cfg Config) (*Resolver, error) {
	if cfg.Attribute == nil {
		return nil, errors.New("resolver: Config.Attribute is required (the resolver is never open)")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UpstreamPort == 0 {
		cfg.UpstreamPort = 53
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 8 * time.Second
	}
	if cfg.MaxWork <= 0 {
		cfg.MaxWork = 96
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.MaxNegativeTTL <= 0 {
		cfg.MaxNegativeTTL = time.Hour
	}
	r := &Resolver{
		cfg:       cfg,
		log:       cfg.Logger,
		now:       cfg.Now,
		local:     cfg.Local,
		attribute: cfg.Attribute,
		anchors:   map[string]*anchor{},
		cache:     newCache(cfg.CacheSize),
		counts:    map[string]*atomic.Uint64{},
		reg:       cfg.Registerer,
	}
	hints := cfg.RootHints
	if len(hints) == 0 {
		hints = ianaRoots
	}
	var err error
	if r.roots, err = parseServers(hints); err != nil {
		return nil, err
	}
	if r.forwarders, err = parseServers(cfg.Forwarders); err != nil {
		return nil, err
	}
	for _, s := range cfg.TrustAnchors {
		rr, err := mdns.NewRR(s)
		if err != nil || rr == nil {
			return nil, fmt.Errorf("resolver: bad trust anchor %q: %v", s, err)
		}
		name := lower(rr.Header().Name)
		a := r.anchors[name]
		if a == nil {
			a = &anchor{name: name}
			r.anchors[name] = a
		}
		switch t := rr.(type) {
		case *mdns.DS:
			a.ds = append(a.ds, t)
		case *mdns.DNSKEY:
			a.keys = append(a.keys, t)
		default:
			return nil, fmt.Errorf("resolver: trust anchor %q is neither DS nor DNSKEY", s)
		}
	}
	r.validate = len(r.anchors) > 0
	r.up = &netUpstream{r: r, timeout: cfg.QueryTimeout, flight: map[string]*call{}}
	r.met = newMetrics(r)
	if r.reg != nil {
		if err := r.reg.Register(r.met); err != nil {
			return nil, fmt.Errorf("resolver: metrics: %w", err)
		}
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Start listens on Config.Addr (UDP and TCP on the same port) and serves
// until Close or until ctx ends.
func (r *Resolver) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("resolver: closed")
	}
	if r.udp != nil {
		return errors.New("resolver: already started")
	}
	host, port, err := net.SplitHostPort(r.cfg.Addr)
	if err != nil {
		return fmt.Errorf("resolver: address %q: %w", r.cfg.Addr, err)
	}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return fmt.Errorf("resolver: listen udp: %w", err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			break
		}
		pc.Close()
		if port != "0" || try >= 20 {
			return fmt.Errorf("resolver: listen tcp: %w", err)
		}
	}
	r.addr = pc.LocalAddr().String()
	r.udp = &mdns.Server{PacketConn: pc, Handler: r, UDPSize: 65535}
	r.tcp = &mdns.Server{Listener: ln, Handler: r, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	for _, s := range []*mdns.Server{r.udp, r.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := s.ActivateAndServe(); err != nil {
				r.log.Debug("resolver: server stopped", "err", err)
			}
		}()
		<-started
	}
	context.AfterFunc(ctx, func() { _ = r.Close() })
	r.log.Info("resolver: serving", "addr", r.addr, "validation", r.validate, "forwarding", len(r.forwarders) > 0)
	return nil
}

// Addr is the address served (UDP and TCP), once started.
func (r *Resolver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Close stops serving, ends resolutions in progress and unregisters the
// metrics. It is safe to call more than once.
func (r *Resolver) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	udp, tcp := r.udp, r.tcp
	r.mu.Unlock()
	r.cancel()
	var errs []error
	for _, s := range []*mdns.Server{udp, tcp} {
		if s != nil {
			if err := s.Shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if r.reg != nil {
		r.reg.Unregister(r.met)
	}
	return errors.Join(errs...)
}

// Counts returns the cumulative number of queries answered for each IMVU
// (every response sent to an attributed client, whatever its RCODE).
func (r *Resolver) Counts() map[string]uint64 {
	r.countsMu.RLock()
	defer r.countsMu.RUnlock()
	out := make(map[string]uint64, len(r.counts))
	for k, v := range r.counts {
		out[k] = v.Load()
	}
	return out
}

func (r *Resolver) count(imvu string) {
	r.countsMu.RLock()
	c := r.counts[imvu]
	r.countsMu.RUnlock()
	if c == nil {
		r.countsMu.Lock()
		if c = r.counts[imvu]; c == nil {
			c = new(atomic.Uint64)
			r.counts[imvu] = c
		}
		r.countsMu.Unlock()
	}
	c.Add(1)
}

// ErrServFail is wrapped by the error Lookup returns when resolution failed
// (no usable server, bogus data, budget exhausted).
var ErrServFail = errors.New("resolver: SERVFAIL")

// Lookup resolves name/qtype for an in-process caller (no attribution, not
// counted) along the same path as network clients: Local, cache, recursion,
// validation. The message has RRSIGs as for a DO query and AD set when the
// answer validated. NOERROR and NXDOMAIN come back with a nil error; when
// resolution fails the message is a SERVFAIL and the error says why.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	if _, ok := mdns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("resolver: %q is not a domain name", name)
	}
	req := new(mdns.Msg)
	req.SetQuestion(mdns.Fqdn(name), qtype)
	req.SetEdns0(ednsSize, true)
	ctx, cancel := r.budgetCtx(ctx)
	defer cancel()
	res := r.resolveQuestion(ctx, req.Question[0], false, true)
	m := r.reply(req, res)
	if m.Rcode == mdns.RcodeServerFailure {
		why := "resolution failed"
		if res.err != nil {
			why = res.err.Error()
		}
		return m, fmt.Errorf("%w: %s %s: %s", ErrServFail, name, mdns.TypeToString[qtype], why)
	}
	return m, nil
}

func (r *Resolver) budgetCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	stop := context.AfterFunc(r.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// ServeDNS answers one client query (mdns.Handler).
func (r *Resolver) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	src := addrOf(w.RemoteAddr())
	imvu, ok := r.attribute(src)
	if !ok {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeRefused)
		if opt := req.IsEdns0(); opt != nil {
			m.SetEdns0(ednsSize, false)
		}
		r.met.response(mdns.RcodeRefused)
		_ = w.WriteMsg(m)
		return
	}
	m := r.handle(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = min(int(opt.UDPSize()), ednsSize)
		}
		m.Truncate(size)
	}
	r.met.response(m.Rcode)
	r.count(imvu)
	if err := w.WriteMsg(m); err != nil {
		r.log.Debug("resolver: write", "err", err, "client", src)
	}
}

func addrOf(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch t := a.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(t.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(t.IP)
	default:
		if a != nil {
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				ip = ap.Addr()
			}
		}
	}
	return ip.Unmap()
}

// handle checks a client query and answers it.
func (r *Resolver) handle(req *mdns.Msg) *mdns.Msg {
	fail := func(rcode int) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetRcode(req, rcode)
		m.RecursionAvailable = true
		if req.IsEdns0() != nil {
			m.SetEdns0(ednsSize, false)
		}
		return m
	}
	if req.Response || req.Opcode != mdns.OpcodeQuery {
		return fail(mdns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return fail(mdns.RcodeFormatError)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		m := fail(mdns.RcodeBadVers)
		m.Rcode = mdns.RcodeBadVers
		return m
	}
	q := req.Question[0]
	if q.Qclass != mdns.ClassINET {
		return fail(mdns.RcodeRefused)
	}
	if _, ok := mdns.IsDomainName(q.Name); !ok {
		return fail(mdns.RcodeFormatError)
	}
	switch q.Qtype {
	case mdns.TypeANY, mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeMAILA, mdns.TypeMAILB, mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY, mdns.TypeNone:
		return fail(mdns.RcodeNotImplemented)
	}
	ctx, cancel := r.budgetCtx(context.Background())
	defer cancel()
	opt := req.IsEdns0()
	res := r.resolveQuestion(ctx, q, req.CheckingDisabled, opt != nil && opt.Do())
	return r.reply(req, res)
}

// result is what the resolution of one client question produced.
type result struct {
	rcode  int
	answer []mdns.RR // fresh copies, in chain order, with RRSIGs
	ns     []mdns.RR // negative answers: SOA and denial proofs
	sec    secState
	ede    *mdns.EDNS0_EDE
	local  *mdns.Msg // the whole answer came from Local
	hit    bool      // the whole answer came from the cache
	err    error
}

// reply builds the response to req from res.
func (r *Resolver) reply(req *mdns.Msg, res *result) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()
	q := req.Question[0]
	if lm := res.local; lm != nil {
		m.Rcode = lm.Rcode
		m.Authoritative = lm.Authoritative
		m.AuthenticatedData = lm.AuthenticatedData
		m.Answer = copyRRs(lm.Answer)
		m.Ns = copyRRs(lm.Ns)
		for _, rr := range lm.Extra {
			if rr.Header().Rrtype != mdns.TypeOPT {
				m.Extra = append(m.Extra, mdns.Copy(rr))
			}
		}
	} else {
		m.Rcode = res.rcode
		m.Answer = dnssecFilter(res.answer, do, q.Qtype)
		m.Ns = dnssecFilter(res.ns, do, q.Qtype)
		m.AuthenticatedData = res.sec == secSecure && (do || req.AuthenticatedData) &&
			(m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError)
	}
	// Hand the name back spelled as the client spelled it.
	for _, rr := range m.Answer {
		if h := rr.Header(); equalName(h.Name, q.Name) {
			h.Name = q.Name
		}
	}
	if opt != nil {
		m.SetEdns0(ednsSize, do)
		if res.ede != nil && m.Rcode == mdns.RcodeServerFailure {
			o := m.IsEdns0()
			o.Option = append(o.Option, res.ede)
		}
	}
	return m
}

func copyRRs(rrs []mdns.RR) []mdns.RR {
	out := make([]mdns.RR, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, mdns.Copy(rr))
	}
	return out
}

// dnssecFilter drops DNSSEC records a client did not ask for (RFC 4035
// 3.2.1): without DO only the records of the asked type stay.
func dnssecFilter(rrs []mdns.RR, do bool, qtype uint16) []mdns.RR {
	if do {
		return rrs
	}
	out := rrs[:0:0]
	for _, rr := range rrs {
		switch t := rr.Header().Rrtype; t {
		case mdns.TypeRRSIG, mdns.TypeNSEC, mdns.TypeNSEC3:
			if t != qtype {
				continue
			}
		}
		out = append(out, rr)
	}
	return out
}
