package e2e

import (
	"testing"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/revenue"
)

// TestPriceAgreement: G11 Price agreement and G06 Consent for price sheets. A
// new sheet needs the owner's cosignature and applies from the next period at
// the earliest: no retroactive repricing.
func TestPriceAgreement(t *testing.T) {
	t.Parallel()
	n := newNode(t, "") // calendar months: "the next period" cannot roll over during the test
	o42 := n.createViaCLI(t, "imvu042")
	o43 := n.create(t, "imvu043")

	dearer := revenue.DefaultPriceSheet()
	dearer.Version = "dearer"
	dearer.Prices["cpu_ms"] *= 10
	cur := n.cal.Of(time.Now())
	prev := n.cal.Of(cur.Start.Add(-time.Nanosecond))
	next := n.cal.Next(cur)
	agree := func(from revenue.Period) handshake.PriceParams {
		return handshake.PriceParams{From: from.String(), Sheet: dearer}
	}
	var accepted *action.Signed
	watch := []string{"imvu042", "imvu043"}
	cases := []hostile{
		{
			name: "reprice the current period, owner-cosigned", gate: "G11", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu042", agree(cur), o42)
			},
		},
		{
			name: "reprice the previous period, owner-cosigned", gate: "G11", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu042", agree(prev), o42)
			},
		},
		{
			name: "new sheet from the next period without the owner", gate: "G06", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu042", agree(next))
			},
		},
		{
			name: "new sheet from the next period cosigned by imvu043's owner", gate: "G06", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu042", agree(next), o43)
			},
		},
		{
			name: "owner sets its own prices", gate: "G03", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindPriceAgree, "imvu042", agree(next), n.admin)
			},
		},
		{
			name: "new sheet with a period label that is not a period", gate: "G11", watch: watch,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu042",
					handshake.PriceParams{From: next.Start.Format(time.RFC3339), Sheet: dearer}, o42)
			},
		},
		{
			name: "new sheet from the next period, owner-cosigned (positive control)", gate: "",
			try: func(t *testing.T) attempt {
				accepted = signed(t, n.admin, handshake.KindPriceAgree, "imvu042", agree(next), nil, o42)
				return n.sendSigned(t, accepted)
			},
			check: func(t *testing.T, _ attempt) {
				terms := n.imvu(t, "imvu042").Terms
				if len(terms) != 2 || terms[1].From != next.String() || terms[1].Sheet.Version != "dearer" {
					t.Fatalf("imvu042's terms after the agreement: %+v", terms)
				}
			},
		},
		{
			name: "the accepted agreement replayed", gate: "G02", watch: watch,
			try: func(t *testing.T) attempt { return n.sendSigned(t, accepted) },
		},
		{
			name: "the current period is still priced by the handshake's sheet", gate: "G11", watch: watch,
			try: func(t *testing.T) attempt {
				// A second agreement cannot move the first one earlier either.
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu042", agree(cur), o42)
			},
			check: func(t *testing.T, _ attempt) {
				var st struct {
					SheetHash string `json:"sheet_hash"`
				}
				n.mustQuery(t, o42, "revenue.statement", "imvu042", map[string]string{"period": cur.String()}, &st)
				if want := n.imvu(t, "imvu042").Terms[0].Hash; st.SheetHash != want {
					t.Fatalf("the current period is priced by sheet %s; want the handshake's %s", st.SheetHash, want)
				}
			},
		},
	}
	n.run(t, cases)
}
