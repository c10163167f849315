package compute_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/handshake/handshaketest"
)

type nothing struct{}

func (nothing) Export(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }
func (nothing) Import(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }

func newEnv(t *testing.T) *handshaketest.Env {
	return handshaketest.New(t, handshake.Resources{CPUMilli: 1000, MemoryBytes: 1 << 30, Pids: 256, DiskBytes: 2 << 30},
		func(e *handshake.Engine) error { return compute.Register(e, nothing{}, nothing{}) })
}

func workloads(s *handshaketest.Env, id string) map[string]*compute.Workload {
	m := s.IMVU(id)
	return compute.Of(&m).Workloads
}

// TestKinds walks a workload through its life and checks every refusal
// leaves the state as it was.
func TestKinds(t *testing.T) {
	s := newEnv(t)
	s.Must(s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "web", Args: []string{"httpd", "-f"}})
	w := workloads(s, "imvu042")["web"]
	if w == nil || w.Kind != compute.Container || w.Image != compute.ImageBusybox || w.CPUMilli != compute.DefaultCPUMilli ||
		w.MemoryBytes != compute.DefaultMemory || !w.Running || w.Generation != 1 {
		t.Fatalf("run left %+v", w)
	}
	if used := s.IMVU("imvu042").Used; used.CPUMilli != compute.DefaultCPUMilli || used.DiskBytes != compute.DefaultDisk {
		t.Fatalf("used after run: %+v", used)
	}
	s.Must(s.M42, compute.KindStop, "imvu042", compute.NameParams{Name: "web"})
	s.Must(s.O42, compute.KindSnapshot, "imvu042", compute.SnapshotParams{Name: "web", Snapshot: "s1"})
	s.Must(s.O42, compute.KindStart, "imvu042", compute.NameParams{Name: "web"})
	s.Must(s.Admin, compute.KindRollback, "imvu042", compute.SnapshotParams{Name: "web", Snapshot: "s1"}, s.O42)
	w = workloads(s, "imvu042")["web"]
	if !w.Running || w.Generation != 3 || len(w.Snapshots) != 1 || w.Rollback == nil || w.Rollback.Snapshot != "s1" {
		t.Fatalf("after stop, snapshot, start, rollback: %+v", w)
	}

	for _, c := range []struct {
		name   string
		actor  ed25519.PrivateKey
		kind   string
		scope  string
		params any
		cosign []ed25519.PrivateKey
		gate   string // "" for a refusal by the kind's own checks
		want   string
	}{
		{"past the CPU envelope", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "big", Args: []string{"true"}, CPUMilli: 600}, nil, "G07", "cpu_millicores"},
		{"past the memory envelope", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "big", Args: []string{"true"}, MemoryBytes: 1 << 30}, nil, "G07", "memory"},
		{"a name taken", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "web", Args: []string{"true"}, CPUMilli: 10}, nil, "G04", ""},
		{"admin without the owner", s.Admin, compute.KindStop, "imvu042", compute.NameParams{Name: "web"}, nil, "G06", ""},
		{"admin execs without the owner", s.Admin, compute.KindExec, "imvu042", compute.ExecParams{Name: "web", Args: []string{"id"}}, nil, "G06", ""},
		{"another IMVU's owner", s.O43, compute.KindRemove, "imvu042", compute.NameParams{Name: "web"}, nil, "G03", ""},
		{"a bad name", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "Web!", Args: []string{"true"}}, nil, "", "workload name"},
		{"an unknown kind", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "x", Kind: "pod", Args: []string{"true"}}, nil, "", "workload kind"},
		{"an image from a registry", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "x", Image: "nginx:latest", Args: []string{"true"}}, nil, "", "no registry"},
		{"a container without a command", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "x"}, nil, "", "needs a command"},
		{"a tiny VM", s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "x", Kind: compute.VM, MemoryBytes: 1 << 20}, nil, "", "at least 64Mi"},
		{"an unknown workload", s.O42, compute.KindStop, "imvu042", compute.NameParams{Name: "nope"}, nil, "", "no workload"},
		{"a snapshot name twice", s.O42, compute.KindSnapshot, "imvu042", compute.SnapshotParams{Name: "web", Snapshot: "s1"}, nil, "", "already has"},
		{"a rollback to nothing", s.O42, compute.KindRollback, "imvu042", compute.SnapshotParams{Name: "web", Snapshot: "s9"}, nil, "", "no snapshot"},
		{"an exec without a command", s.O42, compute.KindExec, "imvu042", compute.ExecParams{Name: "web"}, nil, "", "no command"},
		{"a restore larger than the disk", s.O42, compute.KindRestore, "imvu042",
			compute.RestoreParams{Name: "web", Blob: strings.Repeat("a", 64), Bytes: compute.DefaultDisk + 1}, nil, "", "does not fit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := s.IMVU("imvu042")
			err := s.Send(c.actor, c.kind, c.scope, c.params, c.cosign...)
			var d *handshake.Denial
			switch {
			case err == nil:
				t.Fatal("accepted")
			case !errors.As(err, &d):
				t.Fatalf("refused without a denial: %v", err)
			case c.gate != "" && d.Gate != c.gate:
				t.Fatalf("denied by %s (%s), want %s", d.Gate, d.Reason, c.gate)
			case !strings.Contains(d.Reason, c.want):
				t.Fatalf("denial %q does not say %q", d.Reason, c.want)
			}
			if after := s.IMVU("imvu042"); after.Used != before.Used || len(compute.Of(&after).Workloads) != len(compute.Of(&before).Workloads) {
				t.Fatal("a refused action changed the IMVU")
			}
		})
	}

	s.Must(s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "vm1", Kind: compute.VM, MemoryBytes: 256 << 20})
	if err := s.Send(s.O42, compute.KindExec, "imvu042", compute.ExecParams{Name: "vm1", Args: []string{"id"}}); err == nil ||
		!strings.Contains(err.Error(), "only containers") {
		t.Fatalf("exec in a VM: %v", err)
	}
	s.Must(s.O42, compute.KindRemove, "imvu042", compute.NameParams{Name: "web"})
	s.Must(s.O42, compute.KindRemove, "imvu042", compute.NameParams{Name: "vm1"})
	if used := s.IMVU("imvu042").Used; !used.IsZero() {
		t.Fatalf("used after removing everything: %+v", used)
	}
	s.Must(s.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "web", Args: []string{"true"}}) // the name is free again
}

func ExampleRegister() {
	// The daemon registers compute with an exporter and importer of the
	// workloads' files (DATA/imvu/<ID>/compute).
	var e *handshake.Engine // from handshake.New
	files := compute.Files{Root: func(imvu string) (string, error) { return "/var/lib/nexus/imvu/" + imvu + "/compute", nil }}
	if e != nil {
		_ = compute.Register(e, files, files)
	}
}
