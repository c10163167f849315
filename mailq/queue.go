package mailq

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Resolver is the DNS the queue uses to find mail exchangers; in the daemon
// it is the project's own resolver. Errors should be *net.DNSError so the
// queue can tell "no such domain" (IsNotFound) from an outage.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Key is one DKIM signing key of a domain.
type Key struct {
	Selector string
	Signer   crypto.Signer // ed25519.PrivateKey or *rsa.PrivateKey
}

// Keys returns the IMVU's DKIM keys for a sending domain. Every key is used,
// so a domain publishing an Ed25519 and an RSA-2048 selector gets both
// signatures.
type Keys func(imvu, domain string) []Key

// Local reports whether rcpt is hosted on this node and, if so, returns a
// function that delivers a message to it durably.
type Local func(ctx context.Context, rcpt string) (deliver func(msg []byte) error, ok bool)

// Usage is an IMVU's cumulative outbound traffic: messages accepted by remote
// servers (one per SMTP transaction) and their bytes.
type Usage struct {
	Messages int64
	Bytes    int64
}

// Config configures a Queue.
type Config struct {
	// Dir returns the IMVU's queue folder, e.g. DATA/imvu/<ID>/mail/queue.
	// It is created on first use. Different IMVUs must get different folders.
	Dir func(imvu string) (string, error)
	// IMVUs lists the IMVUs whose folders Run loads at start.
	IMVUs    func() []string
	Resolver Resolver
	Keys     Keys
	// Local may be nil: then every recipient is remote.
	Local Local
	// Hostname is this node's name: EHLO argument, DSN sender domain
	// (MAILER-DAEMON@Hostname) and Reporting-MTA.
	Hostname string
	// Port is the SMTP port of remote exchangers; 0 means 25.
	Port int
	// TLS, if set, is used for opportunistic STARTTLS; a failed handshake
	// falls back to plain text on a new connection.
	TLS *tls.Config
	// Backoff are the delays after the 1st, 2nd, ... failed attempt; the
	// last one repeats. Default 1m, 5m, 15m, 1h, 4h.
	Backoff []time.Duration
	// MaxAge after which undelivered recipients are bounced; default 5 days.
	MaxAge     time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Queue is the outbound mail queue. Its methods are safe for concurrent use;
// at most one Run may be active, and one Queue should own a set of folders at
// a time.
type Queue struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu      sync.Mutex
	items   map[string]*item // key imvu + "/" + id
	counts  map[string]Usage
	running bool
	kicked  time.Time // last Kick; items loaded later are due no later than this
	wake    chan struct{}
}

// item is the in-memory state of one queued message. env is owned by the
// delivery goroutine while busy is set.
type item struct {
	dir    string
	env    *envelope
	busy   bool
	kicked bool
}

const maxParallel = 8

var defaultBackoff = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 4 * time.Hour}

// New checks cfg and returns a Queue. It does not touch the disk; Run loads
// the queued messages.
func New(cfg Config) (*Queue, error) {
	switch {
	case cfg.Dir == nil:
		return nil, errors.New("mailq: Config.Dir is nil")
	case cfg.Resolver == nil:
		return nil, errors.New("mailq: Config.Resolver is nil")
	case cfg.Keys == nil:
		return nil, errors.New("mailq: Config.Keys is nil")
	case !validDomain(cfg.Hostname):
		return nil, fmt.Errorf("mailq: Config.Hostname %q invalid", cfg.Hostname)
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, fmt.Errorf("mailq: Config.Port %d invalid", cfg.Port)
	}
	if cfg.IMVUs == nil {
		cfg.IMVUs = func() []string { return nil }
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = defaultBackoff
	}
	for _, d := range cfg.Backoff {
		if d <= 0 {
			return nil, errors.New("mailq: Config.Backoff has a non-positive delay")
		}
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, log: cfg.Logger, m: m, items: map[string]*item{},
		counts: map[string]Usage{}, wake: make(chan struct{}, 1)}, nil
}

func (q *Queue) dir(imvu string) (string, error) {
	if imvu == "" || !validText(imvu, 256) {
		return "", fmt.Errorf("mailq: invalid imvu %q", imvu)
	}
	d, err := q.cfg.Dir(imvu)
	if err != nil {
		return "", fmt.Errorf("mailq: queue folder of %s: %w", imvu, err)
	}
	return d, nil
}

// Enqueue DKIM-signs msg with every key of each sending domain (the domains
// of the From header and of the envelope sender from; a domain without keys
// is an error) and durably queues it for rcpts in the IMVU's folder. When it
// returns nil the message survives a crash. from "" is the null sender.
func (q *Queue) Enqueue(ctx context.Context, imvu, from string, rcpts []string, msg []byte) (string, error) {
	return q.enqueue(ctx, imvu, from, rcpts, msg, false)
}

func (q *Queue) enqueue(ctx context.Context, imvu, from string, rcpts []string, msg []byte, isDSN bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if from != "" && !validAddress(from) {
		return "", fmt.Errorf("mailq: invalid sender %q", from)
	}
	if len(rcpts) == 0 || len(rcpts) > maxRecipients {
		return "", fmt.Errorf("mailq: %d recipients", len(rcpts))
	}
	var rs []string
	for _, r := range rcpts {
		if !validAddress(r) {
			return "", fmt.Errorf("mailq: invalid recipient %q", r)
		}
		rs = appendUnique(rs, r)
	}
	dir, err := q.dir(imvu)
	if err != nil {
		return "", err
	}
	msg = toCRLF(msg)
	domains, err := headerFromDomains(msg)
	if err != nil {
		return "", err
	}
	if from != "" {
		domains = appendUnique(domains, domainOf(from))
	}
	signed, err := sign(msg, imvu, domains, q.cfg.Keys)
	if err != nil {
		return "", err
	}
	now := q.cfg.Now()
	e := &envelope{V: envelopeVersion, ID: newID(), IMVU: imvu, From: from, Rcpts: rs,
		Created: now.UTC(), Next: now.UTC(), Size: int64(len(signed)), DSN: isDSN}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("mailq: %w", err)
	}
	if err := writeFileDurable(dir, e.ID+msgExt, signed); err != nil {
		return "", fmt.Errorf("mailq: write message: %w", err)
	}
	if err := writeEnvelope(dir, e); err != nil {
		os.Remove(filepath.Join(dir, e.ID+msgExt))
		return "", fmt.Errorf("mailq: write envelope: %w", err)
	}
	q.mu.Lock()
	q.items[imvu+"/"+e.ID] = &item{dir: dir, env: e}
	q.mu.Unlock()
	q.m.inc(q.m.enqueued)
	q.log.Info("queued", "imvu", imvu, "id", e.ID, "from", from, "rcpts", len(rs), "bytes", len(signed))
	q.poke()
	return e.ID, nil
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Kick makes every queued message due now, e.g. after a DNS outage ends.
func (q *Queue) Kick() {
	now := q.cfg.Now()
	q.mu.Lock()
	q.kicked = now
	for _, it := range q.items {
		if it.busy {
			it.kicked = true
		} else {
			it.env.Next = now
		}
	}
	q.mu.Unlock()
	q.poke()
}

// Pending returns how many messages are queued in the IMVU's folder, as
// recorded on disk.
func (q *Queue) Pending(imvu string) (int, error) {
	dir, err := q.dir(imvu)
	if err != nil {
		return 0, err
	}
	return countDir(dir)
}

// Counts returns, per IMVU, the messages and bytes delivered to remote
// servers since this Queue was created.
func (q *Queue) Counts() map[string]Usage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]Usage, len(q.counts))
	for k, v := range q.counts {
		out[k] = v
	}
	return out
}

func (q *Queue) addUsage(imvu string, bytes int64) {
	q.mu.Lock()
	u := q.counts[imvu]
	u.Messages++
	u.Bytes += bytes
	q.counts[imvu] = u
	q.mu.Unlock()
}

// load adds the queued messages of every IMVU folder not yet known.
func (q *Queue) load() {
	now := q.cfg.Now()
	for _, imvu := range q.cfg.IMVUs() {
		dir, err := q.dir(imvu)
		if err != nil {
			q.log.Error("load queue", "imvu", imvu, "err", err)
			continue
		}
		envs, err := loadDir(dir, imvu, now, func(name string, err error) {
			q.log.Error("bad queue entry set aside", "imvu", imvu, "file", name, "err", err)
		})
		if err != nil {
			q.log.Error("load queue", "imvu", imvu, "err", err)
			continue
		}
		q.mu.Lock()
		for _, e := range envs {
			if _, ok := q.items[imvu+"/"+e.ID]; !ok {
				if !q.kicked.IsZero() && e.Next.After(q.kicked) {
					e.Next = q.kicked
				}
				q.items[imvu+"/"+e.ID] = &item{dir: dir, env: e}
			}
		}
		q.mu.Unlock()
		if len(envs) > 0 {
			q.log.Info("loaded queue", "imvu", imvu, "messages", len(envs))
		}
	}
}

// Run loads every IMVU's queue and delivers due messages until ctx ends.
// It waits for deliveries in progress and returns nil on cancellation.
func (q *Queue) Run(ctx context.Context) error {
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return errors.New("mailq: Run already active")
	}
	q.running = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}()

	q.load()
	var wg sync.WaitGroup
	defer wg.Wait()
	active := 0
	done := make(chan struct{}, maxParallel)
	for {
		now := q.cfg.Now()
		var due []*item
		wait := time.Second // poll, so an injected clock is honoured too
		q.mu.Lock()
		for _, it := range q.items {
			if it.busy {
				continue
			}
			if d := it.env.Next.Sub(now); d > 0 {
				wait = min(wait, d)
				continue
			}
			if active+len(due) < maxParallel {
				it.busy = true
				due = append(due, it)
			}
		}
		q.mu.Unlock()
		for _, it := range due {
			active++
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.attemptItem(ctx, it)
				done <- struct{}{}
			}()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-q.wake:
		case <-done:
			active--
		case <-t.C:
		}
		t.Stop()
	}
}

// finish releases an item after an attempt; removed items leave the index.
func (q *Queue) finish(it *item, removed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if removed {
		delete(q.items, it.env.IMVU+"/"+it.env.ID)
		return
	}
	if it.kicked {
		it.env.Next = q.cfg.Now()
		it.kicked = false
	}
	it.busy = false
}
