package revenue_test

import (
	"errors"
	"math"
	"math/big"
	"testing"

	"github.com/nexus-core/nexus/revenue"
	"pgregory.net/rapid"
)

const maxAmount = revenue.Amount(math.MaxInt64)

var bigMaxAmount = big.NewInt(math.MaxInt64)

func TestAdd(t *testing.T) {
	tests := []struct {
		a, b revenue.Amount
		want revenue.Amount
		err  error
	}{
		{0, 0, 0, nil},
		{1, 2, 3, nil},
		{revenue.Credit, revenue.Nano, 1_000_000_001, nil},
		{maxAmount, 0, maxAmount, nil},
		{0, maxAmount, maxAmount, nil},
		{maxAmount - 5, 5, maxAmount, nil},
		{maxAmount - 5, 6, 0, revenue.ErrOverflow},
		{maxAmount, 1, 0, revenue.ErrOverflow},
		{1, maxAmount, 0, revenue.ErrOverflow},
		{maxAmount, maxAmount, 0, revenue.ErrOverflow},
		{maxAmount/2 + 1, maxAmount/2 + 1, 0, revenue.ErrOverflow},
		{maxAmount / 2, maxAmount/2 + 1, maxAmount, nil},
		{-1, 0, 0, revenue.ErrNegative},
		{0, -1, 0, revenue.ErrNegative},
		{math.MinInt64, math.MinInt64, 0, revenue.ErrNegative},
	}
	for _, tt := range tests {
		got, err := revenue.Add(tt.a, tt.b)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Add(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, err, tt.want, tt.err)
		}
	}
}

func TestMul(t *testing.T) {
	tests := []struct {
		a    revenue.Amount
		n    uint64
		want revenue.Amount
		err  error
	}{
		{0, 0, 0, nil},
		{0, math.MaxUint64, 0, nil},
		{maxAmount, 0, 0, nil},
		{7, 6, 42, nil},
		{1, math.MaxInt64, maxAmount, nil},
		{1, math.MaxInt64 + 1, 0, revenue.ErrOverflow},
		{1, math.MaxUint64, 0, revenue.ErrOverflow},
		{maxAmount, 1, maxAmount, nil},
		{maxAmount, 2, 0, revenue.ErrOverflow},
		{2, 1<<62 - 1, 1<<63 - 2, nil},
		{2, 1 << 62, 0, revenue.ErrOverflow},       // exactly 2^63: low word overflows int64
		{1 << 32, 1 << 32, 0, revenue.ErrOverflow}, // 2^64: high word non-zero, low word 0
		{1 << 40, 1 << 40, 0, revenue.ErrOverflow},
		{revenue.Credit, 9_223_372_036, 9_223_372_036 * revenue.Credit, nil},
		{revenue.Credit, 9_223_372_037, 0, revenue.ErrOverflow},
		{3, math.MaxUint64/3 + 1, 0, revenue.ErrOverflow},
		{-1, 1, 0, revenue.ErrNegative},
		{-1, 0, 0, revenue.ErrNegative},
	}
	for _, tt := range tests {
		got, err := revenue.Mul(tt.a, tt.n)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Mul(%d, %d) = %d, %v; want %d, %v", tt.a, tt.n, got, err, tt.want, tt.err)
		}
	}
}

// amountGen draws amounts over the whole range, often near the edges.
func amountGen() *rapid.Generator[revenue.Amount] {
	return rapid.Custom(func(t *rapid.T) revenue.Amount {
		switch rapid.IntRange(0, 3).Draw(t, "kind") {
		case 0:
			return revenue.Amount(rapid.Int64Range(0, 1000).Draw(t, "small"))
		case 1:
			return maxAmount - revenue.Amount(rapid.Int64Range(0, 1000).Draw(t, "belowMax"))
		case 2:
			return revenue.Amount(rapid.Int64Range(0, 1<<32).Draw(t, "mid"))
		}
		return revenue.Amount(rapid.Int64Range(0, math.MaxInt64).Draw(t, "any"))
	})
}

func TestAddMulProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := amountGen().Draw(t, "a")
		b := amountGen().Draw(t, "b")
		n := rapid.OneOf(rapid.Uint64Range(0, 1<<33), rapid.Uint64()).Draw(t, "n")

		sum := new(big.Int).Add(big.NewInt(int64(a)), big.NewInt(int64(b)))
		got, err := revenue.Add(a, b)
		checkBig(t, "Add", got, err, sum)

		prod := new(big.Int).Mul(big.NewInt(int64(a)), new(big.Int).SetUint64(n))
		got, err = revenue.Mul(a, n)
		checkBig(t, "Mul", got, err, prod)
	})
}

func checkBig(t *rapid.T, op string, got revenue.Amount, err error, want *big.Int) {
	if want.Cmp(bigMaxAmount) > 0 {
		if !errors.Is(err, revenue.ErrOverflow) {
			t.Fatalf("%s = %d, %v; want ErrOverflow (exact result %s)", op, got, err, want)
		}
		return
	}
	if err != nil || big.NewInt(int64(got)).Cmp(want) != 0 {
		t.Fatalf("%s = %d, %v; want %s", op, got, err, want)
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		gross, creator, platform revenue.Amount
	}{
		{0, 0, 0},
		{1, 1, 0},   // 0.55 rounds up
		{2, 2, 0},   // 1.10
		{3, 2, 1},   // 1.65
		{20, 11, 9}, // exact
		{99, 55, 44},
		{100, 55, 45},
		{101, 56, 45},
		{199, 110, 89},
		{200, 110, 90},
		{revenue.Credit, 550_000_000, 450_000_000},
		{revenue.Credit + 1, 550_000_001, 450_000_000},
		{maxAmount, 5_072_854_620_270_126_694, 4_150_517_416_584_649_113},
		{maxAmount - 7, 5_072_854_620_270_126_690, 4_150_517_416_584_649_110},
	}
	for _, tt := range tests {
		c, p, err := revenue.Split(tt.gross)
		if err != nil || c != tt.creator || p != tt.platform {
			t.Errorf("Split(%d) = %d, %d, %v; want %d, %d", tt.gross, c, p, err, tt.creator, tt.platform)
		}
		checkSplit(t, tt.gross, c, p)
	}
	for _, g := range []revenue.Amount{-1, -100, math.MinInt64} {
		if c, p, err := revenue.Split(g); !errors.Is(err, revenue.ErrNegative) {
			t.Errorf("Split(%d) = %d, %d, %v; want ErrNegative", g, c, p, err)
		}
	}
}

func TestSplitProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := rapid.OneOf(
			rapid.Int64Range(0, math.MaxInt64),
			rapid.Int64Range(0, 10_000),
			rapid.Int64Range(math.MaxInt64-10_000, math.MaxInt64),
		).Draw(t, "gross")
		c, p, err := revenue.Split(revenue.Amount(g))
		if err != nil {
			t.Fatalf("Split(%d): %v", g, err)
		}
		checkSplit(t, revenue.Amount(g), c, p)
	})
}

// fataler is what both *testing.T and *rapid.T provide.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// checkSplit verifies the split of gross exactly, with math/big.
func checkSplit(t fataler, gross, creator, platform revenue.Amount) {
	t.Helper()
	g, c, p := big.NewInt(int64(gross)), big.NewInt(int64(creator)), big.NewInt(int64(platform))
	if sum := new(big.Int).Add(c, p); sum.Cmp(g) != 0 {
		t.Fatalf("Split(%d): creator %d + platform %d = %s", gross, creator, platform, sum)
	}
	// ceil(55g/100) = floor((55g + 99) / 100)
	want := new(big.Int).Mul(g, big.NewInt(revenue.CreatorPercent))
	want.Add(want, big.NewInt(99))
	want.Quo(want, big.NewInt(100))
	if c.Cmp(want) != 0 {
		t.Fatalf("Split(%d): creator %d, want ceil(gross*55/100) = %s", gross, creator, want)
	}
	// 0 <= 100*creator - 55*gross < 100, i.e. 0 <= creator - 0.55*gross < 1
	diff := new(big.Int).Mul(c, big.NewInt(100))
	diff.Sub(diff, new(big.Int).Mul(g, big.NewInt(revenue.CreatorPercent)))
	if diff.Sign() < 0 || diff.Cmp(big.NewInt(100)) >= 0 {
		t.Fatalf("Split(%d): 100*creator - 55*gross = %s, want in [0, 100)", gross, diff)
	}
	if creator < 0 || platform < 0 {
		t.Fatalf("Split(%d): negative share %d, %d", gross, creator, platform)
	}
}

func TestPercentages(t *testing.T) {
	if revenue.CreatorPercent+revenue.PlatformPercent != 100 {
		t.Fatalf("CreatorPercent %d + PlatformPercent %d != 100", revenue.CreatorPercent, revenue.PlatformPercent)
	}
}

var sinkAmount revenue.Amount

func BenchmarkSplit(b *testing.B) {
	grosses := make([]revenue.Amount, 1024)
	x := uint64(1)
	for i := range grosses {
		x = x*6364136223846793005 + 1442695040888963407 // LCG
		grosses[i] = revenue.Amount(x >> (1 + i%63))
	}
	i := 0
	for b.Loop() {
		c, p, err := revenue.Split(grosses[i%len(grosses)])
		if err != nil {
			b.Fatal(err)
		}
		sinkAmount += c ^ p
		i++
	}
}

// TestSplitSweep checks every residue mod 100 many times over, at both ends
// of the range.
func TestSplitSweep(t *testing.T) {
	for _, base := range []revenue.Amount{0, maxAmount - 20_000, maxAmount/2 - 10_000} {
		for g := base; g >= base && g-base <= 20_000; g++ { // g >= base: stop at MaxInt64
			c, p, err := revenue.Split(g)
			if err != nil {
				t.Fatalf("Split(%d): %v", g, err)
			}
			checkSplit(t, g, c, p)
			if g == maxAmount {
				break
			}
		}
	}
}
