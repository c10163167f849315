package compute_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/compute/cgroup"
	"github.com/nexus-core/nexus/compute/oci"
	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/handshake/handshaketest"

	"github.com/nexus-core/nexus/internal/testenv"
)

// rig is a real supervisor (cgroups, runc) over a real engine.
type rig struct {
	env *handshaketest.Env
	sup *compute.Supervisor
	cg  *cgroup.Host
	dir string
}

func newRig(tb testing.TB, envelope handshake.Resources) *rig {
	tb.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(tb, "%s", "needs root (cgroups, mounts, runc)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		testenv.Missing(tb, "%s", "needs runc")
	}
	cg, err := cgroup.Detect()
	if err != nil {
		tb.Fatal(err)
	}
	r := &rig{cg: cg, dir: tb.TempDir()}
	r.env = handshaketest.New(tb, envelope, func(e *handshake.Engine) error { return compute.Register(e, nothing{}, nothing{}) })
	b := make([]byte, 4)
	rand.Read(b)
	slice := "nexus-test/" + hex.EncodeToString(b)
	runDir := filepath.Join(r.dir, "run")
	r.sup, err = compute.NewSupervisor(compute.Config{State: r.env.Engine, Root: func(id string) (string, error) { return filepath.Join(r.dir, id), nil },
		Run: runDir, Cgroups: cg, Slice: slice, Runc: &oci.Runc{Root: filepath.Join(runDir, "runc")}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// Remove every workload through the ledger, then let a pass clean up.
		for _, id := range []string{"imvu042", "imvu043"} {
			m := r.env.IMVU(id)
			for _, name := range compute.Of(&m).Names() {
				r.env.Send(r.owner(id), compute.KindRemove, id, compute.NameParams{Name: name})
			}
		}
		r.sup.Reconcile(context.Background())
		cg.Remove(slice)
		cg.Remove("nexus-test")
	})
	return r
}

func (r *rig) owner(id string) []byte {
	if id == "imvu043" {
		return r.env.O43
	}
	return r.env.O42
}

// wait polls the supervisor until the workload's state is want.
func (r *rig) wait(tb testing.TB, id, name, want string) compute.Status {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st compute.Status
		r.env.Engine.View(func(s *handshake.State) error {
			for _, x := range r.sup.Status(s, id) {
				if x.Name == name {
					st = x
				}
			}
			return nil
		})
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s/%s: %+v, want %s", id, name, st, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkRunTrue is a busybox `true` container through nexus: the signed
// compute.run through the 17 gates and the ledger (two fsyncs), the
// supervisor's pass (cgroup, overlay, bundle, runc run), until it exited.
// Compare with compute/oci's BenchmarkBareRuncRun (bench/compute.sh runs both).
func BenchmarkRunTrue(b *testing.B) {
	r := newRig(b, handshake.Resources{CPUMilli: 1 << 20, MemoryBytes: 1 << 50, Pids: 1 << 20, DiskBytes: 1 << 50})
	ctx := context.Background()
	// The IMVU's root filesystem is built once, by its first workload.
	r.env.Must(r.env.O42, compute.KindRun, "imvu042", compute.RunParams{Name: "warm", Args: []string{"true"}})
	r.sup.Reconcile(ctx)
	r.wait(b, "imvu042", "warm", "exited")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("t%d", i)
		r.env.Must(r.env.O42, compute.KindRun, "imvu042", compute.RunParams{Name: name, Args: []string{"true"}, CPUMilli: 2000, MemoryBytes: 1 << 30})
		r.sup.Reconcile(ctx)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		exit, err := r.sup.Wait(wctx, "imvu042", name)
		cancel()
		if err != nil || exit == nil || *exit != 0 {
			b.Fatalf("%s: exit %v, %v", name, exit, err)
		}
		// Bare `runc run` deletes its container before it returns (inside
		// its time); here the removal is its own action, outside the timer,
		// so the next start meets the same machine.
		b.StopTimer()
		r.env.Must(r.env.O42, compute.KindRemove, "imvu042", compute.NameParams{Name: name})
		r.sup.Reconcile(ctx)
		b.StartTimer()
	}
}

// BenchmarkReconcile50 is one supervisor pass over 50 running containers,
// metering included: the cost of keeping the machine in step with the
// ledger, paid every 2 s (ns/op divided by 2e9 is the CPU share).
func BenchmarkReconcile50(b *testing.B) {
	r := newRig(b, handshake.Resources{CPUMilli: 1 << 20, MemoryBytes: 1 << 50, Pids: 1 << 20, DiskBytes: 1 << 50})
	ctx := context.Background()
	for i := range 50 {
		id := []string{"imvu042", "imvu043"}[i%2]
		r.env.Must(r.owner(id), compute.KindRun, id, compute.RunParams{Name: fmt.Sprintf("w%d", i), CPUMilli: 10, MemoryBytes: 16 << 20, Args: []string{"sleep", "600"}})
	}
	r.sup.Reconcile(ctx)
	r.wait(b, "imvu043", "w49", "running")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.sup.Reconcile(ctx)
	}
	b.StopTimer()
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(per/2e9*100, "%cpu@2s")
}

// BenchmarkBootVM is a VM through nexus, from the signed compute.run to the
// marker its init prints on the serial console. Compare with compute/vm's
// BenchmarkBareQemu (bench/compute.sh runs both).
func BenchmarkBootVM(b *testing.B) {
	r := newRig(b, handshake.Resources{CPUMilli: 1 << 20, MemoryBytes: 1 << 50, Pids: 1 << 20, DiskBytes: 1 << 50})
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("vm%d", i)
		r.env.Must(r.env.O42, compute.KindRun, "imvu042", compute.RunParams{Name: name, Kind: compute.VM, CPUMilli: 2000, MemoryBytes: 256 << 20})
		r.sup.Reconcile(ctx)
		log := filepath.Join(r.dir, "imvu042", name, "output.log")
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if b, _ := os.ReadFile(log); strings.Contains(string(b), "NEXUS-VM-UP") {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("no marker within 90 s")
			}
		}
		b.StopTimer()
		r.env.Must(r.env.O42, compute.KindRemove, "imvu042", compute.NameParams{Name: name})
		r.sup.Reconcile(ctx)
		b.StartTimer()
	}
}
