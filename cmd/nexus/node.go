package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/daemon"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

func cmdInit(e *env) *cobra.Command {
	var opts daemon.InitOptions
	c := &cobra.Command{
		Use:   "init --data DIR [--dev]",
		Short: "Create a data directory: config, platform keys, the first admin, the meters and the genesis entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := e.dataDir()
			if err != nil {
				return err
			}
			if err := daemon.Init(ctxOf(cmd), root, opts); err != nil {
				return err
			}
			return e.print(map[string]string{"data": root}, func(w io.Writer) {
				fmt.Fprintf(w, "initialised %s\n", root)
			})
		},
	}
	c.Flags().BoolVar(&opts.Dev, "dev", false, "bind every listener to a free 127.0.0.1 port when serve starts (nexus status shows them)")
	c.Flags().StringVar(&opts.Period, "period", "", `settlement period: "month" (default) or a duration like "10s"`)
	c.Flags().StringSliceVar(&opts.TLDs, "tld", nil, `platform TLD IMVU names are bound under (repeatable; default "world")`)
	return c
}

func cmdServe(e *env) *cobra.Command {
	var level string
	c := &cobra.Command{
		Use:   "serve --data DIR",
		Short: "Run the daemon: ledger, handshake engine and API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := e.dataDir()
			if err != nil {
				return err
			}
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: %w", level, err)
			}
			logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
			n, err := daemon.Start(ctxOf(cmd), root, logger)
			if err != nil {
				return err
			}
			for _, l := range n.Status().Listeners {
				fmt.Fprintf(e.out, "listening %s %s %s\n", l.Name, l.Network, l.Address)
			}
			fmt.Fprintln(e.out, "ready")
			<-ctxOf(cmd).Done()
			logger.Info("shutting down")
			return n.Close()
		},
	}
	c.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return c
}

func cmdStatus(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's listeners, ledger size and IMVU count",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			s, err := c.Status(ctxOf(cmd))
			if err != nil {
				return err
			}
			return e.print(s, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "version\t%s\n", s.Version)
				for _, l := range s.Listeners {
					fmt.Fprintf(tw, "listener\t%s %s %s\n", l.Name, l.Network, l.Address)
				}
				fmt.Fprintf(tw, "ledger\t%d entries, root %s\n", s.Ledger.Size, s.Ledger.Root)
				fmt.Fprintf(tw, "imvus\t%d\n", s.IMVUs)
				health := "accepting actions"
				if !s.Healthy {
					health = "REFUSING actions: a ledger append or an applier failed; restart to replay"
				}
				fmt.Fprintf(tw, "engine\t%s\n", health)
				tw.Flush()
			})
		},
	}
}

func cmdKey(e *env) *cobra.Command {
	c := &cobra.Command{Use: "key", Short: "Make and inspect identity keys (on the caller's side)"}
	var out string
	newc := &cobra.Command{
		Use:   "new --out FILE",
		Short: "Generate an Ed25519 key into FILE (mode 0600); prints its public key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out FILE is required")
			}
			k, err := identity.Generate()
			if err != nil {
				return err
			}
			if err := identity.WriteKeyFile(out, k); err != nil {
				return err
			}
			pub := identity.PublicOf(k).String()
			return e.print(map[string]string{"file": out, "public_key": pub}, func(w io.Writer) { fmt.Fprintln(w, pub) })
		},
	}
	newc.Flags().StringVar(&out, "out", "", "file to write the private key to")
	var file string
	pubc := &cobra.Command{
		Use:   "public --key FILE",
		Short: "Print the public key of a key file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				file = e.key
			}
			k, err := identity.ReadKeyFile(file)
			if err != nil {
				return err
			}
			pub := identity.PublicOf(k).String()
			return e.print(map[string]string{"public_key": pub}, func(w io.Writer) { fmt.Fprintln(w, pub) })
		},
	}
	pubc.Flags().StringVar(&file, "file", "", "key file (default --key)")
	c.AddCommand(newc, pubc)
	return c
}

func cmdGates(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "gates",
		Short: "List the 17 gates: id, name and what each checks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			gs := handshake.Gates()
			return e.print(gs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				for _, g := range gs {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", g.ID, g.Name, g.Checks)
				}
				tw.Flush()
			})
		},
	}
}
