package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexus-core/nexus/compute"
)

func cmdCompute(e *env) *cobra.Command {
	c := &cobra.Command{Use: "compute", Short: "Containers and VMs of an IMVU, inside its envelope"}

	var (
		kind, cpu, mem, disk string
		pids                 uint64
		envs                 []string
		sg                   signing
	)
	run := &cobra.Command{
		Use:   "run IMVU NAME [--kind container|vm] [--image busybox] [--cpu 500m --memory 128Mi --pids 64 --disk 256Mi] [-- COMMAND...]",
		Short: "Create a workload and start it (its share comes out of the IMVU's envelope)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := compute.RunParams{Name: args[1], Kind: kind, Image: cmd.Flag("image").Value.String(), Args: args[2:], Env: envs, Pids: pids}
			var err error
			for _, f := range []struct {
				flag, v string
				dst     *uint64
				parse   func(string) (uint64, error)
			}{{"cpu", cpu, &p.CPUMilli, parseCPU}, {"memory", mem, &p.MemoryBytes, parseBytes}, {"disk", disk, &p.DiskBytes, parseBytes}} {
				if f.v == "" {
					continue
				}
				if *f.dst, err = f.parse(f.v); err != nil {
					return fmt.Errorf("--%s %q: %w", f.flag, f.v, err)
				}
			}
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			return e.submit(cmd, &sg, k, compute.KindRun, args[0], p)
		},
	}
	run.Flags().StringVar(&kind, "kind", compute.Container, "container or vm")
	run.Flags().String("image", compute.ImageBusybox, "root filesystem: busybox (built here, no registry)")
	run.Flags().StringVar(&cpu, "cpu", "", `CPU, e.g. "500m" (default 500m)`)
	run.Flags().StringVar(&mem, "memory", "", `memory, e.g. "128Mi" (default 128Mi)`)
	run.Flags().StringVar(&disk, "disk", "", `disk for its files and snapshots, e.g. "256Mi" (default 256Mi)`)
	run.Flags().Uint64Var(&pids, "pids", 0, "process count (default 64)")
	run.Flags().StringSliceVar(&envs, "env", nil, "environment variable NAME=VALUE (repeatable)")
	sg.flags(run)
	c.AddCommand(run)

	// start, stop and rm take the same IMVU NAME.
	for _, n := range []struct{ use, short, kind string }{
		{"start", "Start a stopped workload", compute.KindStart},
		{"stop", "Stop a workload (it keeps its files and snapshots)", compute.KindStop},
		{"rm", "Remove a workload, its files and its snapshots; its share returns to the envelope", compute.KindRemove},
	} {
		var sg signing
		sub := &cobra.Command{
			Use:   n.use + " IMVU NAME",
			Short: n.short,
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				k, err := e.callerKey()
				if err != nil {
					return err
				}
				return e.submit(cmd, &sg, k, n.kind, args[0], compute.NameParams{Name: args[1]})
			},
		}
		sg.flags(sub)
		c.AddCommand(sub)
	}

	for _, n := range []struct{ use, short, kind string }{
		{"snapshot", "Keep a workload's files as they are now (counts against the disk envelope)", compute.KindSnapshot},
		{"rollback", "Put a workload's files back as a snapshot holds them, and restart it", compute.KindRollback},
	} {
		var sg signing
		sub := &cobra.Command{
			Use:   n.use + " IMVU NAME SNAPSHOT",
			Short: n.short,
			Args:  cobra.ExactArgs(3),
			RunE: func(cmd *cobra.Command, args []string) error {
				k, err := e.callerKey()
				if err != nil {
					return err
				}
				return e.submit(cmd, &sg, k, n.kind, args[0], compute.SnapshotParams{Name: args[1], Snapshot: args[2]})
			},
		}
		sg.flags(sub)
		c.AddCommand(sub)
	}

	var esg signing
	exec := &cobra.Command{
		Use:   "exec IMVU NAME -- COMMAND...",
		Short: "Run a command inside a running container; the request is ledgered before it runs",
		Args:  cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := e.callerKey()
			if err != nil {
				return err
			}
			sa, err := esg.seal(k, compute.KindExec, args[0], compute.ExecParams{Name: args[1], Args: args[2:]})
			if err != nil {
				return err
			}
			cl, err := e.client()
			if err != nil {
				return err
			}
			res, err := cl.Exec(ctxOf(cmd), sa)
			if err != nil {
				return err
			}
			if err := e.print(res, func(w io.Writer) { w.Write(res.Output) }); err != nil {
				return err
			}
			if res.Exit != 0 {
				return exitError{code: res.Exit, err: fmt.Errorf("the command exited with status %d (ledger index %d)", res.Exit, res.Index)}
			}
			return nil
		},
	}
	esg.flags(exec)
	c.AddCommand(exec)

	c.AddCommand(&cobra.Command{
		Use:   "ps IMVU",
		Short: "The IMVU's workloads: what the ledger asks for and what runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []compute.Status
			if err := e.query(cmd, compute.QueryPs, args[0], struct{}{}, &out); err != nil {
				return err
			}
			return e.print(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tWANT\tSTATE\tPID\tCPU\tMEMORY\tDISK USED\tSNAPSHOTS")
				for _, s := range out {
					state := s.State
					if s.Exit != nil {
						state = fmt.Sprintf("%s (%d)", state, *s.Exit)
					}
					if s.Error != "" {
						state += ": " + s.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%dm\t%s\t%s/%s\t%s\n", s.Name, s.Kind, s.Want, state, s.Pid, s.CPUMilli,
						size(s.Memory), size(s.DiskUsed), size(s.Disk), strings.Join(s.Snapshots, ","))
				}
				tw.Flush()
			})
		},
	})

	var tail int64
	logs := &cobra.Command{
		Use:   "logs IMVU NAME",
		Short: "A workload's output (a VM's serial console)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out compute.Logs
			if err := e.query(cmd, compute.QueryLogs, args[0], compute.LogsParams{Name: args[1], Bytes: tail}, &out); err != nil {
				return err
			}
			return e.print(out, func(w io.Writer) { io.WriteString(w, out.Log) })
		},
	}
	logs.Flags().Int64Var(&tail, "bytes", 0, "how much of the end to show (default 64 KiB)")
	c.AddCommand(logs)
	return c
}

// size shows a byte count in binary units.
func size(n uint64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"Gi", 30}, {"Mi", 20}, {"Ki", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 || n >= 10<<u.shift {
			return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
		}
	}
	return fmt.Sprint(n)
}
