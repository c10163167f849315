package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/revenue"
)

func cmdRevenue(e *env) *cobra.Command {
	c := &cobra.Command{Use: "revenue", Short: "Revenue statements and settlements (55% creator / 45% platform)"}
	var period string
	stmt := &cobra.Command{
		Use:   "statement NAME [--period P]",
		Short: "Show gross, creator and platform shares, the ledger range and the price sheet of a period",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ans, err := e.statement(cmd, args[0], period)
			if err != nil {
				return err
			}
			return e.print(ans, func(w io.Writer) { printStatement(w, ans) })
		},
	}
	stmt.Flags().StringVar(&period, "period", "", "period label (default: the current period)")

	var settlePeriod string
	var sg signing
	settle := &cobra.Command{
		Use:   "settle NAME --period P",
		Short: "Settle a closed period at the exact 55/45 split, as a platform-signed ledger entry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if settlePeriod == "" {
				return errors.New("--period is required")
			}
			ans, err := e.statement(cmd, args[0], settlePeriod)
			if err != nil {
				return err
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			p := handshake.SettleParams{Period: ans.Period, First: ans.First, Last: ans.Last, Sheet: ans.SheetHashHex,
				Gross: ans.Gross, Creator: ans.Creator, Platform: ans.Platform}
			return e.submit(cmd, &sg, k, handshake.KindSettle, args[0], p)
		},
	}
	settle.Flags().StringVar(&settlePeriod, "period", "", "the closed period to settle")
	sg.flags(settle)
	var (
		from, sheetFile string
		psg             signing
	)
	price := &cobra.Command{
		Use:   "price NAME --from PERIOD --sheet FILE --cosign OWNER_KEY",
		Short: "Agree a new price sheet with an IMVU; it applies from the next period at the earliest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || sheetFile == "" {
				return errors.New("--from and --sheet are required")
			}
			b, err := os.ReadFile(sheetFile)
			if err != nil {
				return err
			}
			var sheet revenue.PriceSheet
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&sheet); err != nil {
				return fmt.Errorf("--sheet %s: %w", sheetFile, err)
			}
			if err := sheet.Validate(); err != nil {
				return fmt.Errorf("--sheet %s: %w", sheetFile, err)
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &psg, k, handshake.KindPriceAgree, args[0], handshake.PriceParams{From: from, Sheet: sheet})
		},
	}
	price.Flags().StringVar(&from, "from", "", "first period the sheet prices")
	price.Flags().StringVar(&sheetFile, "sheet", "", `JSON price sheet: {"version": "...", "prices": {"cpu_ms": 20, ...}}`)
	psg.flags(price)
	c.AddCommand(stmt, settle, price)
	return c
}

func (e *env) statement(cmd *cobra.Command, imvu, period string) (api.StatementAnswer, error) {
	var ans api.StatementAnswer
	err := e.query(cmd, api.QueryStatement, imvu, api.StatementParams{Period: period}, &ans)
	return ans, err
}

func credits(a revenue.Amount) string {
	return fmt.Sprintf("%d.%09d", a/revenue.Credit, a%revenue.Credit)
}

func printStatement(w io.Writer, s api.StatementAnswer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	state := "closed, unsettled"
	switch {
	case s.Settled != nil:
		state = fmt.Sprintf("settled at ledger index %d", s.Settled.Index)
	case s.Open:
		state = "open"
	}
	span := "no usage"
	if s.Events > 0 {
		span = fmt.Sprintf("%d usage events at ledger [%d, %d]", s.Events, s.First, s.Last)
	}
	fmt.Fprintf(w, "IMVU %s, period %s (%s)\nprice sheet %s, %s\n", s.IMVU, s.Period, state, s.SheetHashHex[:16], span)
	fmt.Fprintln(tw, "resource\tmeter\tquantity\tprice\tamount (nanocredits)\t")
	for _, l := range s.Lines {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t\n", l.Resource, l.Meter, l.Quantity, l.Price, l.Amount)
	}
	tw.Flush()
	fmt.Fprintf(w, "gross    %d nanocredits (%s credits)\ncreator  %d (55%%, rounded up)\nplatform %d (45%%)\n", s.Gross, credits(s.Gross), s.Creator, s.Platform)
}

func cmdIdentity(e *env) *cobra.Command {
	c := &cobra.Command{Use: "identity", Short: "Issue and revoke identities (platform root: admins, meters; IMVU owner: members)"}
	var (
		scope, role, name, subject string
		days                       int
		sg                         signing
	)
	issue := &cobra.Command{
		Use:   "issue --scope S --role R --subject PUBKEY --key ISSUER_KEY",
		Short: "Issue an identity to a subject key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			sub, err := identity.ParsePublicKey(subject)
			if err != nil {
				return fmt.Errorf("--subject: %w", err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			id, err := identity.Issue(k, identity.Statement{Issuer: identity.PublicOf(k), Subject: sub, Scope: scope,
				Role: identity.Role(role), Name: name, NotBefore: now, NotAfter: now.AddDate(0, 0, days)})
			if err != nil {
				return err
			}
			return e.submit(cmd, &sg, k, handshake.KindIssue, scope, handshake.IssueParams{Identity: id})
		},
	}
	issue.Flags().StringVar(&scope, "scope", identity.ScopePlatform, `"platform" or an IMVU id`)
	issue.Flags().StringVar(&role, "role", "member", "admin or meter (platform scope), member (IMVU scope)")
	issue.Flags().StringVar(&name, "name", "", "a name for the identity (a meter's service, a member's mailbox)")
	issue.Flags().StringVar(&subject, "subject", "", "the subject's public key (ed25519:...)")
	issue.Flags().IntVar(&days, "days", 365, "validity in days")
	sg.flags(issue)

	var rscope string
	var rsg signing
	revoke := &cobra.Command{
		Use:   "revoke PUBKEY --scope S --key ISSUER_KEY",
		Short: "Revoke an identity the caller issued; the revocation is a ledger entry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			sub, err := identity.ParsePublicKey(args[0])
			if err != nil {
				return err
			}
			return e.submit(cmd, &rsg, k, handshake.KindRevoke, rscope, handshake.RevokeParams{Key: sub})
		},
	}
	revoke.Flags().StringVar(&rscope, "scope", identity.ScopePlatform, `"platform" or an IMVU id`)
	rsg.flags(revoke)
	c.AddCommand(issue, revoke)
	return c
}

func cmdUsage(e *env) *cobra.Command {
	c := &cobra.Command{Use: "usage", Short: "Meter usage (the daemon's meters do this; the command exists for meters outside it)"}
	var (
		resource string
		counter  uint64
		sg       signing
	)
	rec := &cobra.Command{
		Use:   "record NAME --resource R --counter N --key METER_KEY",
		Short: "Record a meter's cumulative counter for one IMVU resource",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			name, err := meterName(e, k)
			if err != nil {
				return err
			}
			ev := revenue.Usage{IMVU: args[0], Resource: resource, Meter: name, Counter: counter, At: time.Now().UTC()}
			return e.submit(cmd, &sg, k, handshake.KindUsage, args[0], handshake.UsageParams{Events: []revenue.Usage{ev}})
		},
	}
	rec.Flags().StringVar(&resource, "resource", "", "resource name from the price sheet, e.g. cpu_ms")
	rec.Flags().Uint64Var(&counter, "counter", 0, "the meter's cumulative counter")
	sg.flags(rec)
	c.AddCommand(rec)
	return c
}

// meterName finds the meter name of key among the data dir's meter key files.
func meterName(e *env, k []byte) (string, error) {
	if n := os.Getenv("NEXUS_METER"); n != "" {
		return n, nil
	}
	root, err := e.dataDir()
	if err != nil {
		return "", errors.New("set NEXUS_METER or pass --data so the meter's name can be found")
	}
	dir, err := datadir.Open(root)
	if err != nil {
		return "", err
	}
	for _, n := range daemon.MeterNames() {
		mk, err := identity.ReadKeyFile(dir.MeterKey(n))
		if err == nil && string(mk) == string(k) {
			return n, nil
		}
	}
	return "", errors.New("the key is not one of the data dir's meter keys; set NEXUS_METER")
}

func printLines(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		for _, c := range r {
			fmt.Fprintf(tw, "%s\t", c)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
