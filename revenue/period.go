package revenue

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"
)

// ErrBadPeriod is wrapped by every error from Calendar.Parse.
var ErrBadPeriod = errors.New("revenue: bad period")

// Calendar divides time into billing periods. The zero Calendar uses UTC
// calendar months. A positive Length uses back-to-back intervals of that
// length counted from the Unix epoch (1970-01-01T00:00:00Z), for tests and
// demos. A negative Length is invalid: Of and Next panic on it, Parse and
// Validate report it.
type Calendar struct {
	Length time.Duration
}

// Validate reports whether the calendar is usable.
func (c Calendar) Validate() error {
	if c.Length < 0 {
		return fmt.Errorf("revenue: calendar length %v is negative", c.Length)
	}
	return nil
}

// Period is the half-open time interval [Start, End), in UTC.
type Period struct {
	Start, End time.Time
}

// Contains reports whether t lies in [p.Start, p.End).
func (p Period) Contains(t time.Time) bool {
	return !t.Before(p.Start) && t.Before(p.End)
}

// Of returns the period containing t.
func (c Calendar) Of(t time.Time) Period {
	switch {
	case c.Length == 0:
		return monthOf(t)
	case c.Length > 0:
		return fixedOf(t, c.Length)
	}
	panic(c.Validate())
}

// Next returns the period that follows p: the one containing p.End.
func (c Calendar) Next(p Period) Period {
	return c.Of(p.End)
}

func monthOf(t time.Time) Period {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return Period{Start: start, End: start.AddDate(0, 1, 0)}
}

const (
	giga        = 1_000_000_000 // nanoseconds per second
	fastSeconds = 4_000_000_000 // fixedOf's int64 range: about ±126 years
)

// fixedOf returns [floor(n/L)*L, +L) where n is t in nanoseconds since the
// epoch. Within about ±126 years of 1970 int64 suffices; beyond that it
// falls back to exact big-integer arithmetic.
func fixedOf(t time.Time, length time.Duration) Period {
	l := int64(length)
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	var start time.Time
	if -fastSeconds <= sec && sec <= fastSeconds && sec*giga+nsec >= math.MinInt64+l {
		n := sec*giga + nsec // |n| < 4_000_000_001 * 10^9 < MaxInt64
		m := n % l
		if m < 0 {
			m += l
		}
		start = time.Unix(0, n-m) // n-m > n-l >= MinInt64
	} else {
		start = fixedStartBig(sec, nsec, l)
	}
	start = start.UTC()
	return Period{Start: start, End: start.Add(length)}
}

func fixedStartBig(sec, nsec, l int64) time.Time {
	g := big.NewInt(giga)
	n := new(big.Int).Mul(big.NewInt(sec), g)
	n.Add(n, big.NewInt(nsec))
	bl := big.NewInt(l)
	n.Div(n, bl) // Euclidean division: floor, as l > 0
	n.Mul(n, bl)
	s, ns := new(big.Int).DivMod(n, g, new(big.Int))
	// s >= sec - l/10^9 - 1 > MinInt64 for every time.Time in practice.
	return time.Unix(s.Int64(), ns.Int64())
}

// isMonth reports whether p is exactly one UTC calendar month.
func (p Period) isMonth() bool {
	s := p.Start.UTC()
	return s.Day() == 1 && s.Hour() == 0 && s.Minute() == 0 && s.Second() == 0 &&
		s.Nanosecond() == 0 && p.End.Equal(s.AddDate(0, 1, 0))
}

const monthLayout = "2006-01"

// String names the period: "2026-11" for a UTC calendar month, otherwise
// the RFC 3339 start time in UTC ("2026-11-05T10:00:00Z", with fractional
// seconds if any). The same Calendar's Parse reverses it for years 0000 to
// 9999.
func (p Period) String() string {
	if p.isMonth() {
		return p.Start.UTC().Format(monthLayout)
	}
	return p.Start.UTC().Format(time.RFC3339Nano)
}

// Parse returns the period of this calendar that String names as s. Only
// the canonical name is accepted, so distinct strings never name the same
// period. Errors wrap ErrBadPeriod and quote the input.
func (c Calendar) Parse(s string) (Period, error) {
	if err := c.Validate(); err != nil {
		return Period{}, fmt.Errorf("%w %q: %w", ErrBadPeriod, clip(s), err)
	}
	month, isMonth := parseMonth(s)
	if c.Length == 0 {
		if !isMonth {
			return Period{}, fmt.Errorf("%w %q: want a UTC calendar month as YYYY-MM, e.g. 2026-11", ErrBadPeriod, clip(s))
		}
		return month, nil
	}
	if isMonth {
		if p := c.Of(month.Start); p.Start.Equal(month.Start) && p.End.Equal(month.End) {
			return p, nil // a fixed period that happens to be a calendar month
		}
		return Period{}, fmt.Errorf("%w %q: a calendar month, but this calendar has fixed %v periods; want the RFC 3339 UTC start time of one",
			ErrBadPeriod, s, c.Length)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Period{}, fmt.Errorf("%w %q: want the RFC 3339 UTC start time of a %v period, e.g. %s",
			ErrBadPeriod, clip(s), c.Length, c.Of(time.Unix(0, 0)).Start.Format(time.RFC3339Nano))
	}
	p := c.Of(t)
	if !p.Start.Equal(t) {
		return Period{}, fmt.Errorf("%w %q: not the start of a %v period; the period containing it is %s",
			ErrBadPeriod, s, c.Length, p)
	}
	if name := p.String(); name != s {
		return Period{}, fmt.Errorf("%w %q: not in canonical form, want %q", ErrBadPeriod, s, name)
	}
	return p, nil
}

// parseMonth parses a canonical "YYYY-MM".
func parseMonth(s string) (Period, bool) {
	if len(s) != len(monthLayout) {
		return Period{}, false
	}
	t, err := time.Parse(monthLayout, s)
	if err != nil {
		return Period{}, false
	}
	p := monthOf(t)
	return p, p.String() == s
}
