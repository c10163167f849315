package e2e

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/revenue"
)

// TestSettlementAndExit runs on 2-second periods: G09 Split integrity and G11
// Price agreement for settlements (no 50/50, no double or early settlement, no
// dropped usage), G10 for usage into a settled period, and G17 Exit freedom.
func TestSettlementAndExit(t *testing.T) {
	t.Parallel()
	n := newNode(t, "2s")
	o42 := n.createViaCLI(t, "imvu042")
	n.create(t, "imvu043")
	o44 := n.createViaCLI(t, "imvu044")

	// Usage in one period P, dated inside it (a meter dates its readings; the
	// gates accept any date within the skew window of now).
	p := n.cal.Of(time.Now())
	at := func(k int) time.Time { return p.Start.Add(time.Duration(k) * 10 * time.Millisecond) }
	for k, u := range []struct {
		imvu, meter, resource string
		counter               uint64
	}{
		{"imvu042", "compute", "cpu_ms", 1000}, {"imvu042", "compute", "mem_mib_s", 4096}, {"imvu042", "dns", "dns_queries", 500},
		{"imvu042", "mail", "mail_messages", 3}, {"imvu042", "net", "net_bytes", 123_456},
		{"imvu044", "compute", "cpu_ms", 777}, {"imvu044", "dns", "dns_queries", 10},
	} {
		n.must(t, n.meters[u.meter], handshake.KindUsage, u.imvu, usage(u.imvu, u.meter, u.resource, u.counter, at(k+1)))
	}
	time.Sleep(time.Until(p.End) + 100*time.Millisecond) // P closes

	statement := func(t *testing.T, id string, period revenue.Period) api.StatementAnswer {
		var ans api.StatementAnswer
		n.mustQuery(t, n.admin, api.QueryStatement, id, api.StatementParams{Period: period.String()}, &ans)
		return ans
	}
	settlement := func(ans api.StatementAnswer) handshake.SettleParams {
		return handshake.SettleParams{Period: ans.Period, First: ans.First, Last: ans.Last, Sheet: ans.SheetHashHex,
			Gross: ans.Gross, Creator: ans.Creator, Platform: ans.Platform}
	}
	split := func(t *testing.T, s *handshake.SettleParams, gross revenue.Amount) {
		c, pl, err := revenue.Split(gross)
		if err != nil {
			t.Fatal(err)
		}
		s.Gross, s.Creator, s.Platform = gross, c, pl
	}
	st42 := statement(t, "imvu042", p)
	if st42.Events != 5 || st42.Open || st42.Gross == 0 || len(st42.Lines) != 5 {
		t.Fatalf("imvu042's statement for %s: %+v; want 5 events in a closed period", p, st42)
	}
	if st42.Creator+st42.Platform != st42.Gross || st42.Creator != (st42.Gross*55+99)/100 {
		t.Fatalf("statement is not 55/45: %+v", st42)
	}
	try42 := func(edit func(t *testing.T, s *handshake.SettleParams)) func(t *testing.T) attempt {
		return func(t *testing.T) attempt {
			s := settlement(st42)
			edit(t, &s)
			return n.send(t, n.admin, handshake.KindSettle, "imvu042", s)
		}
	}
	var exiting api.StatementAnswer
	all := []string{"imvu042", "imvu043", "imvu044"}
	cases := []hostile{
		{
			name: "settlement at 50/50", gate: "G09", watch: all,
			try: try42(func(t *testing.T, s *handshake.SettleParams) {
				s.Creator, s.Platform = s.Gross/2, s.Gross-s.Gross/2
			}),
		},
		{
			name: "settlement where creator + platform exceeds gross", gate: "G09", watch: all,
			try: try42(func(t *testing.T, s *handshake.SettleParams) { s.Platform++ }),
		},
		{
			name: "settlement of the open period", gate: "G09", watch: all,
			try: func(t *testing.T) attempt {
				open := n.cal.Of(time.Now())
				if time.Until(open.End) < time.Second {
					open = n.cal.Next(open)
				}
				return n.send(t, n.admin, handshake.KindSettle, "imvu042", settlement(statement(t, "imvu042", open)))
			},
		},
		{
			name: "settlement whose gross omits the dns event", gate: "G11", watch: all,
			try: try42(func(t *testing.T, s *handshake.SettleParams) {
				var dns revenue.Amount
				for _, l := range st42.Lines {
					if l.Resource == "dns_queries" {
						dns = l.Amount
					}
				}
				if dns == 0 {
					t.Fatal("no dns line in the statement")
				}
				split(t, s, s.Gross-dns) // a 55/45 split of the smaller gross, so only G11 can tell
			}),
		},
		{
			name: "settlement covering a ledger range that leaves out the first event", gate: "G11", watch: all,
			try: try42(func(t *testing.T, s *handshake.SettleParams) { s.First++ }),
		},
		{
			name: "settlement covering a ledger range past the period's usage", gate: "G11", watch: all,
			try: try42(func(t *testing.T, s *handshake.SettleParams) { s.Last += 10 }),
		},
		{
			name: "settlement naming another price sheet", gate: "G11", watch: all,
			try: try42(func(t *testing.T, s *handshake.SettleParams) {
				dear := revenue.DefaultPriceSheet()
				dear.Prices["cpu_ms"] *= 10
				h := dear.Hash()
				s.Sheet = hex.EncodeToString(h[:])
			}),
		},
		{
			name: "settlement of a period before the IMVU existed", gate: "G11", watch: all,
			try: func(t *testing.T) attempt {
				old := n.cal.Of(p.Start.Add(-time.Hour))
				s := handshake.SettleParams{Period: old.String(), First: 1, Last: 0, Sheet: st42.SheetHashHex}
				return n.send(t, n.admin, handshake.KindSettle, "imvu042", s)
			},
		},
		{
			name: "owner settles its own IMVU", gate: "G03", watch: all,
			try: func(t *testing.T) attempt {
				return n.send(t, o42, handshake.KindSettle, "imvu042", settlement(st42))
			},
		},
		{
			name: "meter settles", gate: "G03", watch: all,
			try: func(t *testing.T) attempt {
				return n.send(t, n.meters["compute"], handshake.KindSettle, "imvu042", settlement(st42))
			},
		},
		{
			name: "settlement at 55/45 with the CLI (positive control)", gate: "",
			try: func(t *testing.T) attempt {
				out := n.cliOK(t, "revenue", "statement", "imvu042", "--period", p.String(), "--key", n.keyFile("imvu042"), "-o", "json")
				var seen api.StatementAnswer
				if err := json.Unmarshal([]byte(out), &seen); err != nil {
					t.Fatalf("revenue statement -o json: %v\n%s", err, out)
				}
				if seen.Gross != st42.Gross || seen.Creator != st42.Creator || seen.First != st42.First || seen.Last != st42.Last {
					t.Fatalf("the owner's statement %+v differs from the admin's %+v", seen, st42)
				}
				return n.cliAttempt(t, "imvu042", "revenue", "settle", "imvu042", "--period", p.String(), "--key", n.dd.AdminKey())
			},
			check: func(t *testing.T, _ attempt) {
				s, ok := n.imvu(t, "imvu042").Settled[p.String()]
				if !ok || s.Gross != st42.Gross || s.Creator != st42.Creator || s.Platform != st42.Platform {
					t.Fatalf("settlement of %s: %+v; want %d/%d of %d", p, s, st42.Creator, st42.Platform, st42.Gross)
				}
			},
		},
		{
			name: "the same period settled again (CLI)", gate: "G09", watch: all,
			try: func(t *testing.T) attempt {
				return n.cliAttempt(t, "imvu042", "revenue", "settle", "imvu042", "--period", p.String(), "--key", n.dd.AdminKey())
			},
		},
		{
			name: "the same period settled again by the root key", gate: "G09", watch: all,
			try: func(t *testing.T) attempt {
				return n.send(t, n.root, handshake.KindSettle, "imvu042", settlement(st42))
			},
		},
		{
			name: "late usage dated into the settled period", gate: "G10", watch: all,
			try: func(t *testing.T) attempt {
				return n.send(t, n.meters["compute"], handshake.KindUsage, "imvu042", usage("imvu042", "compute", "cpu_ms", 2000, at(50)))
			},
		},
		{
			name: "owner starts imvu044's exit with the CLI (positive control)", gate: "",
			try: func(t *testing.T) attempt {
				exiting = statement(t, "imvu044", p)
				if exiting.Events != 2 || exiting.Gross == 0 {
					t.Fatalf("imvu044's statement for %s: %+v", p, exiting)
				}
				return n.cliAttempt(t, "imvu044", "imvu", "exit", "imvu044", "--out", filepath.Join(t.TempDir(), "imvu044.tar"), "--key", n.keyFile("imvu044"))
			},
			check: func(t *testing.T, _ attempt) {
				if s := n.imvu(t, "imvu044").Status; s != handshake.StatusExiting {
					t.Fatalf("imvu044 is %s; want exiting", s)
				}
			},
		},
		{
			name: "admin settles the exiting IMVU's closed period at 55/45", gate: "G17", watch: all,
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, handshake.KindSettle, "imvu044", settlement(exiting))
			},
		},
		{
			name: "admin grows the exiting IMVU with its owner's cosignature", gate: "G17", watch: all,
			try: func(t *testing.T) attempt {
				env := n.envelope(t, "imvu044")
				env.CPUMilli += 100
				return n.send(t, n.admin, handshake.KindResize, "imvu044", handshake.EnvelopeParams{Envelope: env}, o44)
			},
		},
		{
			name: "admin shrinks the exiting IMVU with its owner's cosignature", gate: "G17", watch: all,
			try: func(t *testing.T) attempt {
				env := n.envelope(t, "imvu044")
				env.MemoryBytes /= 2
				return n.send(t, n.admin, handshake.KindResize, "imvu044", handshake.EnvelopeParams{Envelope: env}, o44)
			},
		},
		{
			name: "meter charges the exiting IMVU", gate: "G17", watch: all,
			try: func(t *testing.T) attempt {
				return n.send(t, n.meters["compute"], handshake.KindUsage, "imvu044", usage("imvu044", "compute", "cpu_ms", 5000, time.Now()))
			},
		},
		{
			name: "admin agrees new prices with the exiting IMVU's owner", gate: "G17", watch: all,
			try: func(t *testing.T) attempt {
				from := n.cal.Next(n.cal.Next(n.cal.Next(n.cal.Of(time.Now())))) // far enough that G11 passes
				return n.send(t, n.admin, handshake.KindPriceAgree, "imvu044",
					handshake.PriceParams{From: from.String(), Sheet: revenue.DefaultPriceSheet()}, o44)
			},
		},
		{
			// G17 binds the platform, not the IMVU: the owner's own actions
			// on itself still pass while it leaves.
			name: "the exiting IMVU's owner shrinks it (positive control)", gate: "",
			try: func(t *testing.T) attempt {
				env := n.envelope(t, "imvu044")
				env.CPUMilli -= 100
				return n.send(t, o44, handshake.KindResize, "imvu044", handshake.EnvelopeParams{Envelope: env})
			},
		},
		{
			name: "admin grows the exiting IMVU back with its owner as cosigner", gate: "G17", watch: all,
			try: func(t *testing.T) attempt {
				env := n.envelope(t, "imvu044")
				env.CPUMilli += 100
				return n.send(t, n.admin, handshake.KindResize, "imvu044", handshake.EnvelopeParams{Envelope: env}, o44)
			},
		},
	}
	n.run(t, cases)

	t.Run("the exiting IMVU's owner still reads its statement", func(t *testing.T) {
		var ans api.StatementAnswer
		n.mustQuery(t, o44, api.QueryStatement, "imvu044", api.StatementParams{Period: p.String()}, &ans)
		if ans.Gross != exiting.Gross || ans.Settled != nil {
			t.Fatalf("imvu044's statement %+v; want gross %d, unsettled", ans, exiting.Gross)
		}
	})
}
