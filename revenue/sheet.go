package revenue

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxResourceName is the longest allowed resource name, in bytes.
const MaxResourceName = 64

// MaxVersion is the longest allowed price sheet version, in bytes.
const MaxVersion = 256

// ErrBadSheet is wrapped by every price sheet validation error.
var ErrBadSheet = errors.New("revenue: invalid price sheet")

// PriceSheet is the price per unit of each metered resource, as agreed
// between the platform and an IMVU. Resource names are [a-z0-9_]{1,64}, for
// example "cpu_ms", "mem_mib_s", "io_bytes", "net_bytes", "dns_queries",
// "mail_messages", "mail_bytes".
type PriceSheet struct {
	Version string            `json:"version"`
	Prices  map[string]Amount `json:"prices"`
}

// Validate reports whether the sheet can be used for pricing: at least one
// resource, every name matching [a-z0-9_]{1,64}, every price >= 0, and a
// version that is valid UTF-8 of at most MaxVersion bytes. Errors wrap
// ErrBadSheet and name the offending resource; with several problems the
// first resource in sorted order is reported.
func (p PriceSheet) Validate() error {
	if len(p.Version) > MaxVersion {
		return fmt.Errorf("%w: version is %d bytes, at most %d allowed", ErrBadSheet, len(p.Version), MaxVersion)
	}
	if !utf8.ValidString(p.Version) {
		return fmt.Errorf("%w: version %q is not valid UTF-8", ErrBadSheet, p.Version)
	}
	if len(p.Prices) == 0 {
		return fmt.Errorf("%w: version %q prices no resources", ErrBadSheet, p.Version)
	}
	for _, name := range p.resources() {
		if !validResource(name) {
			return fmt.Errorf("%w: resource name %q is not [a-z0-9_]{1,%d}", ErrBadSheet, clip(name), MaxResourceName)
		}
		if price := p.Prices[name]; price < 0 {
			return fmt.Errorf("%w: resource %q has negative price %d", ErrBadSheet, name, price)
		}
	}
	return nil
}

func (p PriceSheet) resources() []string {
	names := make([]string, 0, len(p.Prices))
	for name := range p.Prices {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func validResource(s string) bool {
	if len(s) == 0 || len(s) > MaxResourceName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Canonical returns the sheet's deterministic encoding: JSON with sorted
// keys, no insignificant white space, prices as integer nanocredits, e.g.
//
//	{"prices":{"cpu_ms":20,"mem_mib_s":1},"version":"v1"}
//
// Strings escape only '"', '\\' and control characters (as \u00XX). The
// encoding is what Hash signs, so it is defined here rather than left to a
// JSON library. It is only meaningful for a valid sheet (invalid UTF-8 in the
// version is written as U+FFFD). A nil and an empty price map encode alike.
func (p PriceSheet) Canonical() []byte {
	names := p.resources()
	n := len(`{"prices":{},"version":""}`) + len(p.Version)
	for _, name := range names {
		n += len(name) + 24
	}
	b := make([]byte, 0, n)
	b = append(b, `{"prices":{`...)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(p.Prices[name]), 10)
	}
	b = append(b, `},"version":`...)
	b = appendJSONString(b, p.Version)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s { // invalid UTF-8 yields utf8.RuneError
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// Hash returns the SHA-256 of the sheet's Canonical encoding: the value an
// IMVU co-signs and a Statement records.
func (p PriceSheet) Hash() [32]byte {
	return sha256.Sum256(p.Canonical())
}

// DefaultPriceSheet returns the platform's default prices, in nanocredits
// per unit. Each call returns a fresh map.
func DefaultPriceSheet() PriceSheet {
	return PriceSheet{
		Version: "default-1",
		Prices: map[string]Amount{
			"cpu_ms":    20, // 0.072 credits per CPU-hour
			"mem_mib_s": 1,  // 0.0036864 credits per GiB-hour
			"io_bytes":  1,  // 1 credit per 10^9 bytes of disk I/O
			"net_bytes": 2,  // 2 credits per 10^9 bytes of traffic
			// Per route class and direction, as the net meter reports them:
			// traffic inside the IMVU is free, a granted path costs half of
			// what leaves for the world.
			"net_bytes_in_private":     0,
			"net_bytes_out_private":    0,
			"net_bytes_in_restricted":  1,
			"net_bytes_out_restricted": 1,
			"net_bytes_in_public":      2,
			"net_bytes_out_public":     2,
			"dns_queries":              400,     // 0.4 credits per million queries
			"dns_lookups":              400,     // 0.4 credits per million recursive lookups
			"mail_messages":            100_000, // 0.1 credits per thousand messages
			"mail_bytes":               1,       // 1 credit per 10^9 bytes of mail
		},
	}
}

// clip shortens untrusted input quoted in error messages.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
