package mailq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	dialTimeout    = 30 * time.Second
	commandTimeout = 5 * time.Minute
	dataTimeout    = 10 * time.Minute
)

// outcome of one recipient in one attempt.
type outcome int

const (
	deferred outcome = iota // try again later
	delivered
	failed // permanent
)

type result struct {
	state  outcome
	status string // enhanced status for failures
	diag   string // "smtp; 550 ..." or a local explanation
	remote string
}

// attemptItem makes one delivery attempt for every pending recipient of it.
// Each recipient accepted by a server (or local delivery) is removed from the
// envelope on disk before the next transaction starts.
func (q *Queue) attemptItem(ctx context.Context, it *item) {
	e := it.env.clone()
	removed := q.attempt(ctx, it.dir, e)
	q.mu.Lock()
	it.env = e
	q.mu.Unlock()
	q.finish(it, removed)
}

func (q *Queue) attempt(ctx context.Context, dir string, e *envelope) (removed bool) {
	lg := q.log.With("imvu", e.IMVU, "id", e.ID)
	msg, err := os.ReadFile(filepath.Join(dir, e.ID+msgExt))
	if err != nil {
		lg.Error("message file unreadable; retrying later", "err", err)
		q.reschedule(lg, dir, e, err.Error())
		return false
	}
	now := q.cfg.Now()
	var lastErr string
	if now.Sub(e.Created) >= q.cfg.MaxAge && len(e.Rcpts) > 0 {
		why := e.LastErr
		if why == "" {
			why = "no attempt succeeded"
		}
		for _, r := range e.Rcpts {
			e.Failed = append(e.Failed, failure{Rcpt: r, Status: "4.4.7",
				Diag: clip("x-nexus; delivery time expired after " + q.cfg.MaxAge.String() + "; last error: " + why)})
		}
		e.Rcpts = nil
		q.m.add(q.m.expired, len(e.Failed))
		lg.Warn("message expired", "age", now.Sub(e.Created))
	}

	// Group by domain, keeping first-seen order.
	var domains []string
	byDomain := map[string][]string{}
	for _, r := range e.Rcpts {
		d := domainOf(r)
		if _, ok := byDomain[d]; !ok {
			domains = append(domains, d)
		}
		byDomain[d] = append(byDomain[d], r)
	}
	for _, d := range domains {
		if ctx.Err() != nil {
			break
		}
		res := map[string]result{}
		var remote []string
		for _, r := range byDomain[d] {
			if q.cfg.Local != nil {
				if deliver, ok := q.cfg.Local(ctx, r); ok {
					if err := deliver(msg); err != nil {
						res[r] = result{state: deferred, diag: "local delivery: " + err.Error()}
					} else {
						res[r] = result{state: delivered, remote: "local"}
					}
					// Record local deliveries one by one: each is a
					// durable copy already.
					if !q.apply(lg, dir, e, res) {
						return false
					}
					res = map[string]result{}
					continue
				}
			}
			remote = append(remote, r)
		}
		if len(remote) > 0 {
			res = q.deliverDomain(ctx, lg, e, d, remote, msg)
			if !q.apply(lg, dir, e, res) {
				return false
			}
		}
		for _, r := range res {
			if r.state == deferred {
				lastErr = r.diag
			}
		}
	}

	if len(e.Failed) > 0 {
		if e.From == "" || e.DSN {
			lg.Warn("permanent failure of a null-sender message; no DSN", "rcpts", len(e.Failed))
			e.Failed = nil
		} else if err := q.sendDSN(ctx, e, msg); err != nil {
			lg.Error("DSN not sent", "err", err)
			if errors.Is(err, errNoKeys) {
				e.Failed = nil // can never be signed: give up rather than loop
			} else if lastErr == "" {
				lastErr = "DSN: " + err.Error()
			}
		} else {
			q.m.inc(q.m.dsns)
			lg.Info("DSN sent", "to", e.From, "failed", len(e.Failed))
			e.Failed = nil
		}
	}
	if len(e.Rcpts) == 0 && len(e.Failed) == 0 {
		if err := removeItem(dir, e.ID); err != nil {
			lg.Error("remove delivered message", "err", err)
			return false
		}
		lg.Info("done")
		return true
	}
	if lastErr == "" && ctx.Err() != nil {
		lastErr = "interrupted"
	}
	q.reschedule(lg, dir, e, lastErr)
	return false
}

// apply records results in e and writes it durably. It reports false if the
// envelope could not be written; the attempt then stops so no recipient is
// tried again before its delivery is on disk.
func (q *Queue) apply(lg interface {
	Error(string, ...any)
}, dir string, e *envelope, res map[string]result) bool {
	if len(res) == 0 {
		return true
	}
	changed := false
	keep := e.Rcpts[:0:0]
	for _, r := range e.Rcpts {
		x, ok := res[r]
		switch {
		case ok && x.state == delivered:
			changed = true
			q.m.inc(q.m.delivered)
		case ok && x.state == failed:
			changed = true
			q.m.inc(q.m.failed)
			e.Failed = append(e.Failed, failure{Rcpt: r, Status: x.status, Diag: clip(x.diag), Remote: clip(x.remote)})
		default:
			keep = append(keep, r)
		}
	}
	e.Rcpts = keep
	if !changed {
		return true
	}
	if len(e.Rcpts) == 0 && len(e.Failed) == 0 {
		// Every recipient has it: the item goes, which is its durable record.
		if err := removeItem(dir, e.ID); err != nil {
			lg.Error("remove delivered message", "err", err)
			return false
		}
		return true
	}
	if err := writeEnvelope(dir, e); err != nil {
		lg.Error("record delivery", "err", err)
		return false
	}
	return true
}

func (q *Queue) reschedule(lg interface {
	Error(string, ...any)
}, dir string, e *envelope, why string) {
	e.Attempts++
	b := q.cfg.Backoff[min(e.Attempts-1, len(q.cfg.Backoff)-1)]
	e.Next = q.cfg.Now().Add(b).UTC()
	e.LastErr = clip(why)
	q.m.inc(q.m.deferred)
	if err := writeEnvelope(dir, e); err != nil {
		lg.Error("record retry", "err", err)
	}
}

func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxDiagLen {
		s = s[:maxDiagLen]
	}
	return s
}

func all(rcpts []string, r result) map[string]result {
	m := make(map[string]result, len(rcpts))
	for _, x := range rcpts {
		m[x] = r
	}
	return m
}

// exchangers returns the hosts to try for domain in order, or a result that
// applies to every recipient when there is none to try.
func (q *Queue) exchangers(ctx context.Context, domain string) ([]string, *result) {
	mxs, err := q.cfg.Resolver.LookupMX(ctx, domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			// RFC 5321 section 5.1: no MX records, the domain is its own
			// exchanger (its A/AAAA records).
			return []string{domain}, nil
		}
		return nil, &result{state: deferred, diag: "dns; MX lookup for " + domain + ": " + err.Error()}
	}
	if len(mxs) == 0 {
		return []string{domain}, nil
	}
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		return nil, &result{state: failed, status: "5.1.10", diag: "x-nexus; domain " + domain + " accepts no mail (null MX, RFC 7505)"}
	}
	sorted := append([]*net.MX(nil), mxs...)
	rand.Shuffle(len(sorted), func(i, j int) { sorted[i], sorted[j] = sorted[j], sorted[i] })
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Pref < sorted[j].Pref })
	var hosts []string
	for _, mx := range sorted {
		if h := strings.TrimSuffix(mx.Host, "."); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}

// deliverDomain tries the exchangers of domain in preference order until one
// gives final answers for the recipients.
func (q *Queue) deliverDomain(ctx context.Context, lg interface {
	Warn(string, ...any)
}, e *envelope, domain string, rcpts []string, msg []byte) map[string]result {
	hosts, r := q.exchangers(ctx, domain)
	if r != nil {
		return all(rcpts, *r)
	}
	last := "no usable exchanger for " + domain
	for _, h := range hosts {
		addrs, err := q.cfg.Resolver.LookupHost(ctx, h)
		if err != nil {
			last = "dns; address lookup for " + h + ": " + err.Error()
			continue
		}
		for _, a := range addrs {
			if ctx.Err() != nil {
				return all(rcpts, result{state: deferred, diag: "interrupted"})
			}
			res, final, err := q.transaction(ctx, e, h, a, rcpts, msg)
			if final {
				return res
			}
			last = fmt.Sprintf("%s [%s]: %v", h, a, err)
			lg.Warn("exchanger unusable, trying next", "host", h, "addr", a, "err", err)
		}
	}
	return all(rcpts, result{state: deferred, diag: last})
}

// transaction runs one SMTP transaction with one exchanger address. final is
// false when nothing was decided and the next exchanger should be tried.
func (q *Queue) transaction(ctx context.Context, e *envelope, host, addr string, rcpts []string, msg []byte) (res map[string]result, final bool, err error) {
	target := net.JoinHostPort(addr, strconv.Itoa(q.cfg.Port))
	c, err := q.connect(ctx, host, target, q.cfg.TLS != nil)
	if err != nil && q.cfg.TLS != nil && !isSMTP(err) {
		// Opportunistic TLS: fall back to plain text on a new connection.
		c, err = q.connect(ctx, host, target, false)
	}
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	remote := "dns; " + host
	if err := c.Mail(e.From, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			return all(rcpts, smtpResult(se, remote)), true, nil
		}
		return nil, false, err
	}
	res = map[string]result{}
	var accepted []string
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, r)
		case errors.As(err, &se):
			res[r] = smtpResult(se, remote)
		default:
			// The connection broke before DATA: nothing was delivered.
			return nil, false, err
		}
	}
	if len(accepted) == 0 {
		c.Quit()
		return res, true, nil
	}
	w, err := c.Data()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			for _, r := range accepted {
				res[r] = smtpResult(se, remote)
			}
			return res, true, nil
		}
		return nil, false, err
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return nil, false, err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		// Either the server refused the message, or the reply to the
		// final dot was lost: then the message may have been accepted
		// and a retry can duplicate it (the unavoidable SMTP window).
		r := result{state: deferred, diag: "smtp; " + err.Error(), remote: remote}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			r = smtpResult(se, remote)
		}
		for _, x := range accepted {
			res[x] = r
		}
		return res, true, nil
	}
	q.addUsage(e.IMVU, int64(len(msg)))
	q.m.add(q.m.bytesOut, len(msg))
	for _, r := range accepted {
		res[r] = result{state: delivered, diag: "smtp; 250 " + resp.StatusText, remote: remote}
	}
	c.Quit()
	return res, true, nil
}

func isSMTP(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// connect dials target and says EHLO, with STARTTLS first if useTLS.
func (q *Queue) connect(ctx context.Context, host, target string, useTLS bool) (*smtp.Client, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	var c *smtp.Client
	if useTLS {
		cfg := q.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		c, err = smtp.NewClientStartTLS(conn, cfg)
		if err != nil {
			return nil, err
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = dataTimeout
	if err := c.Hello(q.cfg.Hostname); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// smtpResult turns a server reply into a recipient result: 4xx defers, 5xx
// fails permanently.
func smtpResult(se *smtp.SMTPError, remote string) result {
	st := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.EnhancedCode[0] == 0 || !validStatus(st) {
		st = fmt.Sprintf("%d.0.0", se.Code/100)
	}
	diag := fmt.Sprintf("smtp; %d %s %s", se.Code, st, se.Message)
	if se.Code >= 500 {
		if st[0] != '5' {
			st = "5.0.0"
		}
		return result{state: failed, status: st, diag: diag, remote: remote}
	}
	return result{state: deferred, diag: diag, remote: remote}
}
