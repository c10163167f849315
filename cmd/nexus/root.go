package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/config"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/identity"
)

// env holds what every command resolves: where the data and the daemon are, who
// the caller is, and how to print.
type env struct {
	data   string
	apiURL string
	key    string
	output string
	out    io.Writer
}

func newRoot() *cobra.Command {
	e := &env{out: os.Stdout}
	root := &cobra.Command{
		Use:           "nexus",
		Short:         "Nexus Core: sovereign infrastructure for IMVUs, with the 55/45/17 handshake enforced in code",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if e.output != "text" && e.output != "json" {
				return fmt.Errorf("--output %q: want text or json", e.output)
			}
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&e.data, "data", "", "data directory (env NEXUS_DATA)")
	f.StringVar(&e.apiURL, "api", "", "daemon API: unix:/path/nexus.sock or http://127.0.0.1:PORT (env NEXUS_API; default from the data dir's config)")
	f.StringVar(&e.key, "key", "", "caller's private key file (env NEXUS_KEY; default the data dir's admin key)")
	f.StringVarP(&e.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(cmdInit(e), cmdServe(e), cmdStatus(e), cmdKey(e), cmdIMVU(e), cmdGates(e), cmdLedger(e),
		cmdRevenue(e), cmdEnvelope(e), cmdIdentity(e), cmdUsage(e), cmdAction(e), cmdBundle(e), cmdDNS(e), cmdDomain(e), cmdMail(e), cmdCompute(e), cmdNet(e), cmdDemo(e))
	return root
}

// dataDir resolves the data directory: flag, then NEXUS_DATA.
func (e *env) dataDir() (string, error) {
	d := e.data
	if d == "" {
		d = os.Getenv("NEXUS_DATA")
	}
	if d == "" {
		return "", fmt.Errorf("no data directory: pass --data or set NEXUS_DATA")
	}
	return d, nil
}

// client resolves the daemon: --api, then NEXUS_API, then the data dir's config.
func (e *env) client() (*api.Client, error) {
	addr := e.apiURL
	if addr == "" {
		addr = os.Getenv("NEXUS_API")
	}
	if addr == "" {
		root, err := e.dataDir()
		if err != nil {
			return nil, fmt.Errorf("cannot find the daemon: pass --api, set NEXUS_API, or pass --data")
		}
		dir, err := datadir.Open(root)
		if err != nil {
			return nil, err
		}
		cfg, err := config.Load(dir.Config())
		if err != nil {
			return nil, err
		}
		switch {
		case cfg.API.Socket != "":
			s := cfg.API.Socket
			if !filepath.IsAbs(s) {
				s = filepath.Join(dir.Root(), s)
			}
			addr = "unix:" + s
		default:
			addr = "http://" + cfg.API.Listen
		}
	}
	return api.Dial(addr)
}

// callerKey resolves the caller's key: --key, then NEXUS_KEY, then the data dir's
// admin key.
func (e *env) callerKey() (ed25519.PrivateKey, error) {
	path := e.key
	if path == "" {
		path = os.Getenv("NEXUS_KEY")
	}
	if path == "" {
		root, err := e.dataDir()
		if err != nil {
			return nil, fmt.Errorf("no caller key: pass --key, set NEXUS_KEY, or pass --data for its admin key")
		}
		dir, err := datadir.Open(root)
		if err != nil {
			return nil, err
		}
		path = dir.AdminKey()
	}
	return identity.ReadKeyFile(path)
}

// print writes v as JSON, or calls text for the text form.
func (e *env) print(v any, text func(w io.Writer)) error {
	if e.output == "json" {
		enc := json.NewEncoder(e.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(e.out)
	return nil
}

func ctxOf(cmd *cobra.Command) context.Context { return cmd.Context() }

// query signs a query with the caller's key and sends it to the daemon.
func (e *env) query(cmd *cobra.Command, kind, scope string, params, out any) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	k, err := e.callerKey()
	if err != nil {
		return err
	}
	return c.Query(ctxOf(cmd), k, kind, scope, params, out)
}
