// Package imapd serves Maildir mailboxes over IMAP4rev1/IMAP4rev2 to their
// authenticated users. It never lets a login reach a mailbox not bound to
// it: after LOGIN or AUTHENTICATE PLAIN the session holds exactly one
// Account.Path (from the Authenticator), and every mailbox name the client
// sends is resolved below that root by package maildir, which rejects names
// that could address anything else.
//
// Credentials are only accepted over TLS (STARTTLS or implicit TLS); before
// TLS the server advertises LOGINDISABLED and answers LOGIN/AUTHENTICATE with
// NO [PRIVACYREQUIRED].
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/maildir"
)

// Account is the mailbox bound to an authenticated login.
type Account struct {
	Address string
	IMVU    string
	Path    string // the Maildir root; the session can reach nothing else
	Quota   int64  // bytes over all folders; <= 0 means unlimited
	// Fits, if set, decides instead of Quota whether n more bytes may be
	// stored (the daemon counts the IMVU's mailboxes together); it returns
	// ErrOverQuota when they may not.
	Fits func(n int64) error
}

// ErrOverQuota is what Account.Fits returns for bytes past the quota.
var ErrOverQuota = errors.New("over quota")

// Authenticator checks credentials. It is implemented by the daemon.
type Authenticator interface {
	Login(ctx context.Context, username, password string) (Account, error)
}

// Config configures a Server.
type Config struct {
	Addr        string      // listen address, e.g. "127.0.0.1:993"
	TLS         *tls.Config // required: used for STARTTLS or implicit TLS
	ImplicitTLS bool        // TLS from the first byte (port 993 style)
	Auth        Authenticator
	Logger      *slog.Logger
	Registerer  prometheus.Registerer // optional
}

// MaxMessageSize is the APPENDLIMIT advertised and enforced.
const MaxMessageSize = 64 << 20

// Server is an IMAP server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *maildir.Store
	imap  *imapserver.Server
	hub   *hub
	met   metrics

	mu     sync.Mutex
	ln     net.Listener
	ctx    context.Context
	done   chan struct{}
	closed bool
}

type metrics struct {
	logins  *prometheus.CounterVec
	conns   prometheus.Gauge
	appends *prometheus.CounterVec
}

// New validates cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("imapd: Config.Auth is required")
	}
	if cfg.TLS == nil {
		return nil, errors.New("imapd: Config.TLS is required (logins are only accepted over TLS)")
	}
	if cfg.Addr == "" {
		return nil, errors.New("imapd: Config.Addr is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   cfg,
		log:   log,
		store: maildir.NewStore(),
		hub:   newHub(),
		ctx:   context.Background(),
		done:  make(chan struct{}),
		met: metrics{
			logins: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "nexus_imapd_logins_total", Help: "IMAP login attempts by result.",
			}, []string{"result"}),
			conns: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "nexus_imapd_connections", Help: "Open IMAP connections.",
			}),
			appends: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "nexus_imapd_appends_total", Help: "IMAP APPEND commands by result.",
			}, []string{"result"}),
		},
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.met.logins, s.met.conns, s.met.appends} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("imapd: register metrics: %w", err)
			}
		}
	}
	opts := &imapserver.Options{
		NewSession: s.newSession,
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:   {},
			imap.CapIMAP4rev2:   {},
			imap.CapNamespace:   {},
			imap.CapUIDPlus:     {},
			imap.CapMove:        {},
			imap.CapESearch:     {},
			imap.CapListStatus:  {},
			imap.CapStatusSize:  {},
			imap.CapAppendLimit: {},
			imap.CapChildren:    {},
		},
		Logger: printfLogger{log},
	}
	if !cfg.ImplicitTLS {
		opts.TLSConfig = cfg.TLS
	}
	s.imap = imapserver.New(opts)
	return s, nil
}

type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) {
	p.l.Warn("imapserver", "msg", fmt.Sprintf(format, args...))
}

// Start listens on Config.Addr and serves in the background until ctx is
// done or Close is called.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	if s.cfg.ImplicitTLS {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.closed || s.ln != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("imapd: server already started or closed")
	}
	s.ln = ln
	s.ctx = ctx
	s.mu.Unlock()
	go func() {
		if err := s.imap.Serve(ln); err != nil && !s.isClosed() {
			s.log.Error("imapd serve", "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	s.log.Info("imapd listening", "addr", ln.Addr().String(), "implicit_tls", s.cfg.ImplicitTLS)
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Addr returns the listening address, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops listening and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	return s.imap.Close()
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.met.conns.Inc()
	return &session{srv: s, conn: c}, nil, nil
}

// hub wakes IDLE sessions when another session in this process changes a
// mailbox directory; changes by other processes are found by polling.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newHub() *hub { return &hub{subs: make(map[string]map[chan struct{}]struct{})} }

func (h *hub) subscribe(path string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[path] == nil {
		h.subs[path] = make(map[chan struct{}]struct{})
	}
	h.subs[path][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[path], ch)
		if len(h.subs[path]) == 0 {
			delete(h.subs, path)
		}
		h.mu.Unlock()
	}
}

func (h *hub) notify(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[path] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
