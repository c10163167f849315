package mailq

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// signedHeaders are the header fields covered by our DKIM signatures (RFC
// 6376 section 5.4.1). Fields absent from the message are signed as absent,
// which stops them being added in transit.
var signedHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Id", "List-Unsubscribe",
}

// toCRLF rewrites bare LF (and bare CR) line endings to CRLF, the form the
// message is signed and transmitted in.
func toCRLF(msg []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(msg) + len(msg)/40)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		switch {
		case c == '\r' && i+1 < len(msg) && msg[i+1] == '\n':
			b.WriteString("\r\n")
			i++
		case c == '\r' || c == '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.Bytes()
}

func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// headerFromDomains returns the domains of the addresses in the message's
// From header.
func headerFromDomains(msg []byte) ([]string, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg)))
	h, err := r.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return nil, fmt.Errorf("mailq: message header: %w", err)
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		return nil, fmt.Errorf("mailq: message has %d From header fields, want 1", len(froms))
	}
	list, err := (&mail.AddressParser{}).ParseList(froms[0])
	if err != nil {
		return nil, fmt.Errorf("mailq: From header: %w", err)
	}
	var out []string
	for _, a := range list {
		d := domainOf(a.Address)
		if d == "" {
			return nil, fmt.Errorf("mailq: From address %q has no domain", a.Address)
		}
		out = appendUnique(out, d)
	}
	return out, nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// errNoKeys is wrapped by Enqueue when a sending domain has no DKIM keys.
var errNoKeys = errors.New("mailq: no DKIM keys for sending domain")

// sign prepends one DKIM-Signature per key of every domain in domains. A
// domain without keys is an error: the queue never sends as a domain it was
// not given keys for.
func sign(msg []byte, imvu string, domains []string, keys Keys) ([]byte, error) {
	var sigs []string
	for _, d := range domains {
		var ks []Key
		if keys != nil {
			ks = keys(imvu, d)
		}
		if len(ks) == 0 {
			return nil, fmt.Errorf("%w %q (imvu %s)", errNoKeys, d, imvu)
		}
		for _, k := range ks {
			if k.Signer == nil || k.Selector == "" {
				return nil, fmt.Errorf("mailq: DKIM key for %q has no signer or selector", d)
			}
			s, err := dkim.NewSigner(&dkim.SignOptions{
				Domain: d, Selector: k.Selector, Signer: k.Signer,
				HeaderCanonicalization: dkim.CanonicalizationRelaxed,
				BodyCanonicalization:   dkim.CanonicalizationRelaxed,
				HeaderKeys:             signedHeaders,
			})
			if err != nil {
				return nil, fmt.Errorf("mailq: DKIM %s._domainkey.%s: %w", k.Selector, d, err)
			}
			if _, err := s.Write(msg); err != nil {
				s.Close()
				return nil, err
			}
			if err := s.Close(); err != nil {
				return nil, fmt.Errorf("mailq: DKIM %s._domainkey.%s: %w", k.Selector, d, err)
			}
			sigs = append(sigs, s.Signature())
		}
	}
	var b bytes.Buffer
	for _, s := range sigs {
		b.WriteString(s)
	}
	b.Write(msg)
	return b.Bytes(), nil
}
