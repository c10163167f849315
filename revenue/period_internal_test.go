package revenue

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestFixedOfFastPath: the int64 fast path agrees with exact big-integer
// arithmetic wherever it is taken.
func TestFixedOfFastPath(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sec := rapid.Int64Range(-4_000_000_000, 4_000_000_000).Draw(t, "sec")
		nsec := rapid.Int64Range(0, 999_999_999).Draw(t, "nsec")
		l := rapid.OneOf(rapid.Int64Range(1, 1_000_000), rapid.Int64Range(1, 1<<63-1)).Draw(t, "length")
		got := fixedOf(time.Unix(sec, nsec), time.Duration(l)).Start
		want := fixedStartBig(sec, nsec, l).UTC()
		if got != want {
			t.Fatalf("fixedOf(%d.%09d, %d) starts at %v, exact %v", sec, nsec, l, got, want)
		}
	})
}
