package revenue_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/revenue"
	"pgregory.net/rapid"
)

func TestPriceSheetValidate(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name  string
		sheet revenue.PriceSheet
		bad   string // "" when valid, else a substring the error must contain
	}{
		{"default", revenue.DefaultPriceSheet(), ""},
		{"one resource", revenue.PriceSheet{Version: "v1", Prices: map[string]revenue.Amount{"cpu_ms": 1}}, ""},
		{"zero price", revenue.PriceSheet{Prices: map[string]revenue.Amount{"free_0": 0}}, ""},
		{"max price", revenue.PriceSheet{Prices: map[string]revenue.Amount{"x": maxAmount}}, ""},
		{"64 byte name", revenue.PriceSheet{Prices: map[string]revenue.Amount{long: 1}}, ""},
		{"nil prices", revenue.PriceSheet{Version: "v1"}, "no resources"},
		{"empty prices", revenue.PriceSheet{Prices: map[string]revenue.Amount{}}, "no resources"},
		{"empty name", revenue.PriceSheet{Prices: map[string]revenue.Amount{"": 1}}, `""`},
		{"upper case", revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": 1, "CPU": 1}}, `"CPU"`},
		{"dash", revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu-ms": 1}}, `"cpu-ms"`},
		{"space", revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu ms": 1}}, `"cpu ms"`},
		{"non-ASCII", revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpü": 1}}, `"cpü"`},
		{"65 byte name", revenue.PriceSheet{Prices: map[string]revenue.Amount{long + "a": 1}}, long},
		{"negative price", revenue.PriceSheet{Prices: map[string]revenue.Amount{"cpu_ms": 1, "net_bytes": -1}}, `"net_bytes" has negative price -1`},
		{"bad UTF-8 version", revenue.PriceSheet{Version: "v\xff", Prices: map[string]revenue.Amount{"x": 1}}, "UTF-8"},
		{"long version", revenue.PriceSheet{Version: strings.Repeat("v", 257), Prices: map[string]revenue.Amount{"x": 1}}, "version is 257 bytes"},
	}
	for _, tt := range tests {
		err := tt.sheet.Validate()
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.bad != "" && err == nil:
			t.Errorf("%s: Validate() = nil, want an error naming %s", tt.name, tt.bad)
		case tt.bad != "" && (!errors.Is(err, revenue.ErrBadSheet) || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%s: Validate() = %v, want ErrBadSheet naming %s", tt.name, err, tt.bad)
		}
	}
}

func TestCanonical(t *testing.T) {
	s := revenue.PriceSheet{Version: "v1", Prices: map[string]revenue.Amount{
		"net_bytes": 2, "cpu_ms": 20, "mem_mib_s": 1, "a_0": 0, "big": maxAmount,
	}}
	want := `{"prices":{"a_0":0,"big":9223372036854775807,"cpu_ms":20,"mem_mib_s":1,"net_bytes":2},"version":"v1"}`
	for range 20 { // map iteration order varies between runs; the encoding must not
		if got := string(s.Canonical()); got != want {
			t.Fatalf("Canonical() = %s\nwant %s", got, want)
		}
	}
	if got, want := s.Hash(), sha256.Sum256([]byte(want)); got != want {
		t.Fatalf("Hash() = %x, want SHA-256 of the canonical form %x", got, want)
	}

	esc := revenue.PriceSheet{Version: "q\"b\\c\n\x01\x7fé\u2028<&>", Prices: map[string]revenue.Amount{"x": 1}}
	wantEsc := `{"prices":{"x":1},"version":"q\"b\\c\u000a\u0001` + "\x7fé\u2028<&>" + `"}`
	if got := string(esc.Canonical()); got != wantEsc {
		t.Fatalf("Canonical() = %s\nwant %s", got, wantEsc)
	}

	empty := revenue.PriceSheet{Version: "v"}
	empty2 := revenue.PriceSheet{Version: "v", Prices: map[string]revenue.Amount{}}
	if !bytes.Equal(empty.Canonical(), empty2.Canonical()) {
		t.Fatalf("nil and empty price maps encode differently: %s, %s", empty.Canonical(), empty2.Canonical())
	}
}

func TestHashDistinguishes(t *testing.T) {
	base := revenue.DefaultPriceSheet()
	seen := map[[32]byte]string{base.Hash(): "default"}
	variants := map[string]func(*revenue.PriceSheet){
		"version":      func(s *revenue.PriceSheet) { s.Version += "x" },
		"price":        func(s *revenue.PriceSheet) { s.Prices["cpu_ms"]++ },
		"new resource": func(s *revenue.PriceSheet) { s.Prices["gpu_ms"] = 0 },
		"removed":      func(s *revenue.PriceSheet) { delete(s.Prices, "mail_bytes") },
		"renamed": func(s *revenue.PriceSheet) {
			s.Prices["mail_bytes2"] = s.Prices["mail_bytes"]
			delete(s.Prices, "mail_bytes")
		},
	}
	for name, change := range variants {
		s := revenue.DefaultPriceSheet()
		change(&s)
		h := s.Hash()
		if prev, dup := seen[h]; dup {
			t.Errorf("sheet with changed %s hashes like %s", name, prev)
		}
		seen[h] = name
	}
	if revenue.DefaultPriceSheet().Hash() != base.Hash() {
		t.Errorf("DefaultPriceSheet changed after its result was modified: it must return a fresh map")
	}
}

// TestCanonicalProperty: the canonical form of any valid sheet is valid JSON
// that decodes back to the same sheet.
func TestCanonicalProperty(t *testing.T) {
	name := rapid.StringMatching(`[a-z0-9_]{1,64}`)
	rapid.Check(t, func(t *rapid.T) {
		s := revenue.PriceSheet{
			Version: rapid.StringN(0, 40, 256).Draw(t, "version"),
			Prices:  rapid.MapOfN(name, amountGen(), 1, 20).Draw(t, "prices"),
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		c := s.Canonical()
		var back revenue.PriceSheet
		if err := json.Unmarshal(c, &back); err != nil {
			t.Fatalf("Canonical() = %s is not JSON: %v", c, err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("Canonical() = %s decodes to %+v, want %+v", c, back, s)
		}
		if !bytes.Equal(back.Canonical(), c) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func TestDefaultPriceSheet(t *testing.T) {
	s := revenue.DefaultPriceSheet()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"cpu_ms", "mem_mib_s", "io_bytes", "net_bytes", "dns_queries", "mail_messages", "mail_bytes"} {
		if p, ok := s.Prices[r]; !ok || p <= 0 {
			t.Errorf("default price of %s = %d, %v; want a positive price", r, p, ok)
		}
	}
	if s.Version == "" {
		t.Errorf("default sheet has no version")
	}
}

func reversed[T any](s []T) []T {
	r := make([]T, len(s))
	for i, v := range s {
		r[len(s)-1-i] = v
	}
	return r
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
