package smtpd

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/mail"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
)

// action is what the inbound checks decide for a message.
type action int

const (
	actAccept action = iota
	actQuarantine
	actReject    // 550 5.7.1
	actTempFail  // 451 4.7.0
	actMalformed // 550 5.6.0 (no single From address)
)

// verdict is the outcome of the inbound checks on one message.
type verdict struct {
	action action
	reason string
	spf    spf.Result
	dkim   []authres.ResultValue
	dmarc  authres.ResultValue
	// authResults is the Authentication-Results field body (without the
	// field name), to prepend.
	authResults string
}

// checkInput is what the checks know about one message.
type checkInput struct {
	ip       net.IP
	helo     string
	mailFrom string // reverse-path, "" for the null sender
	msg      []byte
}

// maxDKIMSignatures bounds the signatures verified per message (each may
// cost a DNS lookup and an RSA verification).
const maxDKIMSignatures = 5

// resolverAdapter gives spf the Checker's lookups.
type resolverAdapter struct{ c *Checker }

func (r resolverAdapter) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.c.LookupTXT(ctx, name)
}

func (r resolverAdapter) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.c.LookupMX(ctx, name)
}

func (r resolverAdapter) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := r.c.LookupIP(ctx, host)
	out := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: ip})
	}
	return out, err
}

func (r resolverAdapter) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if r.c.LookupAddr == nil {
		return nil, &net.DNSError{Err: "no PTR lookups", Name: addr, IsNotFound: true}
	}
	return r.c.LookupAddr(ctx, addr)
}

// orgDomain is the organisational domain of d, simplified to its last two
// labels (no Public Suffix List: "a.b.co.uk" gives "co.uk").
func orgDomain(d string) string {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	labels := strings.Split(d, ".")
	if len(labels) <= 2 {
		return d
	}
	return strings.Join(labels[len(labels)-2:], ".")
}

func aligned(id, from string, mode dmarc.AlignmentMode) bool {
	id = strings.TrimSuffix(strings.ToLower(id), ".")
	from = strings.TrimSuffix(strings.ToLower(from), ".")
	if id == "" || from == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return id == from
	}
	return orgDomain(id) == orgDomain(from)
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

// run performs SPF, DKIM and DMARC on in and returns the verdict.
func (c *Checker) run(ctx context.Context, hostname string, in checkInput) verdict {
	var v verdict
	var results []authres.Result

	// SPF on the reverse-path (or postmaster@HELO for the null sender).
	sender := in.mailFrom
	if sender == "" {
		sender = "postmaster@" + in.helo
	}
	spfDomain := domainOf(sender)
	v.spf, _ = spf.CheckHostWithSender(in.ip, in.helo, sender,
		spf.WithContext(ctx), spf.WithResolver(resolverAdapter{c}))
	results = append(results, &authres.SPFResult{Value: authres.ResultValue(v.spf), From: clean(in.mailFrom), Helo: clean(in.helo)})

	// DKIM.
	var dkimPass []string
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(in.msg), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return c.LookupTXT(ctx, name) },
		MaxVerifications: maxDKIMSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		v.dkim = append(v.dkim, authres.ResultPermError)
		results = append(results, &authres.DKIMResult{Value: authres.ResultPermError, Reason: "malformed message"})
	}
	for _, vf := range verifs {
		val := authres.ResultValue(authres.ResultPass)
		reason := ""
		switch {
		case vf.Err == nil:
			dkimPass = append(dkimPass, vf.Domain)
		case dkim.IsTempFail(vf.Err):
			val, reason = authres.ResultTempError, vf.Err.Error()
		case dkim.IsPermFail(vf.Err):
			val, reason = authres.ResultPermError, vf.Err.Error()
		default:
			val, reason = authres.ResultFail, vf.Err.Error()
		}
		v.dkim = append(v.dkim, val)
		results = append(results, &authres.DKIMResult{Value: val, Reason: clean(reason), Domain: clean(vf.Domain), Identifier: clean(vf.Identifier)})
	}
	if len(verifs) == 0 && err == nil {
		v.dkim = append(v.dkim, authres.ResultNone)
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}

	// DMARC on the header From domain.
	fromDomain, ferr := headerFromDomain(in.msg)
	if ferr != nil {
		v.dmarc = authres.ResultPermError
		v.action, v.reason = actMalformed, ferr.Error()
		results = append(results, &authres.DMARCResult{Value: v.dmarc, Reason: clean(ferr.Error())})
		v.authResults = formatAuthResults(hostname, results)
		return v
	}
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return c.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(fromDomain, opts)
	policy := dmarc.Policy("")
	if err == nil {
		policy = rec.Policy
	} else if errors.Is(err, dmarc.ErrNoPolicy) && orgDomain(fromDomain) != fromDomain {
		rec, err = dmarc.LookupWithOptions(orgDomain(fromDomain), opts)
		if err == nil {
			policy = rec.Policy
			if rec.SubdomainPolicy != "" {
				policy = rec.SubdomainPolicy
			}
		}
	}
	switch {
	case err != nil && errors.Is(err, dmarc.ErrNoPolicy):
		v.dmarc = authres.ResultNone
	case err != nil && dmarc.IsTempFail(err):
		v.dmarc = authres.ResultTempError
		v.action, v.reason = actTempFail, "DMARC policy lookup failed, try again later"
	case err != nil:
		v.dmarc = authres.ResultPermError
	default:
		pass := v.spf == spf.Pass && aligned(spfDomain, fromDomain, rec.SPFAlignment)
		for _, d := range dkimPass {
			pass = pass || aligned(d, fromDomain, rec.DKIMAlignment)
		}
		if pass {
			v.dmarc = authres.ResultPass
			break
		}
		v.dmarc = authres.ResultFail
		if rec.Percent != nil && *rec.Percent < 100 && rand.IntN(100) >= *rec.Percent {
			// Outside the sampled percentage: apply the next weaker policy
			// (RFC 7489 section 6.6.4).
			switch policy {
			case dmarc.PolicyReject:
				policy = dmarc.PolicyQuarantine
			case dmarc.PolicyQuarantine:
				policy = dmarc.PolicyNone
			}
		}
		switch policy {
		case dmarc.PolicyReject:
			v.action, v.reason = actReject, "DMARC policy of "+fromDomain+" rejects this message"
		case dmarc.PolicyQuarantine:
			v.action, v.reason = actQuarantine, "DMARC quarantine"
		}
	}
	results = append(results, &authres.DMARCResult{Value: v.dmarc, From: fromDomain})
	v.authResults = formatAuthResults(hostname, results)
	return v
}

// formatAuthResults formats the field body, one method per line.
func formatAuthResults(hostname string, results []authres.Result) string {
	return strings.ReplaceAll(authres.Format(hostname, results), "; ", ";\r\n\t")
}

// clean keeps attacker-supplied text from breaking the header it goes in.
func clean(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == ';' {
			return -1
		}
		return r
	}, s)
}

// field is one header field, raw (with its continuation lines and line ends).
type field struct {
	name string // as written
	raw  []byte
}

// splitHeader splits msg into its header fields and the offset of the
// empty line that ends the header (len(msg) without one). Lines that are not
// "name:" fields (a leading continuation line, garbage) become fields with an
// empty name, so that stripping and From extraction see the whole header a
// lenient reader would.
func splitHeader(msg []byte) (fields []field, body int) {
	off := 0
	for off < len(msg) {
		end := bytes.IndexByte(msg[off:], '\n')
		if end < 0 {
			end = len(msg)
		} else {
			end += off + 1
		}
		line := msg[off:end]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			return fields, off
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.raw = msg[off-len(f.raw) : end]
			off = end
			continue
		}
		name := ""
		if colon := bytes.IndexByte(trimmed, ':'); colon > 0 && !bytes.ContainsAny(trimmed[:colon], " \t") {
			name = string(trimmed[:colon])
		}
		fields = append(fields, field{name: name, raw: line})
		off = end
	}
	return fields, off
}

// fieldValue is the unfolded value of f.
func fieldValue(f field) string {
	v := string(f.raw)
	if f.name != "" {
		v = v[len(f.name)+1:]
	}
	v = strings.ReplaceAll(v, "\r\n", "")
	v = strings.ReplaceAll(v, "\n", "")
	return strings.TrimSpace(v)
}

// headerAddress returns the address of the named field. It fails unless the
// field occurs exactly once with exactly one address, or (when not required)
// not at all, in which case it returns "".
func headerAddress(fields []field, name string, required bool) (string, error) {
	var found []field
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			found = append(found, f)
		}
	}
	if len(found) == 0 && !required {
		return "", nil
	}
	if len(found) != 1 {
		return "", errors.New("message must have exactly one " + name + " header field")
	}
	val := fieldValue(found[0])
	list, err := mail.ParseAddressList(val)
	if err == nil {
		if len(list) != 1 {
			return "", errors.New(name + " header must name exactly one address")
		}
		return list[0].Address, nil
	}
	// net/mail is stricter than the mail in the wild: fall back to the one
	// "@" in the field.
	if strings.Count(val, "@") != 1 {
		return "", errors.New("unparsable " + name + " header")
	}
	if i, j := strings.LastIndexByte(val, '<'), strings.LastIndexByte(val, '>'); i >= 0 && j > i {
		val = val[i+1 : j]
	}
	at := strings.IndexByte(val, '@')
	local := val[:at]
	if k := strings.LastIndexAny(local, " \t\"<,:"); k >= 0 {
		local = local[k+1:]
	}
	dom := val[at+1:]
	if k := strings.IndexAny(dom, " \t>,;()\""); k >= 0 {
		dom = dom[:k]
	}
	if local == "" || dom == "" {
		return "", errors.New("unparsable " + name + " header")
	}
	return local + "@" + dom, nil
}

// headerFromDomain is the domain of the single header From address.
func headerFromDomain(msg []byte) (string, error) {
	fields, _ := splitHeader(msg)
	addr, err := headerAddress(fields, "From", true)
	if err != nil {
		return "", err
	}
	d := domainOf(addr)
	if d == "" {
		return "", errors.New("the From address has no domain")
	}
	return d, nil
}

// stripHeaders removes fields a sender must not be able to forge: our own
// Authentication-Results (RFC 8601 section 5) and X-Nexus-Quarantine.
func stripHeaders(msg []byte, hostname string) []byte {
	fields, body := splitHeader(msg)
	drop := false
	for _, f := range fields {
		if forged(f, hostname) {
			drop = true
			break
		}
	}
	if !drop {
		return msg
	}
	out := make([]byte, 0, len(msg))
	for _, f := range fields {
		if !forged(f, hostname) {
			out = append(out, f.raw...)
		}
	}
	return append(out, msg[body:]...)
}

func forged(f field, hostname string) bool {
	switch {
	case strings.EqualFold(f.name, "X-Nexus-Quarantine"):
		return true
	case strings.EqualFold(f.name, "Authentication-Results"):
		v := fieldValue(f)
		if i := strings.IndexByte(v, ';'); i >= 0 {
			v = v[:i]
		}
		if fs := strings.Fields(v); len(fs) > 0 {
			return strings.EqualFold(strings.TrimSuffix(fs[0], "."), strings.TrimSuffix(hostname, "."))
		}
		return true
	}
	return false
}
