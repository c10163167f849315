package revenue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nexus-core/nexus/revenue"
)

// FuzzPeriodParse: Parse takes user and network input. It must never
// panic, must fail with ErrBadPeriod and a bounded message, and whatever it
// accepts must be a period of the calendar whose canonical name is exactly
// the input.
func FuzzPeriodParse(f *testing.F) {
	for _, s := range []string{
		"2026-11", "2026-13", "0000-01", "9999-12", "1970-01", "2026-1", "",
		"2026-11-05T10:00:00Z", "2026-11-05T10:00:00.5Z", "2026-11-05T11:00:00+01:00",
		"1969-12-31T23:59:58.5Z", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z",
		"1970-01-01T00:00:00Z", "2026-11-05T10:00:00.000000000Z", "x",
	} {
		f.Add(s)
	}
	calendars := []revenue.Calendar{
		{},
		{Length: time.Hour},
		{Length: 31 * 24 * time.Hour},
		{Length: 1500 * time.Millisecond},
		{Length: 1},
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, cal := range calendars {
			p, err := cal.Parse(s)
			if err != nil {
				if !errors.Is(err, revenue.ErrBadPeriod) {
					t.Fatalf("%+v.Parse(%q): %v does not wrap ErrBadPeriod", cal, s, err)
				}
				if len(err.Error()) > 500 {
					t.Fatalf("%+v.Parse(%q): %d-byte error", cal, s, len(err.Error()))
				}
				continue
			}
			if got := p.String(); got != s {
				t.Fatalf("%+v.Parse(%q) = %v named %q", cal, s, p, got)
			}
			if q := cal.Of(p.Start); q != p {
				t.Fatalf("%+v.Parse(%q) = %v, not a period of the calendar (%v)", cal, s, p, q)
			}
			if q, err := cal.Parse(p.String()); err != nil || q != p {
				t.Fatalf("%+v: Parse(String(%v)) = %v, %v", cal, p, q, err)
			}
		}
	})
}
