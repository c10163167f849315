package dns

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Config sets up a Server.
type Config struct {
	// Addr is the address to listen on; UDP and TCP share its port.
	// "127.0.0.1:0" picks a free port (see Server.Addr).
	Addr       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Secondaries get a NOTIFY when a zone's serial changes and may pull
	// zones by AXFR/IXFR when they sign the request with their TSIG key.
	Secondaries []Secondary
	// UDPSize is the largest UDP response, advertised in EDNS (default 1232).
	UDPSize uint16
	// UDPSockets is how many UDP sockets share the port (SO_REUSEPORT), each
	// with its own reader; 0 means one per CPU (GOMAXPROCS).
	UDPSockets int
}

// Secondary is a server that copies the zones: NOTIFY goes to Addr, and AXFR
// is allowed to requests signed with its TSIG key. Without a key it is only
// notified (TSIGAlgorithm defaults to hmac-sha256; the secret is base64).
type Secondary struct {
	Addr          string
	TSIGName      string
	TSIGSecret    string
	TSIGAlgorithm string
}

// tsigKey is a configured TSIG key.
type tsigKey struct {
	name, secret, alg string
}

// Server answers for the zones given to it with SetZone.
type Server struct {
	cfg     Config
	log     *slog.Logger
	udpSize uint16
	keys    map[string]tsigKey // by lowercase key name
	notify  []notifyTarget

	zones    atomic.Pointer[zoneMap]
	mu       sync.Mutex // serialises zone changes, counters, lifecycle
	counters map[string]*counter
	gen      uint32
	started  bool
	closed   bool

	shards  int // counter and metric shards: one per UDP socket, and one shared
	metrics *metrics
	now     atomic.Int64 // unix seconds, updated every second while running

	addr   string
	udp    []*net.UDPConn
	tcp    net.Listener
	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup

	refused, notImp, formErrQ, badVers, notifyAck, servFail, notAuth *tmpl
}

type zoneMap map[string]*served

// served is a zone as one server serves it.
type served struct {
	c   *Compiled
	cnt *counter
	gen uint32 // distinguishes cached answers of successive zones
}

// counter is a per-IMVU count of answered queries, one cache line per shard
// so that UDP readers never share a line.
type counter struct{ shards []paddedCount }

type paddedCount struct {
	n atomic.Uint64
	_ [56]byte
}

func (c *counter) total() uint64 {
	var t uint64
	for i := range c.shards {
		t += c.shards[i].n.Load()
	}
	return t
}

// NewServer checks the configuration; Start binds the sockets.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("dns: no listen address")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("dns: listen address %q: %w", cfg.Addr, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, udpSize: cfg.UDPSize, keys: map[string]tsigKey{}, counters: map[string]*counter{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.udpSize == 0 {
		s.udpSize = 1232
	}
	if s.udpSize < 512 {
		s.udpSize = 512
	}
	for i, sec := range cfg.Secondaries {
		t, err := parseSecondary(sec)
		if err != nil {
			return nil, fmt.Errorf("dns: secondaries[%d]: %w", i, err)
		}
		if t.key != nil {
			if k, ok := s.keys[t.key.name]; ok && (k.secret != t.key.secret || k.alg != t.key.alg) {
				return nil, fmt.Errorf("dns: secondaries[%d]: TSIG key %s is configured twice with different secrets", i, t.key.name)
			}
			s.keys[t.key.name] = *t.key
		}
		s.notify = append(s.notify, t)
	}
	n := cfg.UDPSockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if !reusePortSupported {
		n = 1
	}
	s.cfg.UDPSockets = n
	s.shards = n + 1
	empty := zoneMap{}
	s.zones.Store(&empty)
	s.now.Store(time.Now().Unix())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.refused = &tmpl{flags: mdns.RcodeRefused}
	s.notImp = &tmpl{flags: mdns.RcodeNotImplemented}
	s.formErrQ = &tmpl{flags: mdns.RcodeFormatError}
	s.badVers = &tmpl{}
	s.notifyAck = &tmpl{flags: hdrAA}
	s.servFail = &tmpl{flags: mdns.RcodeServerFailure}
	s.notAuth = &tmpl{flags: mdns.RcodeNotAuth}
	if cfg.Registerer != nil {
		m, err := newMetrics(s, cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("dns: metrics: %w", err)
		}
		s.metrics = m
	}
	return s, nil
}

func parseSecondary(sec Secondary) (notifyTarget, error) {
	addr := sec.Addr
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return notifyTarget{}, fmt.Errorf("address %q is not host:port", sec.Addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return notifyTarget{}, fmt.Errorf("address %q: bad port", sec.Addr)
	}
	t := notifyTarget{addr: addr}
	if sec.TSIGName == "" && sec.TSIGSecret == "" {
		return t, nil
	}
	if sec.TSIGName == "" || sec.TSIGSecret == "" {
		return t, errors.New("TSIG needs both a key name and a secret")
	}
	if _, ok := mdns.IsDomainName(sec.TSIGName); !ok {
		return t, fmt.Errorf("TSIG key name %q is not a domain name", sec.TSIGName)
	}
	if b, err := base64.StdEncoding.DecodeString(sec.TSIGSecret); err != nil || len(b) == 0 {
		return t, errors.New("TSIG secret is not base64")
	}
	alg := mdns.HmacSHA256
	if sec.TSIGAlgorithm != "" {
		alg = mdns.CanonicalName(sec.TSIGAlgorithm)
	}
	switch alg {
	case mdns.HmacSHA1, mdns.HmacSHA224, mdns.HmacSHA256, mdns.HmacSHA384, mdns.HmacSHA512:
	default:
		return t, fmt.Errorf("TSIG algorithm %q is not supported (hmac-sha1, -sha224, -sha256, -sha384, -sha512)", sec.TSIGAlgorithm)
	}
	t.key = &tsigKey{name: mdns.CanonicalName(sec.TSIGName), secret: sec.TSIGSecret, alg: alg}
	return t, nil
}

// Start binds UDP and TCP on the configured address and serves until ctx
// ends or Close is called.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("dns: server closed")
	case s.started:
		return errors.New("dns: server already started")
	}
	udp, tcp, err := listen(ctx, s.cfg.Addr, s.cfg.UDPSockets)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	s.udp, s.tcp, s.started = udp, tcp, true
	s.addr = tcp.Addr().String()
	for i, c := range udp {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveUDP(c, i)
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.serveTCP(tcp)
	}()
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-ctx.Done():
				go s.Close()
				return
			case t := <-tick.C:
				s.now.Store(t.Unix())
			}
		}
	}()
	s.log.Info("dns: serving", "addr", s.addr, "udp_sockets", len(udp))
	for _, z := range *s.zones.Load() {
		s.sendNotify(z.c)
	}
	return nil
}

// listen binds n UDP sockets sharing one port and a TCP listener on the same
// port. With port 0 it retries until a port is free for both.
func listen(ctx context.Context, addr string, n int) ([]*net.UDPConn, net.Listener, error) {
	host, port, _ := net.SplitHostPort(addr)
	lc := net.ListenConfig{Control: reusePort}
	if port == "0" {
		// A port the kernel picks is shared with any other SO_REUSEPORT
		// socket of the same user that asks for one: two servers (two
		// nodes, two tests) could be handed the same port and each other's
		// queries. One plain socket owns its port alone.
		lc, n = net.ListenConfig{}, 1
	}
	var lastErr error
	for try := 0; try < 20; try++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		first := pc.(*net.UDPConn)
		bound := net.JoinHostPort(host, strconv.Itoa(first.LocalAddr().(*net.UDPAddr).Port))
		tcp, err := net.Listen("tcp", bound)
		if err != nil {
			first.Close()
			lastErr = err
			if port == "0" {
				continue
			}
			return nil, nil, err
		}
		conns := []*net.UDPConn{first}
		for len(conns) < n {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				tcp.Close()
				return nil, nil, err
			}
			conns = append(conns, pc.(*net.UDPConn))
		}
		return conns, tcp, nil
	}
	return nil, nil, lastErr
}

// Addr returns the bound address (host:port) once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops serving and waits for the readers and pending NOTIFYs.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	var errs []error
	for _, c := range s.udp {
		errs = append(errs, c.Close())
	}
	if s.tcp != nil {
		errs = append(errs, s.tcp.Close())
	}
	s.mu.Unlock()
	s.wg.Wait()
	if s.metrics != nil {
		s.metrics.unregister()
	}
	return errors.Join(errs...)
}

// SetZone serves c from now on, in place of any zone of the same origin (an
// atomic swap: a query sees the old zone or the new one). When the serial is
// new, the secondaries are notified.
func (s *Server) SetZone(c *Compiled) {
	if c == nil {
		return
	}
	s.mu.Lock()
	old := *s.zones.Load()
	next := make(zoneMap, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	prev := old[c.owire]
	cnt := s.counters[c.imvu]
	if cnt == nil {
		cnt = &counter{shards: make([]paddedCount, s.shards)}
		s.counters[c.imvu] = cnt
	}
	s.gen++
	next[c.owire] = &served{c: c, cnt: cnt, gen: s.gen}
	s.zones.Store(&next)
	// Under mu, so that Close either waits for these NOTIFYs or they are
	// never started.
	if s.started && !s.closed && (prev == nil || prev.c.serial != c.serial) {
		s.sendNotify(c)
	}
	s.mu.Unlock()
	s.log.Info("dns: zone set", "zone", c.origin, "imvu", c.imvu, "serial", c.serial, "records", c.count, "signed", c.key != nil)
}

// RemoveZone stops serving a zone: its names get REFUSED from then on.
func (s *Server) RemoveZone(origin string) {
	o, err := canonicalOrigin(origin)
	if err != nil {
		return
	}
	w := mustWire(o)
	s.mu.Lock()
	old := *s.zones.Load()
	if _, ok := old[w]; ok {
		next := make(zoneMap, len(old))
		for k, v := range old {
			if k != w {
				next[k] = v
			}
		}
		s.zones.Store(&next)
	}
	s.mu.Unlock()
	s.log.Info("dns: zone removed", "zone", o)
}

// Zones returns the origins served, for inspection.
func (s *Server) Zones() []string {
	var out []string
	for _, z := range *s.zones.Load() {
		out = append(out, z.c.origin)
	}
	return out
}

// Counts returns, per IMVU, the queries answered from its zones since the
// server was made. The counts only grow (a zone replaced or removed keeps its
// IMVU's count), as the DNS meter's cumulative counters must.
func (s *Server) Counts() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.counters))
	for id, c := range s.counters {
		out[id] = c.total()
	}
	return out
}

// findZone returns the zone closest to the name (lowercase wire).
func (s *Server) findZone(name []byte) *served {
	zm := *s.zones.Load()
	if len(zm) == 0 {
		return nil
	}
	for off := 0; off < len(name); off += int(name[off]) + 1 {
		if z := zm[string(name[off:])]; z != nil {
			return z
		}
		if name[off] == 0 {
			break
		}
	}
	return nil
}

// worker is the state of one reader: its shard, its answer cache and scratch.
type worker struct {
	s       *Server
	shard   int
	q       query
	key     []byte
	cache   map[string]*tmpl // answers packed on first use; nil for TCP
	stats   *metricShard
	badVers bool
}

// maxWorkerCache bounds each reader's cache of answers made on demand.
const maxWorkerCache = 1 << 16

func (s *Server) newWorker(shard int, cache bool) *worker {
	w := &worker{s: s, shard: shard, key: make([]byte, 0, 300)}
	if cache {
		w.cache = make(map[string]*tmpl)
	}
	if s.metrics != nil {
		w.stats = &s.metrics.shards[shard]
	}
	return w
}

// handle answers one message. It returns the response, written into out
// (which must have room for a full UDP response), or nil to send nothing.
func (s *Server) handle(w *worker, pkt, out []byte, tcp bool) []byte {
	var start time.Time
	if w.stats != nil {
		start = time.Now()
	}
	w.badVers = false
	resp := s.respond(w, pkt, out, tcp)
	if w.stats != nil {
		w.stats.observe(resp, start, w.badVers)
	}
	return resp
}

func (s *Server) respond(w *worker, pkt, out []byte, tcp bool) []byte {
	q := &w.q
	switch parseQuery(pkt, q) {
	case parseDrop:
		return nil
	case parseFormErr:
		return headerOnly(out, pkt, mdns.RcodeFormatError)
	case parseNoQ:
		return headerOnly(out, pkt, mdns.RcodeNotImplemented)
	}
	limit := 65535
	if !tcp {
		limit = 512
		if q.edns {
			limit = int(max(512, min(q.udpSize, s.udpSize)))
		}
	}
	if q.opcode != mdns.OpcodeQuery && q.opcode != mdns.OpcodeNotify {
		return render(out, pkt, q, s.notImp, limit, s.udpSize, 0)
	}
	if q.edns && q.version > 0 {
		w.badVers = true
		return render(out, pkt, q, s.badVers, limit, s.udpSize, 1) // BADVERS = 16
	}
	if q.tsig {
		return s.handleTSIG(w, pkt, out, tcp, limit)
	}
	return s.answerQuery(w, pkt, out, tcp, limit)
}

// answerQuery answers a QUERY or NOTIFY whose header and question are valid.
func (s *Server) answerQuery(w *worker, pkt, out []byte, tcp bool, limit int) []byte {
	q := &w.q
	switch q.qtype {
	case 0, mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY, mdns.TypeNXNAME:
		// Meta-types that are never asked for (NXNAME: RFC 9824 section 3.5).
		return render(out, pkt, q, s.formErrQ, limit, s.udpSize, 0)
	}
	if q.opcode == mdns.OpcodeQuery && (q.ancount != 0 || (q.nscount != 0 && q.qtype != mdns.TypeIXFR)) {
		return render(out, pkt, q, s.formErrQ, limit, s.udpSize, 0)
	}
	if q.qclass != mdns.ClassINET {
		return render(out, pkt, q, s.refused, limit, s.udpSize, 0)
	}
	z := s.findZone(q.name())
	if z == nil {
		return render(out, pkt, q, s.refused, limit, s.udpSize, 0)
	}
	if q.opcode == mdns.OpcodeNotify {
		// We are the primary: a NOTIFY changes nothing here; acknowledge it
		// for zones we serve.
		if q.qtype != mdns.TypeSOA || len(q.name()) != len(z.c.owire) {
			return render(out, pkt, q, s.refused, limit, s.udpSize, 0)
		}
		return render(out, pkt, q, s.notifyAck, limit, s.udpSize, 0)
	}
	switch q.qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeMAILA, mdns.TypeMAILB:
		// Transfers need TCP and a TSIG key; mail meta-queries are obsolete.
		return render(out, pkt, q, s.refused, limit, s.udpSize, 0)
	}
	z.cnt.shards[w.shard].n.Add(1)
	t := s.answer(w, z, q)
	return render(out, pkt, q, t, limit, s.udpSize, 0)
}

// answer finds the template for a query in zone z: straight from the index
// for the unsigned answers packed at Build, otherwise from the reader's cache
// or made now (signed answers, CNAMEs, delegations, ANY).
func (s *Server) answer(w *worker, z *served, q *query) *tmpl {
	c := z.c
	name := q.name()
	sign := q.do && c.key != nil
	if !sign && q.qtype != mdns.TypeANY {
		if n := c.nodes[string(name)]; n != nil {
			if n.fast {
				return n.lookup(q.qtype, c)
			}
		} else {
			// Closest encloser; the apex always exists.
			for off := int(name[0]) + 1; off < len(name); off += int(name[off]) + 1 {
				if p := c.nodes[string(name[off:])]; p != nil {
					if p.deleg == nil {
						if p.wild == nil {
							return c.nx
						}
						if p.wild.fast {
							return p.wild.lookup(q.qtype, c)
						}
					}
					break
				}
			}
		}
	}
	k := binary.BigEndian.AppendUint32(w.key[:0], z.gen)
	k = binary.BigEndian.AppendUint16(k, q.qtype)
	if sign {
		k = append(k, 1)
	} else {
		k = append(k, 0)
	}
	k = append(k, name...)
	w.key = k
	if w.cache != nil {
		if t := w.cache[string(k)]; t != nil && (t.refresh == 0 || t.refresh > s.now.Load()) {
			return t
		}
	}
	t, err := pack(c.resolve(string(name), q.qtype, sign))
	if err != nil {
		s.log.Warn("dns: cannot pack answer", "zone", c.origin, "qtype", q.qtype, "err", err)
		return s.servFail
	}
	if w.cache != nil {
		if len(w.cache) >= maxWorkerCache {
			n := maxWorkerCache / 8
			for k := range w.cache {
				delete(w.cache, k)
				if n--; n <= 0 {
					break
				}
			}
		}
		w.cache[string(k)] = t
	}
	return t
}

// handleTSIG answers a TSIG-signed query (a secondary's SOA check): verified
// against the configured keys, answered as usual and signed; a bad signature
// gets NOTAUTH with the TSIG error (RFC 8945).
func (s *Server) handleTSIG(w *worker, pkt, out []byte, tcp bool, limit int) []byte {
	q := &w.q
	req := new(mdns.Msg)
	if err := req.Unpack(pkt); err != nil || req.IsTsig() == nil {
		return headerOnly(out, pkt, mdns.RcodeFormatError)
	}
	ts := req.IsTsig()
	if !validTSIG(ts) {
		return headerOnly(out, pkt, mdns.RcodeFormatError)
	}
	key, status := s.verifyTSIG(pkt, ts)
	var resp []byte
	if status != mdns.RcodeSuccess {
		resp = render(out, pkt, q, s.notAuth, limit, s.udpSize, 0)
	} else {
		resp = s.answerQuery(w, pkt, out, tcp, limit)
	}
	for _, trunc := range []bool{false, true} {
		m := new(mdns.Msg)
		if err := m.Unpack(resp); err != nil {
			return headerOnly(out, pkt, mdns.RcodeServerFailure)
		}
		if trunc { // the signature made it too long: send TC, still signed
			m.Truncated, m.Answer, m.Ns = true, nil, nil
			m.Extra = slices.DeleteFunc(m.Extra, func(rr mdns.RR) bool { return rr.Header().Rrtype != mdns.TypeOPT })
		}
		b, _, err := signTSIG(m, ts, key.secret, status, ts.MAC, false)
		if err != nil {
			s.log.Warn("dns: cannot sign response", "err", err)
			return headerOnly(out, pkt, mdns.RcodeServerFailure)
		}
		if tcp || len(b) <= limit || trunc {
			return b
		}
	}
	return nil
}

// validTSIG reports whether a TSIG record is well-formed enough to answer
// with one (names that pack, a known class).
func validTSIG(ts *mdns.TSIG) bool {
	for _, n := range []string{ts.Hdr.Name, ts.Algorithm} {
		if _, ok := mdns.IsDomainName(n); !ok || !mdns.IsFqdn(n) || n == "." {
			return false
		}
		if _, err := wireName(n); err != nil {
			return false
		}
	}
	return ts.Hdr.Class == mdns.ClassANY && ts.Hdr.Ttl == 0
}

// verifyTSIG checks a signed request against the configured keys and returns
// the key and the TSIG error (0 when valid).
func (s *Server) verifyTSIG(pkt []byte, ts *mdns.TSIG) (tsigKey, int) {
	key, ok := s.keys[strings.ToLower(ts.Hdr.Name)]
	if !ok || mdns.CanonicalName(ts.Algorithm) != key.alg {
		return tsigKey{}, mdns.RcodeBadKey
	}
	switch err := mdns.TsigVerify(pkt, key.secret, "", false); {
	case err == nil:
		return key, mdns.RcodeSuccess
	case errors.Is(err, mdns.ErrTime):
		return key, mdns.RcodeBadTime
	default:
		return key, mdns.RcodeBadSig
	}
}

// signTSIG adds a TSIG record (signed unless the error is BADKEY or BADSIG)
// and packs the message.
func signTSIG(m *mdns.Msg, req *mdns.TSIG, secret string, status int, mac string, timersOnly bool) ([]byte, string, error) {
	m.SetTsig(req.Hdr.Name, req.Algorithm, 300, time.Now().Unix())
	t := m.Extra[len(m.Extra)-1].(*mdns.TSIG)
	t.OrigId = m.Id
	t.Error = uint16(status)
	if status != mdns.RcodeSuccess {
		m.Rcode = mdns.RcodeNotAuth
	}
	if status == mdns.RcodeBadKey || status == mdns.RcodeBadSig {
		secret = base64.StdEncoding.EncodeToString([]byte{0})
	}
	return mdns.TsigGenerate(m, secret, mac, timersOnly)
}
