package revenue_test

import (
	"fmt"
	"time"

	"github.com/nexus-core/nexus/revenue"
)

func ExampleSplit() {
	for _, gross := range []revenue.Amount{1, 101, revenue.Credit + 1} {
		creator, platform, err := revenue.Split(gross)
		if err != nil {
			panic(err)
		}
		fmt.Printf("gross %d: creator %d, platform %d\n", gross, creator, platform)
	}
	// Output:
	// gross 1: creator 1, platform 0
	// gross 101: creator 56, platform 45
	// gross 1000000001: creator 550000001, platform 450000000
}

func ExampleSettle() {
	var months revenue.Calendar
	november, err := months.Parse("2026-11")
	if err != nil {
		panic(err)
	}
	sheet := revenue.PriceSheet{Version: "2026-q4", Prices: map[string]revenue.Amount{
		"cpu_ms":    20,
		"net_bytes": 2,
	}}
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	events := []revenue.Usage{ // in any order
		{IMVU: "acme", Resource: "cpu_ms", Meter: "node-1", Counter: 6_000, At: at("2026-11-30T23:00:00Z"), Index: 31},
		{IMVU: "acme", Resource: "cpu_ms", Meter: "node-1", Counter: 1_000, At: at("2026-10-31T12:00:00Z"), Index: 12}, // baseline
		{IMVU: "acme", Resource: "net_bytes", Meter: "edge", Counter: 1_000_000, At: at("2026-11-20T08:00:00Z"), Index: 25},
		{IMVU: "acme", Resource: "cpu_ms", Meter: "node-1", Counter: 4_000, At: at("2026-11-10T00:00:00Z"), Index: 20},
		{IMVU: "acme", Resource: "cpu_ms", Meter: "node-1", Counter: 9_999, At: at("2026-12-01T00:00:00Z"), Index: 40}, // next period
	}
	st, err := revenue.Settle("acme", november, sheet, events)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s: %d events, ledger %d..%d\n", st.IMVU, st.Period, st.Events, st.First, st.Last)
	for _, l := range st.Lines {
		fmt.Printf("  %-9s %-6s %7d -> %7d: %7d x %2d = %8d\n", l.Resource, l.Meter, l.From, l.To, l.Quantity, l.Price, l.Amount)
	}
	fmt.Printf("gross %d = creator %d + platform %d\n", st.Gross, st.Creator, st.Platform)
	fmt.Println("check:", st.Check())
	// Output:
	// acme 2026-11: 3 events, ledger 20..31
	//   cpu_ms    node-1    1000 ->    6000:    5000 x 20 =   100000
	//   net_bytes edge         0 -> 1000000: 1000000 x  2 =  2000000
	// gross 2100000 = creator 1155000 + platform 945000
	// check: <nil>
}
