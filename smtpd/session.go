package smtpd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func smtpErr(code int, ec smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

var (
	errRateLimited   = smtpErr(451, smtp.EnhancedCode{4, 7, 0}, "Rate limit exceeded, try again later")
	errUnknownUser   = smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user here")
	errRelayDenied   = smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied")
	errTempLocal     = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local error, try again later")
	errAuthRequired  = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errNotOwner      = smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Sender address not owned by the authenticated user")
	errHeaderFrom    = smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Header From/Sender must be the authenticated user's address")
	errBadAddress    = smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	errAlreadyAuthed = smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Already authenticated")
	errTooManyAuth   = smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts")
)

// opTimeout bounds one call into the daemon (Router, Deliverer, Relay,
// Authenticator) or one run of the inbound checks.
const opTimeout = 2 * time.Minute

// maxAuthFailures per connection; the next AUTH closes it.
const maxAuthFailures = 3

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func remoteIP(c *smtp.Conn) net.IP {
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

func isTLS(c *smtp.Conn) bool {
	_, ok := c.TLSConnectionState()
	return ok
}

// sameAddress compares addresses case-insensitively (local parts of Nexus
// mailboxes are case-insensitive).
func sameAddress(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// readMessage reads DATA; go-smtp's reader enforces MaxMessageBytes (552).
func readMessage(r io.Reader) ([]byte, error) {
	msg, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, err
	}
	return msg, nil
}

// ----- MX -----

type mxSession struct {
	s     *Server
	c     *smtp.Conn
	from  string
	mail  bool
	rcpts []Mailbox
}

func (s *Server) newMXSession(c *smtp.Conn) (smtp.Session, error) {
	return &mxSession{s: s, c: c}, nil
}

func (m *mxSession) Reset() { m.from, m.mail, m.rcpts = "", false, nil }

func (m *mxSession) Logout() error { return nil }

func (m *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	m.from, m.mail, m.rcpts = from, true, nil
	return nil
}

func (m *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(m.s.ctx, opTimeout)
	defer cancel()
	mb, err := m.s.cfg.Router.Local(ctx, to)
	switch {
	case errors.Is(err, ErrNotLocal):
		return errRelayDenied
	case errors.Is(err, ErrNoMailbox):
		return errUnknownUser
	case err != nil:
		m.s.log.Warn("smtpd: router", "rcpt", to, "err", err)
		return errTempLocal
	}
	if !m.s.cfg.Allow(mb.IMVU) {
		return errRateLimited
	}
	for _, r := range m.rcpts {
		if sameAddress(r.Address, mb.Address) {
			return nil // one copy per mailbox
		}
	}
	m.rcpts = append(m.rcpts, mb)
	return nil
}

func (m *mxSession) Data(r io.Reader) error {
	msg, err := readMessage(r)
	if err != nil {
		m.s.metrics.messages.WithLabelValues("mx", "too_large").Inc()
		return err
	}
	if len(m.rcpts) == 0 { // go-smtp already refuses DATA without RCPT
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	}
	ctx, cancel := context.WithTimeout(m.s.ctx, opTimeout)
	defer cancel()
	out, v := m.s.inbound(ctx, checkInput{ip: remoteIP(m.c), helo: m.c.Hostname(), mailFrom: m.from, msg: msg}, isTLS(m.c), m.rcpts)
	switch v.action {
	case actReject:
		m.s.metrics.messages.WithLabelValues("mx", "dmarc_reject").Inc()
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, v.reason)
	case actTempFail:
		m.s.metrics.messages.WithLabelValues("mx", "tempfail").Inc()
		return smtpErr(451, smtp.EnhancedCode{4, 7, 0}, v.reason)
	case actMalformed:
		m.s.metrics.messages.WithLabelValues("mx", "malformed").Inc()
		return smtpErr(550, smtp.EnhancedCode{5, 6, 0}, v.reason)
	}
	for _, mb := range m.rcpts {
		if err := m.s.cfg.Deliverer.Deliver(ctx, mb, out); err != nil {
			// Earlier recipients may have it already: the client retries and
			// they may get a second copy (a plain SMTP reply is all-or-nothing).
			m.s.log.Error("smtpd: deliver", "mailbox", mb.Address, "err", err)
			m.s.metrics.messages.WithLabelValues("mx", "deliver_error").Inc()
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				return se // the Deliverer's own answer, e.g. 552 5.2.2 mailbox full
			}
			return errTempLocal
		}
		m.s.count(mb.IMVU, true, len(out))
	}
	result := "delivered"
	if v.action == actQuarantine {
		result = "quarantined"
	}
	m.s.metrics.messages.WithLabelValues("mx", result).Inc()
	m.s.metrics.bytes.WithLabelValues("mx").Add(float64(len(msg)))
	return nil
}

// inbound runs the checks and returns the message to store: the trace
// fields prepended, forgeable fields removed.
func (s *Server) inbound(ctx context.Context, in checkInput, tls bool, rcpts []Mailbox) ([]byte, verdict) {
	v := s.cfg.Checker.run(ctx, s.cfg.Hostname, in)
	s.metrics.checks.WithLabelValues("spf", string(v.spf)).Inc()
	for _, d := range v.dkim {
		s.metrics.checks.WithLabelValues("dkim", string(d)).Inc()
	}
	s.metrics.checks.WithLabelValues("dmarc", string(v.dmarc)).Inc()
	if v.action != actAccept && v.action != actQuarantine {
		return nil, v
	}
	with := "ESMTP"
	if tls {
		with = "ESMTPS"
	}
	forRcpt := ""
	if len(rcpts) == 1 {
		forRcpt = "\r\n\tfor <" + clean(rcpts[0].Address) + ">"
	}
	ip := "unknown"
	if in.ip != nil {
		ip = in.ip.String()
	}
	var b strings.Builder
	if v.action == actQuarantine {
		b.WriteString("X-Nexus-Quarantine: dmarc\r\n")
	}
	b.WriteString("Authentication-Results: " + v.authResults + "\r\n")
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s with %s id %s%s;\r\n\t%s\r\n",
		cleanToken(in.helo), ip, s.cfg.Hostname, with, newID(), forRcpt, time.Now().UTC().Format(time.RFC1123Z))
	body := stripHeaders(in.msg, s.cfg.Hostname)
	out := make([]byte, 0, b.Len()+len(body))
	out = append(out, b.String()...)
	out = append(out, body...)
	return out, v
}

func cleanToken(s string) string {
	s = clean(s)
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '(' || r == ')' || r > 0x7e {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "unknown"
	}
	return s
}

// ----- submission -----

type subSession struct {
	s     *Server
	c     *smtp.Conn
	user  *Mailbox
	fails int
	from  string
	rcpts []string
}

func (s *Server) newSubmissionSession(c *smtp.Conn) (smtp.Session, error) {
	return &subSession{s: s, c: c}, nil
}

func (u *subSession) Reset() { u.from, u.rcpts = "", nil }

func (u *subSession) Logout() error { return nil }

func (u *subSession) AuthMechanisms() []string {
	if !isTLS(u.c) {
		return nil
	}
	return []string{sasl.Plain}
}

func (u *subSession) Auth(mech string) (sasl.Server, error) {
	if !isTLS(u.c) { // go-smtp refuses first (523); keep the rule here too
		return nil, smtpErr(523, smtp.EnhancedCode{5, 7, 10}, "TLS is required")
	}
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	if u.user != nil {
		return nil, errAlreadyAuthed
	}
	if u.fails >= maxAuthFailures {
		u.c.Close()
		return nil, errTooManyAuth
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			u.fails++
			u.s.metrics.auth.WithLabelValues("fail").Inc()
			return smtp.ErrAuthFailed
		}
		ctx, cancel := context.WithTimeout(u.s.ctx, opTimeout)
		defer cancel()
		mb, err := u.s.cfg.Auth.Authenticate(ctx, username, password)
		if err != nil || mb.Address == "" {
			u.fails++
			u.s.metrics.auth.WithLabelValues("fail").Inc()
			return smtp.ErrAuthFailed
		}
		u.s.metrics.auth.WithLabelValues("ok").Inc()
		u.user = &mb
		return nil
	}), nil
}

func (u *subSession) Mail(from string, _ *smtp.MailOptions) error {
	if u.user == nil {
		return errAuthRequired
	}
	if !u.s.cfg.Allow(u.user.IMVU) {
		return errRateLimited
	}
	if !sameAddress(from, u.user.Address) {
		return errNotOwner
	}
	u.from, u.rcpts = from, nil
	return nil
}

func (u *subSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if u.user == nil {
		return errAuthRequired
	}
	if at := strings.LastIndexByte(to, '@'); at <= 0 || at == len(to)-1 {
		return errBadAddress
	}
	u.rcpts = append(u.rcpts, to)
	return nil
}

func (u *subSession) Data(r io.Reader) error {
	msg, err := readMessage(r)
	if err != nil {
		u.s.metrics.messages.WithLabelValues("submission", "too_large").Inc()
		return err
	}
	if u.user == nil {
		return errAuthRequired
	}
	fields, _ := splitHeader(msg)
	from, err := headerAddress(fields, "From", true)
	if err != nil || !sameAddress(from, u.user.Address) {
		u.s.metrics.messages.WithLabelValues("submission", "not_owner").Inc()
		return errHeaderFrom
	}
	if sender, err := headerAddress(fields, "Sender", false); err != nil || (sender != "" && !sameAddress(sender, u.user.Address)) {
		u.s.metrics.messages.WithLabelValues("submission", "not_owner").Inc()
		return errHeaderFrom
	}
	// Trace field without the client's address (submission clients are
	// users; their IP stays out of the mail they send).
	received := fmt.Sprintf("Received: by %s with ESMTPSA id %s;\r\n\t%s\r\n",
		u.s.cfg.Hostname, newID(), time.Now().UTC().Format(time.RFC1123Z))
	out := append([]byte(received), msg...)
	ctx, cancel := context.WithTimeout(u.s.ctx, opTimeout)
	defer cancel()
	if err := u.s.cfg.Relay.Submit(ctx, *u.user, u.from, append([]string(nil), u.rcpts...), out); err != nil {
		u.s.metrics.messages.WithLabelValues("submission", "relay_error").Inc()
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		u.s.log.Error("smtpd: relay submit", "user", u.user.Address, "err", err)
		return errTempLocal
	}
	u.s.count(u.user.IMVU, false, len(out))
	u.s.metrics.messages.WithLabelValues("submission", "submitted").Inc()
	u.s.metrics.bytes.WithLabelValues("submission").Add(float64(len(msg)))
	return nil
}
