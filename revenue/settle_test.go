package revenue_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/revenue"
	"pgregory.net/rapid"
)

var (
	november = revenue.Period{
		Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		End:   time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	}
	testSheet = revenue.PriceSheet{Version: "test-1", Prices: map[string]revenue.Amount{
		"cpu_ms": 20, "net_bytes": 3, "mem_mib_s": 1, "free": 0,
	}}
)

// ev makes a usage event of IMVU "acme"; at is relative to November 2026.
func ev(resource, meter string, counter uint64, at time.Duration, index uint64) revenue.Usage {
	return revenue.Usage{IMVU: "acme", Resource: resource, Meter: meter, Counter: counter,
		At: november.Start.Add(at), Index: index}
}

const day = 24 * time.Hour

func TestSettle(t *testing.T) {
	type line = revenue.Line
	tests := []struct {
		name          string
		sheet         revenue.PriceSheet
		events        []revenue.Usage
		lines         []line
		first, last   uint64
		nEvents       int
		err           error
		errMentioning string
	}{
		{name: "no events", first: 1, last: 0},
		{
			name:   "one meter from zero",
			events: []revenue.Usage{ev("cpu_ms", "m1", 100, day, 7)},
			lines:  []line{{"cpu_ms", "m1", 0, 100, 100, 20, 2000}},
			first:  7, last: 7, nEvents: 1,
		},
		{
			name: "baseline from the previous period",
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 400, -20*day, 1),
				ev("cpu_ms", "m1", 500, -day, 2), // largest before: the baseline
				ev("cpu_ms", "m1", 450, -2*day, 3),
				ev("cpu_ms", "m1", 800, 10*day, 4),
				ev("cpu_ms", "m1", 700, 5*day, 5),
			},
			lines: []line{{"cpu_ms", "m1", 500, 800, 300, 20, 6000}},
			first: 4, last: 5, nEvents: 2,
		},
		{
			name: "events after the period are ignored",
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 10, day, 1),
				ev("cpu_ms", "m1", 5000, 31*day, 2),
				ev("net_bytes", "m1", 77, 40*day, 3), // after only: no line
			},
			lines: []line{{"cpu_ms", "m1", 0, 10, 10, 20, 200}},
			first: 1, last: 1, nEvents: 1,
		},
		{
			name: "period boundaries: start counts, end does not",
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 3, -time.Nanosecond, 10),
				ev("cpu_ms", "m1", 5, 0, 11),
				ev("cpu_ms", "m1", 9, 30*day-time.Nanosecond, 12),
				ev("cpu_ms", "m1", 100, 30*day, 13),
			},
			lines: []line{{"cpu_ms", "m1", 3, 9, 6, 20, 120}},
			first: 11, last: 12, nEvents: 2,
		},
		{
			name: "several resources and meters, sorted",
			events: []revenue.Usage{
				ev("net_bytes", "m1", 1000, day, 9),
				ev("cpu_ms", "m2", 50, day, 3),
				ev("cpu_ms", "m10", 60, day, 8),
				ev("cpu_ms", "m1", 40, day, 4),
				ev("cpu_ms", "m2", 10, -day, 2),
				ev("mem_mib_s", "m1", 7, 2*day, 6),
				ev("free", "m1", 1_000_000, 2*day, 5),
			},
			lines: []line{
				{"cpu_ms", "m1", 0, 40, 40, 20, 800},
				{"cpu_ms", "m10", 0, 60, 60, 20, 1200},
				{"cpu_ms", "m2", 10, 50, 40, 20, 800},
				{"free", "m1", 0, 1_000_000, 1_000_000, 0, 0},
				{"mem_mib_s", "m1", 0, 7, 7, 1, 7},
				{"net_bytes", "m1", 0, 1000, 1000, 3, 3000},
			},
			first: 3, last: 9, nEvents: 6,
		},
		{
			name: "baseline only: no line",
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 500, -day, 2),
				ev("gpu_ms", "m1", 500, -day, 3), // unpriced, but not used in the period
			},
			first: 1, last: 0,
		},
		{
			name: "no progress in the period",
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 500, -day, 2),
				ev("cpu_ms", "m1", 500, day, 3),
			},
			lines: []line{{"cpu_ms", "m1", 500, 500, 0, 20, 0}},
			first: 3, last: 3, nEvents: 1,
		},
		{
			name:   "unknown resource",
			events: []revenue.Usage{ev("cpu_ms", "m1", 1, day, 1), ev("gpu_ms", "m1", 1, day, 2), ev("zzz_ms", "m1", 1, day, 3)},
			err:    revenue.ErrUnknownResource, errMentioning: `"gpu_ms"`,
		},
		{
			name:   "other IMVU, even after the period",
			events: []revenue.Usage{ev("cpu_ms", "m1", 1, day, 1), {IMVU: "zeta", Resource: "cpu_ms", Meter: "m1", At: november.End.Add(day), Index: 9}, {IMVU: "beta", Resource: "cpu_ms", Meter: "m1", At: november.End.Add(day), Index: 4}},
			err:    revenue.ErrForeignEvent, errMentioning: `ledger index 4 is usage of "beta"`,
		},
		{
			name:   "counter went backwards",
			events: []revenue.Usage{ev("cpu_ms", "m1", 500, -day, 1), ev("cpu_ms", "m1", 499, day, 2)},
			err:    revenue.ErrCounterRegressed, errMentioning: "cpu_ms/m1",
		},
		{
			name:   "line overflows",
			sheet:  revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": 1 << 62}},
			events: []revenue.Usage{ev("cpu_ms", "m1", 2, day, 1)},
			err:    revenue.ErrOverflow,
		},
		{
			name:   "huge counter overflows",
			sheet:  revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": 1}},
			events: []revenue.Usage{ev("cpu_ms", "m1", math.MaxUint64, day, 1)},
			err:    revenue.ErrOverflow,
		},
		{
			name:   "huge counter, huge baseline: fine",
			sheet:  revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": 1}},
			events: []revenue.Usage{ev("cpu_ms", "m1", math.MaxUint64-1, -day, 1), ev("cpu_ms", "m1", math.MaxUint64, day, 2)},
			lines:  []line{{"cpu_ms", "m1", math.MaxUint64 - 1, math.MaxUint64, 1, 1, 1}},
			first:  2, last: 2, nEvents: 1,
		},
		{
			name:  "gross overflows",
			sheet: revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": math.MaxInt64/2 + 1}},
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 1, day, 1),
				ev("cpu_ms", "m2", 1, day, 2),
			},
			err: revenue.ErrOverflow,
		},
		{
			name:  "gross exactly MaxInt64",
			sheet: revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": math.MaxInt64 / 7, "io_bytes": 1}},
			events: []revenue.Usage{
				ev("cpu_ms", "m1", 7, day, 1),
				ev("io_bytes", "m1", math.MaxInt64%7, day, 2),
			},
			lines: []line{
				{"cpu_ms", "m1", 0, 7, 7, math.MaxInt64 / 7, math.MaxInt64 / 7 * 7},
				{"io_bytes", "m1", 0, math.MaxInt64 % 7, math.MaxInt64 % 7, 1, math.MaxInt64 % 7},
			},
			first: 1, last: 2, nEvents: 2,
		},
		{
			name:   "invalid sheet",
			sheet:  revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": -1}},
			events: []revenue.Usage{ev("cpu_ms", "m1", 1, day, 1)},
			err:    revenue.ErrBadSheet,
		},
	}
	for _, tt := range tests {
		sheet := tt.sheet
		if sheet.Prices == nil {
			sheet = testSheet
		}
		for _, events := range [][]revenue.Usage{tt.events, reversed(tt.events)} {
			st, err := revenue.Settle("acme", november, sheet, events)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(fmt.Sprint(err), tt.errMentioning) {
					t.Errorf("%s: Settle error %v, want %v mentioning %s", tt.name, err, tt.err, tt.errMentioning)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: Settle: %v", tt.name, err)
				continue
			}
			var gross revenue.Amount
			for _, l := range tt.lines {
				gross += l.Amount
			}
			creator, platform, _ := revenue.Split(gross)
			want := revenue.Statement{IMVU: "acme", Period: "2026-11", SheetHash: sheet.Hash(),
				First: tt.first, Last: tt.last, Lines: tt.lines,
				Gross: gross, Creator: creator, Platform: platform, Events: tt.nEvents}
			if !reflect.DeepEqual(st, want) {
				t.Errorf("%s: Settle =\n%+v\nwant\n%+v", tt.name, st, want)
			}
			if err := st.Check(); err != nil {
				t.Errorf("%s: Check: %v", tt.name, err)
			}
		}
	}
}

func TestSettleArguments(t *testing.T) {
	if _, err := revenue.Settle("", november, testSheet, nil); err == nil {
		t.Errorf("Settle with no IMVU name succeeded")
	}
	empty := revenue.Period{Start: november.Start, End: november.Start}
	if _, err := revenue.Settle("acme", empty, testSheet, nil); err == nil {
		t.Errorf("Settle for an empty period succeeded")
	}
	if _, err := revenue.Settle("acme", november, revenue.PriceSheet{}, nil); !errors.Is(err, revenue.ErrBadSheet) {
		t.Errorf("Settle with an empty sheet: %v, want ErrBadSheet", err)
	}
	// Many distinct meters: past the linear search, into the map.
	var events []revenue.Usage
	for i := range 100 {
		events = append(events, ev("cpu_ms", fmt.Sprintf("m%03d", i), uint64(i), day, uint64(i)))
		events = append(events, ev("cpu_ms", fmt.Sprintf("m%03d", 99-i), 0, -day, uint64(i+1000)))
	}
	st, err := revenue.Settle("acme", november, testSheet, events)
	if err != nil || len(st.Lines) != 100 || st.Lines[42].Meter != "m042" || st.Lines[42].Quantity != 42 || st.Events != 100 {
		t.Fatalf("Settle with 100 meters = %+v, %v", st, err)
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCheck: Check catches each kind of tampering.
func TestCheck(t *testing.T) {
	good, err := revenue.Settle("acme", november, testSheet, []revenue.Usage{
		ev("cpu_ms", "m1", 100, day, 1), ev("net_bytes", "m1", 101, day, 2), ev("net_bytes", "m1", 0, -day, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	tamper := map[string]func(*revenue.Statement){
		"gross":           func(s *revenue.Statement) { s.Gross++ },
		"creator rounded": func(s *revenue.Statement) { s.Creator--; s.Platform++ },
		"platform":        func(s *revenue.Statement) { s.Platform++ },
		"split swapped":   func(s *revenue.Statement) { s.Creator, s.Platform = s.Platform, s.Creator },
		"line amount":     func(s *revenue.Statement) { s.Lines[0].Amount++; s.Gross++ },
		"line quantity":   func(s *revenue.Statement) { s.Lines[0].Quantity++ },
		"line price":      func(s *revenue.Statement) { s.Lines[1].Price-- },
		"line to < from":  func(s *revenue.Statement) { s.Lines[1].From = s.Lines[1].To + 1 },
		"order":           func(s *revenue.Statement) { s.Lines[0], s.Lines[1] = s.Lines[1], s.Lines[0] },
		"duplicate line":  func(s *revenue.Statement) { s.Lines[1] = s.Lines[0]; s.Gross = 2 * s.Lines[0].Amount },
		"no events":       func(s *revenue.Statement) { s.Events = 0 },
		"too few events":  func(s *revenue.Statement) { s.Events = 1 },
		"index range":     func(s *revenue.Statement) { s.First, s.Last = 5, 4 },
		"no lines":        func(s *revenue.Statement) { s.Lines = nil },
	}
	for name, change := range tamper {
		s := good
		s.Lines = slices.Clone(good.Lines)
		change(&s)
		if err := s.Check(); !errors.Is(err, revenue.ErrInvariant) {
			t.Errorf("Check after tampering with %s = %v, want ErrInvariant", name, err)
		}
	}
}

// TestSettleProperty: for random events, Settle agrees with a naive
// big-integer recomputation, does not depend on the order of events or on
// duplicates, and never wraps.
func TestSettleProperty(t *testing.T) {
	resources := []string{"cpu_ms", "io_bytes", "net_bytes"}
	meters := []string{"a", "b", "c"}
	rapid.Check(t, func(t *rapid.T) {
		huge := rapid.Bool().Draw(t, "huge")
		price := rapid.Int64Range(0, 1000)
		if huge {
			price = rapid.Int64Range(0, math.MaxInt64)
		}
		sheet := revenue.PriceSheet{Version: "p", Prices: map[string]revenue.Amount{}}
		for _, r := range resources {
			sheet.Prices[r] = revenue.Amount(price.Draw(t, "price_"+r))
		}
		// Monotone counters (a function of time) or arbitrary ones.
		monotone := rapid.Bool().Draw(t, "monotone")
		rate := rapid.Uint64Range(0, 1000).Draw(t, "rate")
		if huge {
			rate = rapid.Uint64Range(0, math.MaxUint64/(80*86400)).Draw(t, "hugeRate")
		}
		n := rapid.IntRange(0, 60).Draw(t, "n")
		events := make([]revenue.Usage, n)
		for i := range events {
			sec := rapid.OneOf(
				rapid.Int64Range(-40*86400, 70*86400),
				rapid.SampledFrom([]int64{-1, 0, 30*86400 - 1, 30 * 86400}),
			).Draw(t, "sec")
			var counter uint64
			if monotone {
				counter = uint64(sec+40*86400) * rate
			} else if huge {
				counter = rapid.Uint64().Draw(t, "counter")
			} else {
				counter = rapid.Uint64Range(0, 1000).Draw(t, "counter")
			}
			events[i] = revenue.Usage{
				IMVU:     "acme",
				Resource: rapid.SampledFrom(resources).Draw(t, "resource"),
				Meter:    rapid.SampledFrom(meters).Draw(t, "meter"),
				Counter:  counter,
				At:       november.Start.Add(time.Duration(sec) * time.Second),
				Index:    rapid.Uint64Range(0, 100).Draw(t, "index"),
			}
		}
		if n > 0 && rapid.IntRange(0, 9).Draw(t, "foreign") == 0 {
			i := rapid.IntRange(0, n-1).Draw(t, "foreignAt")
			events[i].IMVU = rapid.SampledFrom([]string{"other", "acme2", "acm", ""}).Draw(t, "foreignName")
		}

		st, err := revenue.Settle("acme", november, sheet, events)
		checkAgainstBig(t, sheet, events, st, err)

		shuffled := rapid.Permutation(events).Draw(t, "shuffled")
		doubled := append(slices.Clone(events), events[:rapid.IntRange(0, n).Draw(t, "dups")]...)
		for name, other := range map[string][]revenue.Usage{"shuffled": shuffled, "with duplicates": doubled} {
			st2, err2 := revenue.Settle("acme", november, sheet, other)
			if fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Fatalf("%s: error %v, originally %v", name, err2, err)
			}
			if name == "shuffled" && !reflect.DeepEqual(st2, st) || name != "shuffled" && err == nil && !sameExceptEvents(st2, st) {
				t.Fatalf("%s: statement\n%+v\noriginally\n%+v", name, st2, st)
			}
		}
	})
}

func sameExceptEvents(a, b revenue.Statement) bool {
	a.Events = b.Events
	return reflect.DeepEqual(a, b)
}

// checkAgainstBig recomputes the statement naively with math/big.
func checkAgainstBig(t *rapid.T, sheet revenue.PriceSheet, events []revenue.Usage, st revenue.Statement, err error) {
	type key struct{ r, m string }
	type acc struct {
		base, top   *big.Int
		n           int
		first, last uint64
	}
	accs := map[key]*acc{}
	foreign := false
	for _, e := range events {
		if e.IMVU != "acme" {
			foreign = true
			continue
		}
		k := key{e.Resource, e.Meter}
		a := accs[k]
		if a == nil {
			a = &acc{base: big.NewInt(0), first: math.MaxUint64}
			accs[k] = a
		}
		c := new(big.Int).SetUint64(e.Counter)
		switch {
		case e.At.Before(november.Start):
			if c.Cmp(a.base) > 0 {
				a.base = c
			}
		case e.At.Before(november.End):
			if a.top == nil || c.Cmp(a.top) > 0 {
				a.top = c
			}
			a.n++
			a.first, a.last = min(a.first, e.Index), max(a.last, e.Index)
		}
	}
	if foreign {
		if !errors.Is(err, revenue.ErrForeignEvent) {
			t.Fatalf("events of another IMVU: err %v", err)
		}
		return
	}
	var keys []key
	for k, a := range accs {
		if a.n > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y key) int {
		if c := strings.Compare(x.r, y.r); c != 0 {
			return c
		}
		return strings.Compare(x.m, y.m)
	})
	gross := new(big.Int)
	nEvents := 0
	for _, k := range keys {
		a := accs[k]
		if a.top.Cmp(a.base) < 0 {
			if !errors.Is(err, revenue.ErrCounterRegressed) {
				t.Fatalf("%v went backwards: err %v", k, err)
			}
			return
		}
		nEvents += a.n
	}
	var lines []revenue.Line
	for _, k := range keys {
		a := accs[k]
		qty := new(big.Int).Sub(a.top, a.base)
		amount := new(big.Int).Mul(qty, big.NewInt(int64(sheet.Prices[k.r])))
		gross.Add(gross, amount)
		if gross.Cmp(bigMaxAmount) <= 0 {
			lines = append(lines, revenue.Line{Resource: k.r, Meter: k.m, From: a.base.Uint64(), To: a.top.Uint64(),
				Quantity: qty.Uint64(), Price: sheet.Prices[k.r], Amount: revenue.Amount(amount.Int64())})
		}
	}
	if gross.Cmp(bigMaxAmount) > 0 {
		if !errors.Is(err, revenue.ErrOverflow) {
			t.Fatalf("gross %s > MaxInt64: Settle = %+v, %v; want ErrOverflow", gross, st, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if big.NewInt(int64(st.Gross)).Cmp(gross) != 0 {
		t.Fatalf("gross %d, want %s", st.Gross, gross)
	}
	if !reflect.DeepEqual(st.Lines, lines) {
		t.Fatalf("lines\n%+v\nwant\n%+v", st.Lines, lines)
	}
	if st.Events != nEvents {
		t.Fatalf("events %d, want %d", st.Events, nEvents)
	}
	checkSplit(t, st.Gross, st.Creator, st.Platform)
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestSettleAllocs: allocations do not grow with the number of events.
func TestSettleAllocs(t *testing.T) {
	events := benchEvents(100_000)
	sheet := benchSheet()
	allocs := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := revenue.Settle("acme", november, sheet, events); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		allocs = min(allocs, after.Mallocs-before.Mallocs)
	}
	if allocs > 16 {
		t.Fatalf("Settle of 100,000 events: %v allocations, want a handful", allocs)
	}
	t.Logf("Settle of 100,000 events: %v allocations", allocs)
}

var benchResources = []string{"cpu_ms", "mem_mib_s", "io_bytes", "net_bytes", "dns_queries"}

func benchSheet() revenue.PriceSheet {
	return revenue.DefaultPriceSheet()
}

// benchEvents builds n events of IMVU "acme" for 5 resources x 2 meters, in
// ledger order, spread from 3 days before November 2026 to 2 days after it,
// the (resource, meter) of each event chosen pseudo-randomly.
func benchEvents(n int) []revenue.Usage {
	events := make([]revenue.Usage, n)
	var counters [10]uint64
	from := november.Start.Add(-3 * day)
	span := november.End.Add(2 * day).Sub(from)
	x := uint64(12345)
	for i := range events {
		x = x*6364136223846793005 + 1442695040888963407 // LCG
		k := int((x >> 33) % 10)
		counters[k] += 1 + (x>>20)%1000
		events[i] = revenue.Usage{
			IMVU:     "acme",
			Resource: benchResources[k/2],
			Meter:    [2]string{"meter-a", "meter-b"}[k%2],
			Counter:  counters[k],
			At:       from.Add(time.Duration(int64(span) / int64(n) * int64(i))),
			Index:    uint64(i) + 1,
		}
	}
	return events
}

func BenchmarkSettle10M(b *testing.B) {
	const n = 10_000_000
	events := benchEvents(n)
	sheet := benchSheet()
	b.ReportAllocs()
	var st revenue.Statement
	for b.Loop() {
		var err error
		if st, err = revenue.Settle("acme", november, sheet, events); err != nil {
			b.Fatal(err)
		}
	}
	if len(st.Lines) != 10 || st.Events == 0 || st.Events >= n {
		b.Fatalf("unexpected statement: %d lines, %d events", len(st.Lines), st.Events)
	}
	if perOp := b.Elapsed() / time.Duration(b.N); perOp > time.Second {
		b.Errorf("Settle of %d events took %v per op; the budget is 1s", n, perOp)
	}
}
