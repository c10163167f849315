package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
	"github.com/nexus-core/nexus/mailbox"
	"github.com/nexus-core/nexus/netfab"
)

func cmdIMVU(e *env) *cobra.Command {
	c := &cobra.Command{Use: "imvu", Short: "Create, list, show and exit IMVUs"}
	var (
		ownerKey string
		env      envelopeFlags
		powers   []string
		sg       signing
	)
	create := &cobra.Command{
		Use:   "create NAME --owner-key FILE",
		Short: "Perform the handshake: the creator signs, the platform countersigns; envelope and price sheet are recorded",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ownerKey == "" {
				return fmt.Errorf("--owner-key FILE is required (make one with `nexus key new --out FILE`)")
			}
			if err := identity.ValidScope(args[0]); err != nil || args[0] == identity.ScopePlatform {
				return fmt.Errorf("IMVU name %q: want a lowercase letter, then up to 62 of a-z 0-9 -", args[0])
			}
			owner, err := identity.ReadKeyFile(ownerKey)
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
			envl, err := env.apply(offer.Envelope)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("power") {
				powers = offer.Powers
			}
			h := offer.Handshake(args[0], identity.PublicOf(owner))
			h.Envelope, h.Powers = envl, powers
			if err := e.submit(cmd, &sg, owner, handshake.KindCreate, args[0], h); err != nil || sg.emit != "" {
				return err
			}
			// Its own network: a prefix from the platform's pool.
			if err := e.submit(cmd, &signing{}, owner, netfab.KindCreate, args[0], netfab.CreateParams{}); err != nil || len(offer.TLDs) == 0 {
				return err
			}
			// The default mailbox, bound to the creator; `nexus mail passwd` sets its password.
			addr := "creator@" + args[0] + "." + offer.TLDs[0]
			if err := e.submit(cmd, &signing{}, owner, mailbox.KindAdd, args[0], mailbox.AddParams{Address: addr, Identity: identity.PublicOf(owner)}); err != nil || offer.MailAddress == "" {
				return err
			}
			// Where its mail goes, signed by the creator: no config edit moves it.
			if err := e.submit(cmd, &signing{}, owner, mailbox.KindMX, args[0], mailbox.MXParams{Address: offer.MailAddress}); err != nil {
				return err
			}
			// And the DKIM keys its home domain publishes.
			return e.signDKIM(cmd, owner, args[0], args[0]+"."+offer.TLDs[0], "s1")
		},
	}
	create.Flags().StringVar(&ownerKey, "owner-key", "", "the creator's key file; it never leaves this machine")
	create.Flags().StringSliceVar(&powers, "power", nil, "platform powers to pre-consent to (default: those the platform offers)")
	env.flags(create)
	sg.flags(create)

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the IMVUs the caller may see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.listIMVUs(cmd, identity.ScopePlatform)
		},
	}
	var scope string
	ls.Flags().StringVar(&scope, "scope", identity.ScopePlatform, "list inside this scope (an IMVU owner passes its IMVU)")
	ls.RunE = func(cmd *cobra.Command, _ []string) error { return e.listIMVUs(cmd, scope) }

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show an IMVU: all of it to its owner and members, its summary to admins",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw json.RawMessage
			if err := e.query(cmd, api.QueryIMVU, args[0], nil, &raw); err != nil {
				return err
			}
			var out struct {
				api.Summary
				Handshake *uint64  `json:"handshake"`
				Powers    []string `json:"powers"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			return e.print(raw, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "id\t%s\nowner\t%s\nstatus\t%s\ncreated\t%s\n", out.ID, out.Owner, out.Status, out.Created)
				if out.Handshake != nil {
					fmt.Fprintf(tw, "handshake\tledger index %d\n", *out.Handshake)
				}
				fmt.Fprintf(tw, "envelope\t%s\nused\t%s\n", formatResources(out.Envelope), formatResources(out.Used))
				if out.Powers != nil {
					fmt.Fprintf(tw, "powers\t%s\n", strings.Join(out.Powers, ", "))
				}
				tw.Flush()
			})
		},
	}
	var exitSg signing
	var out string
	exit := &cobra.Command{
		Use:   "exit NAME --out bundle.tar --key OWNER_KEY",
		Short: "Exit: from now on the platform can only export the IMVU; writes its bundle (domains, data, ledger proofs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out FILE is required: the bundle is what you leave with")
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			var sum api.Summary
			if err := e.query(cmd, api.QueryIMVU, args[0], nil, &sum); err != nil {
				return err
			}
			if sum.Status == handshake.StatusActive {
				if err := e.submit(cmd, &exitSg, k, handshake.KindExit, args[0], handshake.ExitParams{}); err != nil {
					return err
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			tmp := out + ".part"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			prog := newProgress(os.Stderr, "export")
			err = c.Export(ctxOf(cmd), k, args[0], f, func(done, total int64) { prog.update(uint64(done), uint64(max(total, 0))) })
			prog.done()
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(tmp, out)
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			sumHex, err := fileSHA256(out)
			if err != nil {
				return err
			}
			return e.print(map[string]string{"bundle": out, "sha256": sumHex}, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s (sha256 %s)\ncheck it with `nexus bundle verify %s`, then acknowledge with `nexus imvu ack-exit %s --bundle %s`\n", out, sumHex, out, args[0], out)
			})
		},
	}
	exit.Flags().StringVar(&out, "out", "", "file to write the exit bundle to")
	exitSg.flags(exit)

	var ackBundle string
	var ackSg signing
	ack := &cobra.Command{
		Use:   "ack-exit NAME --bundle bundle.tar --key OWNER_KEY",
		Short: "Acknowledge the exit bundle after verifying it offline; only now may the platform delete the IMVU's data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ackBundle == "" {
				return errors.New("--bundle FILE is required")
			}
			if _, err := verifyBundleFile(ctxOf(cmd), ackBundle, ""); err != nil {
				return fmt.Errorf("refusing to acknowledge: %w", err)
			}
			sumHex, err := fileSHA256(ackBundle)
			if err != nil {
				return err
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &ackSg, k, handshake.KindAck, args[0], handshake.AckParams{Bundle: sumHex})
		},
	}
	ack.Flags().StringVar(&ackBundle, "bundle", "", "the exit bundle you received")
	ackSg.flags(ack)
	c.AddCommand(create, ls, show, exit, ack, cmdImport(e))
	return c
}

func (e *env) listIMVUs(cmd *cobra.Command, scope string) error {
	var out []api.Summary
	if err := e.query(cmd, api.QueryIMVUs, scope, nil, &out); err != nil {
		return err
	}
	return e.print(out, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tCPU\tMEMORY\tCREATED\tOWNER")
		for _, s := range out {
			created, _ := time.Parse(time.RFC3339, s.Created)
			fmt.Fprintf(tw, "%s\t%s\t%dm\t%dMi\t%s\t%s\n", s.ID, s.Status, s.Envelope.CPUMilli, s.Envelope.MemoryBytes>>20,
				created.Format("2006-01-02 15:04"), s.Owner)
		}
		tw.Flush()
	})
}

func cmdEnvelope(e *env) *cobra.Command {
	c := &cobra.Command{Use: "envelope", Short: "Show and resize IMVU envelopes"}
	var (
		env envelopeFlags
		sg  signing
	)
	resize := &cobra.Command{
		Use:   "resize NAME [--cpu ...] --key KEY [--cosign OWNER_KEY]",
		Short: "Resize an envelope; an admin needs the owner's co-signature, and nobody may shrink it without the owner",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var cur api.Summary
			if err := e.query(cmd, api.QueryIMVU, args[0], nil, &cur); err != nil {
				return err
			}
			next, err := env.apply(cur.Envelope)
			if err != nil {
				return err
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &sg, k, handshake.KindResize, args[0], handshake.EnvelopeParams{Envelope: next})
		},
	}
	env.flags(resize)
	sg.flags(resize)
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show an envelope: allocated, used and left",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s api.Summary
			if err := e.query(cmd, api.QueryIMVU, args[0], nil, &s); err != nil {
				return err
			}
			left, _ := s.Envelope.Sub(s.Used)
			out := map[string]handshake.Resources{"allocated": s.Envelope, "used": s.Used, "left": left}
			return e.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "allocated  %s\nused       %s\nleft       %s\n", formatResources(s.Envelope), formatResources(s.Used), formatResources(left))
			})
		},
	}
	c.AddCommand(resize, show)
	return c
}

// formatResources renders an envelope for people.
func formatResources(r handshake.Resources) string {
	return fmt.Sprintf("cpu %dm, memory %s, pids %d, disk %s, io %s/s %d iops, net %s/s, dns records %d, mailboxes %d, mail %s",
		r.CPUMilli, iec(r.MemoryBytes), r.Pids, iec(r.DiskBytes), iec(r.IOBps), r.IOPS, iec(r.NetBps), r.DNSRecords, r.Mailboxes, iec(r.MailBytes))
}

// iec renders a byte count with the largest binary unit that divides it.
func iec(n uint64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"Ti", 40}, {"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
		}
	}
	return fmt.Sprintf("%d", n)
}

// signDKIM asks the node for the public keys of a domain's selector and
// submits mail.dkim.rotate with them, signed by the owner.
func (e *env) signDKIM(cmd *cobra.Command, owner ed25519.PrivateKey, imvu, domain, selector string) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	var keys mailbox.DKIM
	if err := c.Query(ctxOf(cmd), owner, mailbox.QueryKeys, imvu, mailbox.KeysParams{Domain: domain, Selector: selector}, &keys); err != nil {
		return err
	}
	return e.submit(cmd, &signing{}, owner, mailbox.KindRotate, imvu, mailbox.RotateParams{Domain: domain, Selector: selector, Ed25519: keys.Ed25519, RSA: keys.RSA})
}
