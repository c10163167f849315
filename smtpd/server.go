// Package smtpd runs the SMTP listeners of Nexus: MX ingress on one address,
// submission (STARTTLS, then AUTH PLAIN) on another, and optionally implicit-TLS
// submission on a third.
//
// The package owns the SMTP conversation, its limits and the inbound
// authentication checks (SPF, DKIM, DMARC). It never delivers or relays mail
// except through the interfaces it is given (Deliverer for local MX mail,
// Relay for everything submitted), and it never relays for an unauthenticated
// client: the MX listener has no AUTH and accepts recipients only for
// mailboxes the Router says are local; the submission listeners accept MAIL
// only after AUTH over TLS, and only from the authenticated mailbox's own
// address (gate G13's first line; the queue behind Relay checks again).
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
)

// Mailbox is one local mailbox and the IMVU that owns it.
type Mailbox struct {
	Address string
	IMVU    string
}

// Errors a Router returns.
var (
	// ErrNotLocal: this node does not host the recipient's domain.
	ErrNotLocal = errors.New("smtpd: domain not hosted here")
	// ErrNoMailbox: the domain is hosted here but the local part is unknown.
	ErrNoMailbox = errors.New("smtpd: no such mailbox")
)

// Router maps a recipient address to a local mailbox.
type Router interface {
	// Local returns the mailbox for rcpt, ErrNotLocal for domains this node
	// does not host, or ErrNoMailbox for an unknown local part. Any other
	// error is treated as temporary (451).
	Local(ctx context.Context, rcpt string) (Mailbox, error)
}

// Deliverer stores a message in a local mailbox.
type Deliverer interface {
	// Deliver must have made msg durable (fsynced) before it returns nil:
	// only then does the server answer 250.
	Deliver(ctx context.Context, to Mailbox, msg []byte) error
}

// Authenticator checks submission credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string) (Mailbox, error)
}

// Relay is the outbound queue. It must check sender identity again (G13).
// An error that is a *smtp.SMTPError is returned to the client as is; any
// other error becomes 451 4.3.0.
type Relay interface {
	Submit(ctx context.Context, user Mailbox, from string, rcpts []string, msg []byte) error
}

// Checker is the DNS the inbound checks (SPF, DKIM, DMARC) use; in the daemon
// it is the project's own resolver. Lookups that find nothing should return a
// *net.DNSError with IsNotFound set, temporary failures one with IsTemporary
// set, as net.Resolver does. LookupAddr (PTR, only for the deprecated SPF
// "ptr" mechanism) may be nil.
type Checker struct {
	LookupTXT  func(ctx context.Context, name string) ([]string, error)
	LookupIP   func(ctx context.Context, host string) ([]net.IP, error)
	LookupMX   func(ctx context.Context, name string) ([]*net.MX, error)
	LookupAddr func(ctx context.Context, addr string) ([]string, error)
}

// Usage is the cumulative mail traffic of one IMVU, for the mail meter.
type Usage struct {
	MessagesIn        int64 // messages delivered into the IMVU's mailboxes (one per recipient)
	BytesIn           int64 // bytes of those, as stored (with the headers this package adds)
	MessagesSubmitted int64 // messages the IMVU's mailboxes handed to Relay
	BytesSubmitted    int64
}

// Config configures a Server. Zero limits take the defaults given.
type Config struct {
	MXAddr            string // MX ingress, e.g. ":25"; empty: no MX listener
	SubmissionAddr    string // submission with STARTTLS, e.g. ":587"; empty: none
	SubmissionTLSAddr string // implicit-TLS submission, e.g. ":465"; empty: none
	Hostname          string // greeting, Received and Authentication-Results authserv-id

	TLS *tls.Config // required for submission; offered as STARTTLS on MX when set

	MaxMessageBytes int64         // default 25 MiB (552 beyond)
	MaxRecipients   int           // default 100 (452 beyond)
	MaxLineLength   int           // default 1000 (RFC 5321)
	ReadTimeout     time.Duration // per command, and for a whole DATA; default 5 min
	WriteTimeout    time.Duration // default 5 min

	// Allow is the per-IMVU rate limit: false -> 451 4.7.0. Asked on RCPT
	// (MX, the recipient's IMVU) and on MAIL FROM (submission, the user's
	// IMVU). Nil allows everything.
	Allow func(imvu string) bool

	Router    Router
	Deliverer Deliverer
	Auth      Authenticator
	Relay     Relay
	Checker   *Checker

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Server is the set of SMTP listeners.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mx, sub, subTLS *smtp.Server

	mu        sync.Mutex
	usage     map[string]*Usage
	listeners [3]net.Listener
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   bool
	closed    bool
}

const (
	defaultMaxMessageBytes = 25 << 20
	defaultMaxRecipients   = 100
	defaultMaxLineLength   = 1000
	defaultTimeout         = 5 * time.Minute
)

// New checks cfg and builds a Server; Start opens the listeners.
func New(cfg Config) (*Server, error) {
	if cfg.MXAddr == "" && cfg.SubmissionAddr == "" && cfg.SubmissionTLSAddr == "" {
		return nil, errors.New("smtpd: no listen address")
	}
	if cfg.Hostname == "" {
		return nil, errors.New("smtpd: Hostname required")
	}
	if cfg.MXAddr != "" {
		if cfg.Router == nil || cfg.Deliverer == nil {
			return nil, errors.New("smtpd: MX needs Router and Deliverer")
		}
		if cfg.Checker == nil || cfg.Checker.LookupTXT == nil || cfg.Checker.LookupIP == nil || cfg.Checker.LookupMX == nil {
			return nil, errors.New("smtpd: MX needs a Checker with LookupTXT, LookupIP and LookupMX")
		}
	}
	if cfg.SubmissionAddr != "" || cfg.SubmissionTLSAddr != "" {
		if cfg.TLS == nil {
			return nil, errors.New("smtpd: submission needs TLS")
		}
		if cfg.Auth == nil || cfg.Relay == nil {
			return nil, errors.New("smtpd: submission needs Auth and Relay")
		}
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = defaultMaxMessageBytes
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = defaultMaxRecipients
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = defaultMaxLineLength
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = defaultTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = defaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Allow == nil {
		cfg.Allow = func(string) bool { return true }
	}
	s := &Server{cfg: cfg, log: cfg.Logger, usage: map[string]*Usage{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics()
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("smtpd: metrics: %w", err)
		}
	}
	s.mx = s.newSMTP(smtp.BackendFunc(s.newMXSession), "mx")
	if cfg.TLS != nil {
		s.mx.TLSConfig = cfg.TLS // opportunistic STARTTLS; still no AUTH on MX
	}
	s.sub = s.newSMTP(smtp.BackendFunc(s.newSubmissionSession), "submission")
	s.sub.TLSConfig = cfg.TLS
	s.subTLS = s.newSMTP(smtp.BackendFunc(s.newSubmissionSession), "submissions")
	s.subTLS.TLSConfig = cfg.TLS
	return s, nil
}

func (s *Server) newSMTP(be smtp.Backend, name string) *smtp.Server {
	srv := smtp.NewServer(be)
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = s.cfg.MaxLineLength
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.AllowInsecureAuth = false
	srv.ErrorLog = slogAdapter{s.log.With("listener", name)}
	return srv
}

// Start opens the configured listeners and serves them until Close (or until
// ctx is done). Addrs is valid once Start has returned nil.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("smtpd: already started")
	}
	s.started = true
	type spec struct {
		addr string
		srv  *smtp.Server
		tls  bool
	}
	specs := []spec{{s.cfg.MXAddr, s.mx, false}, {s.cfg.SubmissionAddr, s.sub, false}, {s.cfg.SubmissionTLSAddr, s.subTLS, true}}
	var lc net.ListenConfig
	for i, sp := range specs {
		if sp.addr == "" {
			continue
		}
		l, err := lc.Listen(ctx, "tcp", sp.addr)
		if err != nil {
			for _, o := range s.listeners[:i] {
				if o != nil {
					o.Close()
				}
			}
			return fmt.Errorf("smtpd: listen %s: %w", sp.addr, err)
		}
		if sp.tls {
			l = tls.NewListener(l, s.cfg.TLS)
		}
		s.listeners[i] = l
	}
	for i, sp := range specs {
		if l := s.listeners[i]; l != nil {
			s.wg.Add(1)
			go func(srv *smtp.Server, l net.Listener) {
				defer s.wg.Done()
				if err := srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
					s.log.Error("smtpd: serve", "addr", l.Addr().String(), "err", err)
				}
			}(sp.srv, l)
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.ctx.Done():
		}
	}()
	return nil
}

// Addrs returns the bound addresses (empty for a listener not configured).
func (s *Server) Addrs() (mx, submission, submissionTLS string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := [3]string{}
	for i, l := range s.listeners {
		if l != nil {
			out[i] = l.Addr().String()
		}
	}
	return out[0], out[1], out[2]
}

// Close stops the listeners, closes every connection and waits for the
// serving goroutines. Sessions in the middle of a Deliver or Submit see
// their context cancelled.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	started := s.started
	s.mu.Unlock()
	if started {
		for _, srv := range []*smtp.Server{s.mx, s.sub, s.subTLS} {
			srv.Close() // closes its listeners and connections; errors only say "not serving"
		}
		for _, l := range s.listeners {
			if l != nil {
				l.Close() // in case Close raced ahead of Serve registering it
			}
		}
		s.wg.Wait()
	}
	if s.cfg.Registerer != nil {
		s.cfg.Registerer.Unregister(s.metrics)
	}
	return nil
}

// Counts returns a copy of the per-IMVU cumulative usage.
func (s *Server) Counts() map[string]Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Usage, len(s.usage))
	for k, v := range s.usage {
		out[k] = *v
	}
	return out
}

func (s *Server) count(imvu string, in bool, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.usage[imvu]
	if u == nil {
		u = &Usage{}
		s.usage[imvu] = u
	}
	if in {
		u.MessagesIn++
		u.BytesIn += int64(bytes)
	} else {
		u.MessagesSubmitted++
		u.BytesSubmitted += int64(bytes)
	}
}

// slogAdapter lets go-smtp log through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Warn(fmt.Sprint(v...)) }
