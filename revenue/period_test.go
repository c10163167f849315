package revenue_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/revenue"
	"pgregory.net/rapid"
)

func TestCalendarMonths(t *testing.T) {
	var cal revenue.Calendar
	tests := []struct {
		at, start, end, name string
	}{
		{"2026-11-15T12:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-11"},
		{"2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-11"},
		{"2026-10-31T23:59:59.999999999Z", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-10"},
		{"2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", "2026-12"},
		{"2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z", "2027-01"},
		{"2027-01-01T00:30:00+01:00", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", "2026-12"}, // UTC decides
		{"2026-12-31T20:00:00-05:00", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z", "2027-01"},
		{"2028-02-29T10:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", "2028-02"}, // leap year
		{"1969-12-31T23:59:59Z", "1969-12-01T00:00:00Z", "1970-01-01T00:00:00Z", "1969-12"},
		{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-02-01T00:00:00Z", "0001-01"},
		{"9999-12-31T23:59:59Z", "9999-12-01T00:00:00Z", "", "9999-12"}, // ends in year 10000
	}
	for _, tt := range tests {
		p := cal.Of(mustTime(t, tt.at))
		checkPeriod(t, cal, tt.at, p, tt.start, tt.end, tt.name)
	}

	// Next across the year boundary, twelve times round.
	p := cal.Of(mustTime(t, "2026-11-05T00:00:00Z"))
	var names []string
	for range 14 {
		names = append(names, p.String())
		next := cal.Next(p)
		if !next.Start.Equal(p.End) || !next.Start.Before(next.End) {
			t.Fatalf("Next(%v) = %v: not adjacent", p, next)
		}
		p = next
	}
	want := "2026-11 2026-12 2027-01 2027-02 2027-03 2027-04 2027-05 2027-06 2027-07 2027-08 2027-09 2027-10 2027-11 2027-12"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("successive months: %s\nwant %s", got, want)
	}
}

func TestCalendarFixed(t *testing.T) {
	hour := revenue.Calendar{Length: time.Hour}
	week := revenue.Calendar{Length: 7 * 24 * time.Hour} // the epoch was a Thursday
	odd := revenue.Calendar{Length: 1500 * time.Millisecond}
	tests := []struct {
		cal                  revenue.Calendar
		at, start, end, name string
	}{
		{hour, "1970-01-01T00:30:00Z", "1970-01-01T00:00:00Z", "1970-01-01T01:00:00Z", "1970-01-01T00:00:00Z"},
		{hour, "2026-11-05T10:59:59.999999999Z", "2026-11-05T10:00:00Z", "2026-11-05T11:00:00Z", "2026-11-05T10:00:00Z"},
		{hour, "2026-11-05T11:00:00+01:00", "2026-11-05T10:00:00Z", "2026-11-05T11:00:00Z", "2026-11-05T10:00:00Z"},
		{hour, "1969-12-31T23:30:00Z", "1969-12-31T23:00:00Z", "1970-01-01T00:00:00Z", "1969-12-31T23:00:00Z"}, // before the epoch: floor, not truncation
		{hour, "1600-06-01T12:34:56Z", "1600-06-01T12:00:00Z", "1600-06-01T13:00:00Z", "1600-06-01T12:00:00Z"}, // beyond int64 nanoseconds
		{hour, "2500-06-01T12:34:56Z", "2500-06-01T12:00:00Z", "2500-06-01T13:00:00Z", "2500-06-01T12:00:00Z"},
		{week, "1970-01-07T23:59:59Z", "1970-01-01T00:00:00Z", "1970-01-08T00:00:00Z", "1970-01-01T00:00:00Z"},
		{week, "2026-11-05T10:00:00Z", "2026-11-05T00:00:00Z", "2026-11-12T00:00:00Z", "2026-11-05T00:00:00Z"},
		{week, "1969-12-31T00:00:00Z", "1969-12-25T00:00:00Z", "1970-01-01T00:00:00Z", "1969-12-25T00:00:00Z"},
		{odd, "1970-01-01T00:00:02Z", "1970-01-01T00:00:01.5Z", "1970-01-01T00:00:03Z", "1970-01-01T00:00:01.5Z"},
		{odd, "1969-12-31T23:59:59.9Z", "1969-12-31T23:59:58.5Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:58.5Z"},
	}
	for _, tt := range tests {
		p := tt.cal.Of(mustTime(t, tt.at))
		checkPeriod(t, tt.cal, tt.at, p, tt.start, tt.end, tt.name)
		if n := tt.cal.Next(p); !n.Start.Equal(p.End) || n.End.Sub(n.Start) != tt.cal.Length {
			t.Errorf("Next(%v) = %v", p, n)
		}
	}
}

// TestCalendarFixedMonth: a 31-day calendar's first period is exactly
// January 1970, so it is named like a month and parsed back as such.
func TestCalendarFixedMonth(t *testing.T) {
	cal := revenue.Calendar{Length: 31 * 24 * time.Hour}
	p := cal.Of(mustTime(t, "1970-01-15T00:00:00Z"))
	checkPeriod(t, cal, "1970-01-15", p, "1970-01-01T00:00:00Z", "1970-02-01T00:00:00Z", "1970-01")
	if _, err := cal.Parse("1970-01-01T00:00:00Z"); err == nil || !strings.Contains(err.Error(), `want "1970-01"`) {
		t.Errorf("Parse of the non-canonical name: %v", err)
	}
	if _, err := cal.Parse("1970-03"); err == nil {
		t.Errorf("Parse(1970-03) on a 31-day calendar succeeded; March 1970 is not one of its periods")
	}
	// A 59-day calendar's first period ends with February 1970 but does not
	// start with it.
	cal59 := revenue.Calendar{Length: 59 * 24 * time.Hour}
	if p, err := cal59.Parse("1970-02"); err == nil || !strings.Contains(err.Error(), "calendar month") {
		t.Errorf("59-day calendar: Parse(1970-02) = %v, %v; want an error", p, err)
	}
	if p := cal59.Of(mustTime(t, "1970-02-01T00:00:00Z")); p.String() != "1970-01-01T00:00:00Z" || !p.End.Equal(mustTime(t, "1970-03-01T00:00:00Z")) {
		t.Errorf("59-day calendar: first period %v named %s", p, p)
	}
}

func checkPeriod(t *testing.T, cal revenue.Calendar, at string, p revenue.Period, start, end, name string) {
	t.Helper()
	if !p.Start.Equal(mustTime(t, start)) || end != "" && !p.End.Equal(mustTime(t, end)) {
		t.Errorf("%+v.Of(%s) = [%v, %v), want [%s, %s)", cal, at, p.Start, p.End, start, end)
	}
	if p.Start.Location() != time.UTC || p.End.Location() != time.UTC {
		t.Errorf("%+v.Of(%s) = %v: not in UTC", cal, at, p)
	}
	if got := p.String(); got != name {
		t.Errorf("%+v.Of(%s).String() = %q, want %q", cal, at, got, name)
	}
	if back, err := cal.Parse(name); err != nil || back != p {
		t.Errorf("%+v.Parse(%q) = %v, %v; want %v", cal, name, back, err, p)
	}
	if !p.Contains(p.Start) || p.Contains(p.End) {
		t.Errorf("%v: Contains is not [Start, End)", p)
	}
}

func mustTimeRFC3339(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCalendarParseErrors(t *testing.T) {
	months := revenue.Calendar{}
	hour := revenue.Calendar{Length: time.Hour}
	tests := []struct {
		cal  revenue.Calendar
		in   string
		want string // substring of the error besides the quoted input
	}{
		{months, "", "YYYY-MM"},
		{months, "2026", "YYYY-MM"},
		{months, "2026-13", "YYYY-MM"},
		{months, "2026-00", "YYYY-MM"},
		{months, "2026-1", "YYYY-MM"},
		{months, "26-11", "YYYY-MM"},
		{months, " 2026-11", "YYYY-MM"},
		{months, "2026-11\n", "YYYY-MM"},
		{months, "2026/11", "YYYY-MM"},
		{months, "+026-11", "YYYY-MM"},
		{months, "2026-11-01", "YYYY-MM"},
		{months, "2026-11-01T00:00:00Z", "YYYY-MM"},
		{months, "２０２６-11", "YYYY-MM"},
		{hour, "2026-11-05T10:30:00Z", "not the start of a 1h0m0s period; the period containing it is 2026-11-05T10:00:00Z"},
		{hour, "2026-11-05T11:00:00+01:00", `not in canonical form, want "2026-11-05T10:00:00Z"`},
		{hour, "2026-11-05T10:00:00.000Z", `not in canonical form, want "2026-11-05T10:00:00Z"`},
		{hour, "2026-11-05t10:00:00z", "RFC 3339"},
		{hour, "2026-11", "calendar month"},
		{hour, "2026-11-05 10:00:00", "RFC 3339"},
		{hour, "yesterday", "RFC 3339"},
		{hour, "", "RFC 3339"},
		{revenue.Calendar{Length: -time.Hour}, "2026-11", "negative"},
	}
	for _, tt := range tests {
		p, err := tt.cal.Parse(tt.in)
		if err == nil {
			t.Errorf("%+v.Parse(%q) = %v, want an error", tt.cal, tt.in, p)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, revenue.ErrBadPeriod) || !strings.Contains(msg, strconv.Quote(tt.in)) || !strings.Contains(msg, tt.want) {
			t.Errorf("%+v.Parse(%q) error %q: want ErrBadPeriod quoting the input and mentioning %q", tt.cal, tt.in, msg, tt.want)
		}
	}

	long := strings.Repeat("9", 10_000)
	if _, err := months.Parse(long); err == nil || len(err.Error()) > 300 {
		t.Errorf("Parse of 10 kB input: error of %d bytes, want a short one", len(err.Error()))
	}
}

func TestCalendarNegativeLengthPanics(t *testing.T) {
	cal := revenue.Calendar{Length: -1}
	if cal.Validate() == nil {
		t.Errorf("Validate accepted a negative length")
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Of on a negative-length calendar did not panic")
		}
	}()
	cal.Of(time.Now())
}

// TestCalendarProperty: for any time in years 1-9999 and any calendar, the
// period contains the time, Next is adjacent, and Parse reverses String.
func TestCalendarProperty(t *testing.T) {
	lo := mustTimeRFC3339("0001-01-01T00:00:00Z").Unix()
	hi := mustTimeRFC3339("9999-11-30T00:00:00Z").Unix()
	rapid.Check(t, func(t *rapid.T) {
		var cal revenue.Calendar
		switch rapid.IntRange(0, 3).Draw(t, "kind") {
		case 1:
			cal.Length = time.Duration(rapid.Int64Range(1, 1_000_000_000_000).Draw(t, "shortLength"))
		case 2:
			cal.Length = time.Duration(rapid.Int64Range(1, 1000).Draw(t, "hours")) * time.Hour
		case 3:
			cal.Length = time.Duration(rapid.Int64Range(1, 1<<62).Draw(t, "longLength"))
		}
		sec := rapid.OneOf(rapid.Int64Range(lo, hi), rapid.Int64Range(-5_000_000_000, 5_000_000_000)).Draw(t, "sec")
		at := time.Unix(sec, rapid.Int64Range(0, 999_999_999).Draw(t, "nsec"))
		if rapid.Bool().Draw(t, "zone") {
			at = at.In(time.FixedZone("x", rapid.IntRange(-14*3600, 14*3600).Draw(t, "offset")))
		}
		p := cal.Of(at)
		if !p.Contains(at) {
			t.Fatalf("%+v.Of(%v) = %v does not contain it", cal, at, p)
		}
		if cal.Length > 0 && p.End.Sub(p.Start) != cal.Length {
			t.Fatalf("%+v.Of(%v) = %v has the wrong length", cal, at, p)
		}
		if cal.Of(p.Start) != p || cal.Of(p.End.Add(-1)) != p {
			t.Fatalf("%+v.Of is not constant over %v", cal, p)
		}
		if n := cal.Next(p); !n.Start.Equal(p.End) || !n.Start.Before(n.End) {
			t.Fatalf("%+v.Next(%v) = %v", cal, p, n)
		}
		if p.Start.Year() < 1 || p.Start.Year() > 9999 {
			return // outside what RFC 3339 can name
		}
		name := p.String()
		back, err := cal.Parse(name)
		if err != nil || back != p {
			t.Fatalf("%+v.Parse(%q) = %v, %v; want %v", cal, name, back, err, p)
		}
	})
}
