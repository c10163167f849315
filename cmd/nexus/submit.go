package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/datadir"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// signing holds the flags every state-changing command shares.
type signing struct {
	cosign []string // key files of cosigners
	emit   string   // write the signed action here instead of submitting it
}

func (s *signing) flags(c *cobra.Command) {
	c.Flags().StringSliceVar(&s.cosign, "cosign", nil, "key file of a cosigner (repeatable), e.g. the IMVU owner's")
	c.Flags().StringVar(&s.emit, "emit", "", "write the signed action to FILE for others to cosign (`nexus action cosign`) instead of submitting it")
}

// submit builds an action from the caller's key, adds the cosignatures, and
// submits it (or writes it out with --emit).
func (e *env) submit(cmd *cobra.Command, s *signing, actor ed25519.PrivateKey, kind, scope string, params any) error {
	sa, err := s.seal(actor, kind, scope, params)
	if err != nil {
		return err
	}
	if s.emit != "" {
		b, err := json.MarshalIndent(sa, "", "  ")
		if err != nil {
			return err
		}
		if err := datadir.WriteFile(s.emit, b, 0o600); err != nil {
			return err
		}
		return e.print(map[string]string{"emitted": s.emit, "action": sa.ID()}, func(w io.Writer) {
			fmt.Fprintf(w, "wrote %s action to %s; cosign with `nexus action cosign %s`, then `nexus action submit %s`\n", kind, s.emit, s.emit, s.emit)
		})
	}
	return e.send(cmd, sa)
}

// seal builds and signs an action with the caller's key and the cosigners'.
func (s *signing) seal(actor ed25519.PrivateKey, kind, scope string, params any) (*action.Signed, error) {
	a, err := action.New(kind, scope, identity.PublicOf(actor), params)
	if err != nil {
		return nil, err
	}
	var cos []ed25519.PrivateKey
	for _, f := range s.cosign {
		k, err := identity.ReadKeyFile(f)
		if err != nil {
			return nil, err
		}
		cos = append(cos, k)
		a.Cosigners = append(a.Cosigners, identity.PublicOf(k))
	}
	sa, err := action.Seal(a, actor)
	if err != nil {
		return nil, err
	}
	for _, k := range cos {
		if err := sa.Sign(k); err != nil {
			return nil, err
		}
	}
	return sa, nil
}

// send submits a signed action and prints the result.
func (e *env) send(cmd *cobra.Command, sa *action.Signed) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	a, err := sa.Open()
	if err != nil {
		return err
	}
	res, err := c.Submit(ctxOf(cmd), sa)
	if err != nil {
		return err
	}
	return e.print(res, func(w io.Writer) {
		fmt.Fprintf(w, "accepted %s on %s: ledger index %d, effect %d, state %s\n", a.Kind, a.Scope, res.Index, res.Effect, res.State[:16])
	})
}

func cmdAction(e *env) *cobra.Command {
	c := &cobra.Command{Use: "action", Short: "Cosign and submit actions written with --emit (two-party flows)"}
	cos := &cobra.Command{
		Use:   "cosign FILE --key KEY",
		Short: "Add the caller's signature to the action in FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sa, _, err := e.cosignFile(args[0])
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(sa, "", "  ")
			return datadir.WriteFile(args[0], b, 0o600)
		},
	}
	sub := &cobra.Command{
		Use:   "submit FILE",
		Short: "Submit the signed action in FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sa, err := readAction(args[0])
			if err != nil {
				return err
			}
			return e.send(cmd, sa)
		},
	}
	c.AddCommand(cos, sub)
	return c
}

func readAction(path string) (*action.Signed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sa action.Signed
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &sa, nil
}

// envelopeFlags sets envelope fields from flags, over a base.
type envelopeFlags struct {
	cpu, memory, disk, io, net string
	pids, iops                 uint64
}

func (f *envelopeFlags) flags(c *cobra.Command) {
	c.Flags().StringVar(&f.cpu, "cpu", "", `CPU, e.g. "500m" or "2"`)
	c.Flags().StringVar(&f.memory, "memory", "", `memory, e.g. "512Mi"`)
	c.Flags().StringVar(&f.disk, "disk", "", `disk, e.g. "10Gi"`)
	c.Flags().StringVar(&f.io, "io", "", `IO bytes per second, e.g. "50Mi"`)
	c.Flags().StringVar(&f.net, "net", "", `network bytes per second, e.g. "100Mi"`)
	c.Flags().Uint64Var(&f.pids, "pids", 0, "process count")
	c.Flags().Uint64Var(&f.iops, "iops", 0, "IO operations per second")
}

func (f *envelopeFlags) apply(r handshake.Resources) (handshake.Resources, error) {
	var err error
	set := func(dst *uint64, flag, v string, parse func(string) (uint64, error)) {
		if err != nil || v == "" {
			return
		}
		var n uint64
		if n, err = parse(v); err != nil {
			err = fmt.Errorf("--%s %q: %w", flag, v, err)
			return
		}
		*dst = n
	}
	set(&r.CPUMilli, "cpu", f.cpu, parseCPU)
	set(&r.MemoryBytes, "memory", f.memory, parseBytes)
	set(&r.DiskBytes, "disk", f.disk, parseBytes)
	set(&r.IOBps, "io", f.io, parseBytes)
	set(&r.NetBps, "net", f.net, parseBytes)
	if f.pids != 0 {
		r.Pids = f.pids
	}
	if f.iops != 0 {
		r.IOPS = f.iops
	}
	return r, err
}

// parseCPU reads "500m" (millicores) or "2" (cores).
func parseCPU(s string) (uint64, error) {
	if m, ok := strings.CutSuffix(s, "m"); ok {
		return strconv.ParseUint(m, 10, 64)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf(`want millicores like "500m" or whole cores like "2"`)
	}
	return n * 1000, nil
}

// parseBytes reads a byte count with an optional Ki/Mi/Gi/Ti suffix.
func parseBytes(s string) (uint64, error) {
	mult := uint64(1)
	for i, suf := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if n, ok := strings.CutSuffix(s, suf); ok {
			s, mult = n, 1<<(10*(i+1))
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a whole number of bytes with an optional Ki, Mi, Gi or Ti suffix")
	}
	if n > ^uint64(0)/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}

// cosignFile reads the action in path and adds the caller's signature, which
// the action must name.
func (e *env) cosignFile(path string) (*action.Signed, *action.Action, error) {
	sa, err := readAction(path)
	if err != nil {
		return nil, nil, err
	}
	a, err := sa.Open()
	if err != nil {
		return nil, nil, err
	}
	k, err := e.callerKey()
	if err != nil {
		return nil, nil, err
	}
	pub := identity.PublicOf(k)
	named := false
	for _, s := range a.Signers() {
		named = named || s == pub
	}
	if !named {
		return nil, nil, fmt.Errorf("%s is not a signer named by the action (%s)", pub, path)
	}
	if err := sa.Sign(k); err != nil {
		return nil, nil, err
	}
	return sa, a, nil
}
