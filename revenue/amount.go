package revenue

import (
	"errors"
	"math"
	"math/bits"
)

// Amount is a quantity of money in nanocredits, the smallest unit. On the
// money path it is never negative.
type Amount int64

const (
	// Nano is one nanocredit, the smallest unit of money.
	Nano Amount = 1
	// Credit is one credit: 10^9 nanocredits.
	Credit Amount = 1_000_000_000
	// MaxAmount is the largest representable amount.
	MaxAmount Amount = math.MaxInt64
)

// The revenue split, in whole percent. They add up to 100.
const (
	CreatorPercent  = 55
	PlatformPercent = 45
)

var (
	// ErrOverflow is returned when a result does not fit in an Amount (or a
	// counter difference in a uint64). Results never wrap.
	ErrOverflow = errors.New("revenue: amount overflow")
	// ErrNegative is returned when a negative amount is given where money
	// is expected.
	ErrNegative = errors.New("revenue: negative amount")
)

// Add returns a+b. Both must be non-negative (ErrNegative); a sum beyond
// MaxAmount is ErrOverflow.
func Add(a, b Amount) (Amount, error) {
	if a < 0 || b < 0 {
		return 0, ErrNegative
	}
	if a > MaxAmount-b {
		return 0, ErrOverflow
	}
	return a + b, nil
}

// Mul returns a*n, for a per-unit price a and a quantity n. a must be
// non-negative (ErrNegative); a product beyond MaxAmount is ErrOverflow.
func Mul(a Amount, n uint64) (Amount, error) {
	if a < 0 {
		return 0, ErrNegative
	}
	hi, lo := bits.Mul64(uint64(a), n)
	if hi != 0 || lo > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return Amount(lo), nil
}

// Split divides gross between the creator and the platform: creator is
// ceil(gross*55/100), exactly, and platform is gross-creator, so
// creator+platform == gross and 0 <= creator - 0.55*gross < 1 nanocredit.
// It works for every gross up to MaxAmount; a negative gross is ErrNegative.
func Split(gross Amount) (creator, platform Amount, err error) {
	if gross < 0 {
		return 0, 0, ErrNegative
	}
	// gross = 100q + r, so gross*55/100 = 55q + 55r/100 and the ceiling
	// only concerns the second term. 55q <= 0.55*MaxInt64: no overflow.
	q, r := gross/100, gross%100
	creator = CreatorPercent*q + (CreatorPercent*r+99)/100
	return creator, gross - creator, nil
}
