package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/netfab"
)

// endpoint reads "imvu042:web".
func endpoint(s string) (netfab.Endpoint, error) {
	imvu, w, ok := strings.Cut(s, ":")
	if !ok || imvu == "" || w == "" {
		return netfab.Endpoint{}, fmt.Errorf("%q: want IMVU:WORKLOAD, e.g. imvu042:web", s)
	}
	return netfab.Endpoint{IMVU: imvu, Workload: w}, nil
}

func cmdNet(e *env) *cobra.Command {
	c := &cobra.Command{Use: "net", Short: "Networks of IMVUs: routes, egress, grants between IMVUs, drift"}

	c.AddCommand(&cobra.Command{
		Use:   "show IMVU",
		Short: "The IMVU's prefix, workload addresses and routes, egress policy, grants, limits and byte counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out daemon.NetShow
			if err := e.query(cmd, daemon.QueryNetShow, args[0], struct{}{}, &out); err != nil {
				return err
			}
			return e.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "network %s, gateway %s, egress policy %v, ceilings %d B/s %d pkt/s\n", out.Prefix, out.Gateway, out.Egress, out.RateBps, out.RatePPS)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "WORKLOAD\tADDRESS\tCLASS\tEGRESS")
				for _, wl := range out.Workloads {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", wl.Name, wl.Addr, wl.Class, wl.Egress)
				}
				fmt.Fprintln(tw, "GRANT\tFROM\tTO\tPORT\tACTIVE")
				for _, g := range out.Grants {
					fmt.Fprintf(tw, "%s\t%s:%s\t%s:%s\t%d/%s\t%v\n", g.ID, g.From.IMVU, g.From.Workload, g.To.IMVU, g.To.Workload, g.Port, g.Proto, g.Active)
				}
				fmt.Fprintln(tw, "CLASS\tBYTES IN\tBYTES OUT")
				for class, b := range out.Traffic {
					fmt.Fprintf(tw, "%s\t%d\t%d\n", class, b.In, b.Out)
				}
				tw.Flush()
			})
		},
	})

	route := &cobra.Command{Use: "route", Short: "Workload routes"}
	var (
		class, egress string
		rsg           signing
	)
	set := &cobra.Command{
		Use:   "set IMVU WORKLOAD --class public|private|restricted [--egress NAME] --key OWNER_KEY",
		Short: "Set a workload's route class (private: inside the IMVU; public: out through an egress point; restricted: granted peers only)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &rsg, k, netfab.KindRoute, args[0], netfab.RouteParams{Workload: args[1], Class: netfab.Class(class), Egress: egress})
		},
	}
	set.Flags().StringVar(&class, "class", "", "public, private or restricted")
	set.Flags().StringVar(&egress, "egress", "", "the egress point a public route leaves through (one the IMVU's policy allows)")
	rsg.flags(set)
	route.AddCommand(set)
	c.AddCommand(route)

	var (
		points []string
		psg    signing
	)
	policy := &cobra.Command{
		Use:   "policy IMVU --egress eu[,us] --key OWNER_KEY",
		Short: "Name the egress points the IMVU's public routes may leave through",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &psg, k, netfab.KindPolicy, args[0], netfab.PolicyParams{Egress: points})
		},
	}
	policy.Flags().StringSliceVar(&points, "egress", nil, "egress point names")
	psg.flags(policy)
	c.AddCommand(policy)

	var (
		port  uint16
		proto string
		out   string
	)
	grant := &cobra.Command{
		Use:   "grant FROM_IMVU:WORKLOAD TO_IMVU:WORKLOAD --port N [--proto tcp|udp] --key FROM_OWNER_KEY [--out FILE]",
		Short: "Offer a path between two IMVUs' workloads; it exists once the other owner accepts (nexus net grant accept FILE)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := endpoint(args[0])
			if err != nil {
				return err
			}
			to, err := endpoint(args[1])
			if err != nil {
				return err
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			cl, err := e.client()
			if err != nil {
				return err
			}
			offer, err := cl.Offer(ctxOf(cmd))
			if err != nil {
				return err
			}
			if len(offer.TLDs) == 0 {
				return fmt.Errorf("the platform offers no TLD to find %s's owner by", to.IMVU)
			}
			peer, err := cl.Lookup(ctxOf(cmd), to.IMVU+"."+offer.TLDs[0])
			if err != nil {
				return err
			}
			if peer.IMVU != to.IMVU {
				return fmt.Errorf("no IMVU %s on this platform", to.IMVU)
			}
			a, err := action.New(netfab.KindGrant, from.IMVU, identity.PublicOf(k), netfab.GrantParams{From: from, To: to, Port: port, Proto: proto})
			if err != nil {
				return err
			}
			a.Cosigners = []identity.PublicKey{peer.Owner}
			sa, err := action.Seal(a, k)
			if err != nil {
				return err
			}
			if out == "" {
				out = fmt.Sprintf("grant-%s-%s-%s-%s.json", from.IMVU, from.Workload, to.IMVU, to.Workload)
			}
			b, err := json.MarshalIndent(sa, "", "  ")
			if err != nil {
				return err
			}
			if err := datadir.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			return e.print(map[string]string{"offer": out, "action": sa.ID()}, func(w io.Writer) {
				fmt.Fprintf(w, "grant offered in %s; it takes effect when %s's owner runs `nexus net grant accept %s --key KEY`\n", out, to.IMVU, out)
			})
		},
	}
	grant.Flags().Uint16Var(&port, "port", 0, "the port the path opens on the TO workload")
	grant.Flags().StringVar(&proto, "proto", "tcp", "tcp or udp")
	grant.Flags().StringVar(&out, "out", "", "where to write the offer (default grant-FROM-TO.json)")
	grant.AddCommand(&cobra.Command{
		Use:   "accept OFFER_FILE --key TO_OWNER_KEY",
		Short: "Co-sign a grant offered to your IMVU and submit it: the path opens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sa, a, err := e.cosignFile(args[0])
			if err != nil {
				return err
			}
			if a.Kind != netfab.KindGrant {
				return fmt.Errorf("%s holds a %s action, not a grant", args[0], a.Kind)
			}
			cl, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Submit(ctxOf(cmd), sa)
			if err != nil {
				return err
			}
			id := netfab.GrantID(res.Index)
			return e.print(map[string]any{"grant": id, "index": res.Index}, func(w io.Writer) {
				fmt.Fprintf(w, "grant %s accepted: ledger index %d\n", id, res.Index)
			})
		},
	})
	var gsg signing
	revoke := &cobra.Command{
		Use:   "revoke IMVU GRANT_ID --key OWNER_KEY",
		Short: "Withdraw your IMVU's side of a grant: the path closes at once",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &gsg, k, netfab.KindRevoke, args[0], netfab.RevokeParams{ID: args[1]})
		},
	}
	gsg.flags(revoke)
	grant.AddCommand(revoke)
	c.AddCommand(grant)

	c.AddCommand(&cobra.Command{
		Use:   "drift IMVU",
		Short: "What the network reconciler found changed by hand and reverted, from the ledger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := e.client()
			if err != nil {
				return err
			}
			st, err := cl.Status(ctxOf(cmd))
			if err != nil {
				return err
			}
			drift := []driftEntry{}
			const window = 1000
			for start := uint64(0); start < st.Ledger.Size; start += window {
				var page []api.Entry
				if err := e.query(cmd, api.QueryEntries, args[0], api.EntriesParams{Start: start, Count: window}, &page); err != nil {
					return err
				}
				for _, en := range page {
					if en.Type != string(handshake.RecordDrift) || en.Record == nil {
						continue
					}
					rec, err := handshake.ParseRecord(en.Record)
					if err != nil {
						return err
					}
					drift = append(drift, driftEntry{Index: en.Index, Time: en.Time, Kind: rec.Kind, Reason: rec.Reason})
				}
			}
			return e.print(drift, func(w io.Writer) {
				for _, d := range drift {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", d.Index, d.Time, d.Kind, d.Reason)
				}
			})
		},
	})
	return c
}

type driftEntry struct {
	Index  uint64 `json:"index"`
	Time   string `json:"time"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}
