package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/dns"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/registry"
)

// owningIMVU asks the registry which IMVU holds zone.
func (e *env) owningIMVU(cmd *cobra.Command, zone string) (string, error) {
	c, err := e.client()
	if err != nil {
		return "", err
	}
	b, err := c.Lookup(ctxOf(cmd), zone)
	if err != nil {
		return "", err
	}
	if b.Domain != strings.TrimSuffix(strings.ToLower(zone), ".") {
		return "", fmt.Errorf("%s is not a zone: it lies under %s (IMVU %s)", zone, b.Domain, b.IMVU)
	}
	return b.IMVU, nil
}

// submitFor submits an action signed with the caller's key on the IMVU that
// holds zone.
func (e *env) submitFor(cmd *cobra.Command, sg *signing, zone, kind string, params any) error {
	imvu, err := e.owningIMVU(cmd, zone)
	if err != nil {
		return err
	}
	k, err := e.callerKey()
	if err != nil {
		return err
	}
	return e.submit(cmd, sg, k, kind, imvu, params)
}

// zone reads one zone of an IMVU as the caller may see it.
func (e *env) zone(cmd *cobra.Command, imvu, origin string) (registry.Zone, error) {
	var st struct {
		Resources map[string]json.RawMessage `json:"resources"`
	}
	z := registry.Zone{Origin: strings.TrimSuffix(strings.ToLower(origin), ".")}
	if err := e.query(cmd, api.QueryIMVU, imvu, nil, &st); err != nil {
		return z, err
	}
	if raw, ok := st.Resources["zone:"+z.Origin]; ok {
		if err := json.Unmarshal(raw, &z); err != nil {
			return z, err
		}
	}
	return z, nil
}

func cmdDNS(e *env) *cobra.Command {
	c := &cobra.Command{Use: "dns", Short: "Records of the domains an IMVU holds"}
	var (
		ttl uint32
		sg  signing
	)
	set := &cobra.Command{
		Use:   "set ZONE NAME TYPE DATA... --key KEY",
		Short: `Set one RRset, replacing what was there: nexus dns set imvu042.world stage A 10.0.0.5`,
		Args:  cobra.MinimumNArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := registry.SetParams{Zone: args[0], Name: args[1], Type: strings.ToUpper(args[2]), TTL: ttl, Data: args[3:]}
			return e.submitFor(cmd, &sg, args[0], registry.KindSet, p)
		},
	}
	set.Flags().Uint32Var(&ttl, "ttl", registry.DefaultTTL, "time to live in seconds")
	sg.flags(set)

	var rsg signing
	rm := &cobra.Command{
		Use:   "rm ZONE NAME [TYPE] --key KEY",
		Short: "Remove the records of a name (of one type, or all)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := registry.RemoveParams{Zone: args[0], Name: args[1]}
			if len(args) == 3 {
				p.Type = strings.ToUpper(args[2])
			}
			return e.submitFor(cmd, &rsg, args[0], registry.KindRemove, p)
		},
	}
	rsg.flags(rm)

	ls := &cobra.Command{
		Use:   "ls ZONE --key KEY",
		Short: "List a zone's records",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			imvu, err := e.owningIMVU(cmd, args[0])
			if err != nil {
				return err
			}
			z, err := e.zone(cmd, imvu, args[0])
			if err != nil {
				return err
			}
			return e.print(z, func(w io.Writer) {
				rows := [][]string{{"NAME", "TTL", "TYPE", "DATA"}}
				for _, r := range z.Records {
					rows = append(rows, []string{r.Name, strconv.FormatUint(uint64(r.TTL), 10), r.Type, r.Data})
				}
				printLines(w, rows)
			})
		},
	}

	export := &cobra.Command{
		Use:   "export ZONE --key KEY > zone.txt",
		Short: "Write a zone in RFC 1035 master file format",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			imvu, err := e.owningIMVU(cmd, args[0])
			if err != nil {
				return err
			}
			z, err := e.zone(cmd, imvu, args[0])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			offer, err := c.Offer(ctxOf(cmd))
			if err != nil {
				return err
			}
			comp, err := dns.Build(dns.Zone{Origin: z.Origin, IMVU: imvu, Serial: z.Serial + 1, Records: z.Records},
				offer.Nameservers, offer.Hostmaster)
			if err != nil {
				return err
			}
			return dns.WriteZoneFile(e.out, comp)
		},
	}

	var isg signing
	imp := &cobra.Command{
		Use:   "import ZONE FILE --key KEY",
		Short: "Replace a zone's records with those of an RFC 1035 master file (the apex SOA and NS stay the platform's)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[1])
			if err != nil {
				return err
			}
			recs, err := dns.ParseZoneFile(args[0], f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			return e.submitFor(cmd, &isg, args[0], registry.KindImport, registry.ImportParams{Zone: args[0], Records: recs})
		},
	}
	isg.flags(imp)
	ds := &cobra.Command{
		Use:   "ds ZONE",
		Short: "Print the zone's DNSKEY and the DS to give the parent (the trust anchor for validators)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.Status(ctxOf(cmd))
			if err != nil {
				return err
			}
			addr := ""
			for _, l := range st.Listeners {
				if l.Name == "dns" && l.Network == "udp" {
					addr = l.Address
				}
			}
			if addr == "" {
				return errors.New("the daemon serves no DNS")
			}
			m := new(mdns.Msg)
			m.SetQuestion(mdns.Fqdn(args[0]), mdns.TypeDNSKEY)
			m.SetEdns0(1232, true)
			r, err := mdns.ExchangeContext(ctxOf(cmd), m, addr)
			if err != nil {
				return fmt.Errorf("DNSKEY of %s: %w", args[0], err)
			}
			var keys, dss []string
			for _, rr := range r.Answer {
				if k, ok := rr.(*mdns.DNSKEY); ok {
					keys = append(keys, k.String())
					if d := k.ToDS(mdns.SHA256); d != nil {
						dss = append(dss, d.String())
					}
				}
			}
			if len(keys) == 0 {
				return fmt.Errorf("%s is not signed (no DNSKEY; is dns.dnssec on?)", args[0])
			}
			return e.print(map[string][]string{"dnskey": keys, "ds": dss}, func(w io.Writer) {
				for _, s := range append(keys, dss...) {
					fmt.Fprintln(w, s)
				}
			})
		},
	}
	c.AddCommand(set, rm, ls, export, imp, ds)
	return c
}

func cmdDomain(e *env) *cobra.Command {
	c := &cobra.Command{Use: "domain", Short: "Bind and transfer domains in the platform's registry"}
	var (
		imvu string
		bsg  signing
	)
	bind := &cobra.Command{
		Use:   "bind NAME --imvu IMVU --key OWNER_KEY",
		Short: "Bind a free name under a platform TLD to an IMVU",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if imvu == "" {
				return errors.New("--imvu is required")
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &bsg, k, registry.KindBind, imvu, registry.BindParams{Name: args[0]})
		},
	}
	bind.Flags().StringVar(&imvu, "imvu", "", "the IMVU to bind the name to")
	bsg.flags(bind)

	var (
		toKey, toIMVU string
		tsg           signing
	)
	transfer := &cobra.Command{
		Use:   "transfer NAME --to-key PUBKEY --to-imvu IMVU --key HOLDER_KEY --cosign RECIPIENT_KEY",
		Short: "Move a domain to another IMVU: its holder and the recipient's owner both sign (G12, G05)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := e.owningIMVU(cmd, args[0])
			if err != nil {
				return err
			}
			to, err := readPublic(toKey)
			if err != nil {
				return fmt.Errorf("--to-key: %w", err)
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			z, err := e.zone(cmd, from, args[0])
			if err != nil {
				return err
			}
			return e.submit(cmd, &tsg, k, registry.KindTransfer, from, registry.TransferParams{Name: args[0], To: to, IMVU: toIMVU, Zone: z})
		},
	}
	transfer.Flags().StringVar(&toKey, "to-key", "", "the recipient owner's public key (ed25519:...) or key file")
	transfer.Flags().StringVar(&toIMVU, "to-imvu", "", "the IMVU that receives the name")
	tsg.flags(transfer)
	c.AddCommand(bind, transfer)
	return c
}

// readPublic reads a public key given as text or as a private key file.
func readPublic(s string) (identity.PublicKey, error) {
	if strings.HasPrefix(s, "ed25519:") {
		return identity.ParsePublicKey(s)
	}
	k, err := identity.ReadKeyFile(s)
	if err != nil {
		return identity.PublicKey{}, err
	}
	return identity.PublicOf(k), nil
}
