package revenue

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	// ErrForeignEvent is returned by Settle for a usage event of another IMVU.
	ErrForeignEvent = errors.New("revenue: usage event of another IMVU")
	// ErrUnknownResource is returned by Settle for usage of a resource the
	// price sheet does not price.
	ErrUnknownResource = errors.New("revenue: resource not in price sheet")
	// ErrCounterRegressed is returned by Settle when a meter's counter in
	// the period is below its counter before the period.
	ErrCounterRegressed = errors.New("revenue: meter counter went backwards")
	// ErrInvariant is wrapped by every Statement.Check error.
	ErrInvariant = errors.New("revenue: statement invariant violated")
)

// Usage is one reading of a meter, as recorded in the ledger: the meter's
// cumulative, monotonic counter for a resource of an IMVU at time At,
// recorded at ledger index Index.
type Usage struct {
	IMVU     string    `json:"imvu"`
	Resource string    `json:"resource"`
	Meter    string    `json:"meter"`
	Counter  uint64    `json:"counter"`
	At       time.Time `json:"at"`
	Index    uint64    `json:"index,omitempty"` // set by the ledger, never by the meter
}

// Line is the charge for one (resource, meter) in a period: the counter
// went From (its largest value before the period, 0 if none) To (its
// largest value in the period); Quantity = To-From units at Price each make
// Amount.
type Line struct {
	Resource string `json:"resource"`
	Meter    string `json:"meter"`
	From     uint64 `json:"from"`
	To       uint64 `json:"to"`
	Quantity uint64 `json:"quantity"`
	Price    Amount `json:"price"`
	Amount   Amount `json:"amount"`
}

// Statement is an IMVU's settlement for one period.
type Statement struct {
	IMVU      string   `json:"imvu"`
	Period    string   `json:"period"` // Period.String()
	SheetHash [32]byte `json:"-"`      // PriceSheet.Hash() of the sheet used
	// First and Last are the smallest and largest ledger index of the usage
	// events in the period; First > Last (1 > 0) when there are none.
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	// Lines holds one line per (resource, meter) with events in the period,
	// sorted by resource then meter; nil when there are none.
	Lines    []Line `json:"lines"`
	Gross    Amount `json:"gross"`
	Creator  Amount `json:"creator"`
	Platform Amount `json:"platform"`
	Events   int    `json:"events"` // number of usage events in the period
}

// tally accumulates the events of one (resource, meter).
type tally struct {
	resource, meter string
	base, top       uint64 // largest counter before (0 if none) / in the period
	n               int    // events in the period
	first, last     uint64 // ledger index range of those events
}

type meterKey struct{ resource, meter string }

// tallies finds a (resource, meter)'s tally by linear search while there
// are few, by map once there are many.
type tallies struct {
	list  []tally
	index map[meterKey]int
}

const linearTallies = 16

func (ts *tallies) find(resource, meter string) int {
	if ts.index == nil {
		for i := range ts.list {
			if ts.list[i].resource == resource && ts.list[i].meter == meter {
				return i
			}
		}
	} else if i, ok := ts.index[meterKey{resource, meter}]; ok {
		return i
	}
	i := len(ts.list)
	ts.list = append(ts.list, tally{resource: resource, meter: meter})
	if ts.index != nil {
		ts.index[meterKey{resource, meter}] = i
	} else if len(ts.list) > linearTallies {
		ts.index = make(map[meterKey]int, 2*len(ts.list))
		for j := range ts.list {
			ts.index[meterKey{ts.list[j].resource, ts.list[j].meter}] = j
		}
	}
	return i
}

const (
	cacheBits = 6
	cacheSize = 1 << cacheBits
)

// cacheSlot hashes what tells typical names apart: lengths, the first byte
// of the resource and the last byte of the meter.
func cacheSlot(resource, meter string) uint64 {
	h := uint64(len(resource)) | uint64(len(meter))<<32
	if len(resource) > 0 {
		h |= uint64(resource[0]) << 16
	}
	if len(meter) > 0 {
		h |= uint64(meter[len(meter)-1]) << 48
	}
	h ^= h >> 29 // splitmix64's finalizer
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	h *= 0x94d049bb133111eb
	return h >> (64 - cacheBits)
}

// Settle computes imvu's statement for period p, priced with sheet, from the
// IMVU's usage events in any order.
//
// For each (resource, meter) the usage in p is the largest counter seen at
// a time inside p minus the largest counter seen before p.Start (0 if
// none); only the largest values matter, so the order of events and
// duplicated events do not change the result. Events after p are ignored;
// events before p only give the baseline. Each (resource, meter) with
// events inside p makes a Line, and its resource must be in the sheet
// (ErrUnknownResource); a resource seen only before p need not be.
//
// Errors: an invalid sheet or empty period; an event of another IMVU
// (ErrForeignEvent, naming the event with the smallest ledger index); then,
// in (resource, meter) order, ErrUnknownResource or ErrCounterRegressed;
// then ErrOverflow if a line or the gross exceeds MaxAmount. The error, like
// the statement, does not depend on the order of events.
//
// Settle reads each event once and makes a handful of allocations,
// however many events there are; only more than 16 distinct (resource,
// meter)s add a map and its growth.
func Settle(imvu string, p Period, sheet PriceSheet, events []Usage) (Statement, error) {
	if imvu == "" {
		return Statement{}, errors.New("revenue: settle: empty IMVU name")
	}
	if !p.Start.Before(p.End) {
		return Statement{}, fmt.Errorf("revenue: settle %s: empty period (start %v, end %v)", imvu, p.Start, p.End)
	}
	if err := sheet.Validate(); err != nil {
		return Statement{}, fmt.Errorf("revenue: settle %s for %s: %w", imvu, p, err)
	}

	var ts tallies
	ts.list = make([]tally, 0, linearTallies)
	start, end := p.Start, p.End
	// cache maps a cheap hash of (resource, meter) to the tally last found
	// for it (index+1, 0 for none). A hit is verified, so a collision only
	// costs a call to find.
	var cache [cacheSize]int
	for i := range events {
		e := &events[i]
		if e.IMVU != imvu {
			return Statement{}, foreignError(imvu, events)
		}
		if !e.At.Before(end) {
			continue
		}
		h := cacheSlot(e.Resource, e.Meter)
		c := cache[h] - 1
		if c < 0 || ts.list[c].resource != e.Resource || ts.list[c].meter != e.Meter {
			c = ts.find(e.Resource, e.Meter)
			cache[h] = c + 1
		}
		t := &ts.list[c]
		if e.At.Before(start) {
			t.base = max(t.base, e.Counter)
			continue
		}
		if t.n == 0 {
			t.top, t.first, t.last = e.Counter, e.Index, e.Index
		} else {
			t.top = max(t.top, e.Counter)
			t.first = min(t.first, e.Index)
			t.last = max(t.last, e.Index)
		}
		t.n++
	}

	// Keep the (resource, meter)s with events in the period, in order.
	list := ts.list[:0]
	for _, t := range ts.list {
		if t.n > 0 {
			list = append(list, t)
		}
	}
	slices.SortFunc(list, func(a, b tally) int {
		if c := strings.Compare(a.resource, b.resource); c != 0 {
			return c
		}
		return strings.Compare(a.meter, b.meter)
	})

	st := Statement{IMVU: imvu, Period: p.String(), SheetHash: sheet.Hash(), First: 1, Last: 0}
	for _, t := range list {
		if _, ok := sheet.Prices[t.resource]; !ok {
			return Statement{}, fmt.Errorf("revenue: settle %s for %s: %w: %q (meter %q), sheet %q",
				imvu, st.Period, ErrUnknownResource, clip(t.resource), clip(t.meter), sheet.Version)
		}
		if t.top < t.base {
			return Statement{}, fmt.Errorf("revenue: settle %s for %s: %w: %s/%s counter %d in the period is below %d before it",
				imvu, st.Period, ErrCounterRegressed, t.resource, clip(t.meter), t.top, t.base)
		}
	}
	if len(list) > 0 {
		st.Lines = make([]Line, len(list))
		st.First, st.Last = list[0].first, list[0].last
	}
	for i, t := range list {
		price := sheet.Prices[t.resource]
		qty := t.top - t.base
		amount, err := Mul(price, qty)
		if err != nil {
			return Statement{}, fmt.Errorf("revenue: settle %s for %s: %s/%s: %d units at %d: %w",
				imvu, st.Period, t.resource, clip(t.meter), qty, price, err)
		}
		if st.Gross, err = Add(st.Gross, amount); err != nil {
			return Statement{}, fmt.Errorf("revenue: settle %s for %s: gross: %w", imvu, st.Period, err)
		}
		st.Lines[i] = Line{Resource: t.resource, Meter: t.meter, From: t.base, To: t.top,
			Quantity: qty, Price: price, Amount: amount}
		st.First, st.Last = min(st.First, t.first), max(st.Last, t.last)
		st.Events += t.n
	}
	var err error
	if st.Creator, st.Platform, err = Split(st.Gross); err != nil {
		return Statement{}, err // unreachable: gross is never negative
	}
	return st, nil
}

// foreignError reports the foreign event with the smallest (Index, IMVU),
// so that the error does not depend on the order of events.
func foreignError(imvu string, events []Usage) error {
	var bad *Usage
	for i := range events {
		e := &events[i]
		if e.IMVU != imvu && (bad == nil || e.Index < bad.Index || e.Index == bad.Index && e.IMVU < bad.IMVU) {
			bad = e
		}
	}
	return fmt.Errorf("revenue: settle %s: %w: ledger index %d is usage of %q", imvu, ErrForeignEvent, bad.Index, clip(bad.IMVU))
}

// Check verifies the statement's invariants: lines sorted by (resource,
// meter) without duplicates, each with Quantity = To-From and Amount =
// Quantity*Price; Gross = sum of the line amounts; Creator =
// ceil(Gross*55/100) and Creator+Platform = Gross; and an event count and
// index range consistent with the lines. Errors wrap ErrInvariant.
func (s Statement) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s: %s", ErrInvariant, s.IMVU, s.Period, fmt.Sprintf(format, args...))
	}
	var sum Amount
	for i, l := range s.Lines {
		if i > 0 {
			prev := s.Lines[i-1]
			if c := strings.Compare(prev.Resource, l.Resource); c > 0 || c == 0 && prev.Meter >= l.Meter {
				return bad("line %d (%s/%s) is not after line %d (%s/%s)", i, l.Resource, l.Meter, i-1, prev.Resource, prev.Meter)
			}
		}
		if l.To < l.From || l.Quantity != l.To-l.From {
			return bad("line %d (%s/%s): quantity %d is not %d-%d", i, l.Resource, l.Meter, l.Quantity, l.To, l.From)
		}
		amount, err := Mul(l.Price, l.Quantity)
		if err != nil || amount != l.Amount {
			return bad("line %d (%s/%s): amount %d is not %d x %d", i, l.Resource, l.Meter, l.Amount, l.Quantity, l.Price)
		}
		if sum, err = Add(sum, l.Amount); err != nil {
			return bad("sum of lines: %v", err)
		}
	}
	if sum != s.Gross {
		return bad("gross %d is not the sum of the lines %d", s.Gross, sum)
	}
	creator, platform, err := Split(s.Gross)
	if err != nil {
		return bad("gross %d: %v", s.Gross, err)
	}
	if s.Creator != creator || s.Platform != platform || s.Platform < 0 || s.Creator > s.Gross || s.Gross-s.Creator != s.Platform {
		return bad("split %d + %d of gross %d, want %d + %d", s.Creator, s.Platform, s.Gross, creator, platform)
	}
	if s.Events < len(s.Lines) || (s.Events == 0) != (len(s.Lines) == 0) {
		return bad("%d events for %d lines", s.Events, len(s.Lines))
	}
	if (s.Events == 0) != (s.First > s.Last) {
		return bad("%d events with ledger index range [%d, %d]", s.Events, s.First, s.Last)
	}
	return nil
}
