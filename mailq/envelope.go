package mailq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// envelopeVersion is the on-disk format version of an envelope file.
const envelopeVersion = 1

// Limits enforced on envelopes read from disk, so a damaged or hostile file
// cannot make the worker allocate without bound.
const (
	maxEnvelopeBytes = 1 << 20
	maxRecipients    = 1000
	maxAddressLen    = 320
	maxDiagLen       = 1000
)

// envelope is the JSON file "<id>.json" that sits next to "<id>.msg" in an
// IMVU's queue folder. Its presence is what makes a message queued; the
// message file alone is an unfinished Enqueue.
type envelope struct {
	V    int    `json:"v"`
	ID   string `json:"id"`
	IMVU string `json:"imvu"`
	// From is the envelope sender (MAIL FROM); "" is the null sender.
	From string `json:"from"`
	// Rcpts are the recipients not yet delivered and not permanently failed.
	Rcpts []string `json:"rcpts"`
	// Failed are permanent failures not yet reported by a DSN.
	Failed   []failure `json:"failed,omitempty"`
	Created  time.Time `json:"created"`
	Next     time.Time `json:"next"`
	Attempts int       `json:"attempts"`
	LastErr  string    `json:"last_error,omitempty"`
	Size     int64     `json:"size"`
	// DSN marks a delivery status notification made by this queue: it is
	// never itself bounced.
	DSN bool `json:"dsn,omitempty"`
}

// failure is one recipient that cannot be delivered.
type failure struct {
	Rcpt   string `json:"rcpt"`
	Status string `json:"status"` // RFC 3463 enhanced status, e.g. "5.1.1"
	Diag   string `json:"diag"`   // e.g. "smtp; 550 5.1.1 no such user"
	Remote string `json:"remote,omitempty"`
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validAddress accepts a bare SMTP mailbox local@domain without characters
// that could break the SMTP command line or a header.
func validAddress(a string) bool {
	if a == "" || len(a) > maxAddressLen {
		return false
	}
	if strings.ContainsAny(a, "\r\n\x00<> \t") {
		return false
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return false
	}
	return validDomain(a[at+1:])
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("()<>[]\\,;:\"@/", c) >= 0 {
			return false
		}
	}
	return true
}

func validText(s string, max int) bool {
	return len(s) <= max && !strings.ContainsAny(s, "\r\n\x00")
}

// validate checks every field of an envelope.
func (e *envelope) validate() error {
	switch {
	case e.V != envelopeVersion:
		return fmt.Errorf("mailq: envelope version %d", e.V)
	case !validID(e.ID):
		return errors.New("mailq: envelope id invalid")
	case e.IMVU == "" || !validText(e.IMVU, 256) || strings.ContainsAny(e.IMVU, "/\\"):
		return errors.New("mailq: envelope imvu invalid")
	case e.From != "" && !validAddress(e.From):
		return errors.New("mailq: envelope sender invalid")
	case len(e.Rcpts)+len(e.Failed) == 0:
		return errors.New("mailq: envelope has no recipients")
	case len(e.Rcpts) > maxRecipients || len(e.Failed) > maxRecipients:
		return errors.New("mailq: envelope has too many recipients")
	case e.Created.IsZero():
		return errors.New("mailq: envelope has no creation time")
	case e.Attempts < 0 || e.Size < 0:
		return errors.New("mailq: envelope counters negative")
	case !validText(e.LastErr, maxDiagLen):
		return errors.New("mailq: envelope last error invalid")
	}
	for _, r := range e.Rcpts {
		if !validAddress(r) {
			return fmt.Errorf("mailq: envelope recipient %q invalid", r)
		}
	}
	for _, f := range e.Failed {
		if !validAddress(f.Rcpt) || !validStatus(f.Status) || !validText(f.Diag, maxDiagLen) || !validText(f.Remote, 256) {
			return errors.New("mailq: envelope failure invalid")
		}
	}
	return nil
}

// validStatus accepts an RFC 3463 status code class.subject.detail.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// parseEnvelope decodes and validates an envelope file. Unknown fields are
// rejected so a file written by a newer format is not half-understood.
func parseEnvelope(b []byte) (*envelope, error) {
	if len(b) > maxEnvelopeBytes {
		return nil, errors.New("mailq: envelope too large")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e envelope
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("mailq: envelope: %w", err)
	}
	if dec.More() {
		return nil, errors.New("mailq: envelope: trailing data")
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *envelope) marshal() ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(e, "", "\t")
}

func (e *envelope) clone() *envelope {
	c := *e
	c.Rcpts = append([]string(nil), e.Rcpts...)
	c.Failed = append([]failure(nil), e.Failed...)
	return &c
}
