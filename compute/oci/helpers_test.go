package oci

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-core/nexus/compute/cgroup"

	"github.com/nexus-core/nexus/internal/testenv"
)

// TestMain lets the test binary play a daemon that starts a container and
// is then killed -9 (see TestContainerOutlivesDaemon).
func TestMain(m *testing.M) {
	if os.Getenv("NEXUS_OCI_HELPER") == "run" {
		helperRun()
		return
	}
	os.Exit(m.Run())
}

func helperRun() {
	r := &Runc{Binary: os.Getenv("HELPER_RUNC"), Root: os.Getenv("HELPER_ROOT")}
	log, err := os.OpenFile(os.Getenv("HELPER_LOG"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	p, err := r.Run(context.Background(), os.Getenv("HELPER_ID"), os.Getenv("HELPER_BUNDLE"), log, log)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", p.Pid())
	select {} // until killed
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root")
	}
}

// requireRunc returns the runc binary, with root and busybox-static checked.
func requireRunc(t testing.TB) string {
	t.Helper()
	requireRoot(t)
	bin, err := exec.LookPath("runc")
	if err != nil {
		testenv.Missing(t, "runc not installed (apt-get install runc): %v", err)
	}
	if err := checkStatic(Busybox); err != nil {
		testenv.Missing(t, "busybox-static not installed: %v", err)
	}
	return bin
}

func randomID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newRunc returns a Runc with its own state directory; every container in
// it is force-deleted when the test ends.
func newRunc(t testing.TB) *Runc {
	t.Helper()
	r := &Runc{Binary: requireRunc(t), Root: filepath.Join(t.TempDir(), "runc")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		states, err := r.List(ctx)
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, s := range states {
			if err := r.Delete(ctx, s.ID, true); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return r
}

// lowerLayer builds a busybox rootfs once per test.
func lowerLayer(t testing.TB) string {
	t.Helper()
	lower := filepath.Join(t.TempDir(), "lower")
	if err := BuildBusybox(lower); err != nil {
		t.Fatal(err)
	}
	return lower
}

// envelope creates a unique parent cgroup with the given limits, killed
// and removed (with whatever runc left below it) when the test ends.
func envelope(t testing.TB, l cgroup.Limits) (*cgroup.Host, string) {
	t.Helper()
	h, err := cgroup.Detect()
	if err != nil {
		testenv.Missing(t, "no usable cgroups: %v", err)
	}
	path := "nexus-ocitest-" + randomID(t)
	if err := h.Create(path, l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Kill(ctx, path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := h.Remove(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		// Nothing left in any hierarchy, including those runc alone uses.
		if left, _ := filepath.Glob(filepath.Join(cgroup.DefaultRoot, "*", path)); len(left) > 0 {
			t.Errorf("cgroups left behind: %v", left)
		}
	})
	return h, path
}

// overlayBundle writes a bundle for s whose rootfs is an overlay of lower
// and a fresh upper directory, unmounted when the test ends.
func overlayBundle(t testing.TB, lower string, s Spec) (bundle, upper string) {
	t.Helper()
	dir := t.TempDir()
	bundle, upper = filepath.Join(dir, "bundle"), filepath.Join(dir, "upper")
	if err := WriteBundle(bundle, s); err != nil {
		t.Fatal(err)
	}
	mountUpper(t, lower, upper, filepath.Join(dir, "work"), filepath.Join(bundle, "rootfs"))
	return bundle, upper
}

func mountUpper(t testing.TB, lower, upper, work, merged string) {
	t.Helper()
	if err := MountOverlay(lower, upper, work, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Unmount(merged); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// spec is a container in the test's envelope cgroup.
func spec(h *cgroup.Host, parent, id string, args ...string) Spec {
	return Spec{ID: id, Args: args, Hostname: "box-" + id[:min(len(id), 8)], CgroupsPath: h.RuntimePath(parent + "/" + id)}
}

// logFile is a file for a container's output.
func logFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readLog(t testing.TB, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitCode waits for p with a timeout.
func waitCode(t testing.TB, p *Process, timeout time.Duration) int {
	t.Helper()
	type result struct {
		code int
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		code, err := p.Wait()
		ch <- result{code, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("wait for %s: %v", p.ID(), r.err)
		}
		return r.code
	case <-time.After(timeout):
		t.Fatalf("container %s still running after %v", p.ID(), timeout)
		return 0
	}
}

func exec1(t testing.TB, r *Runc, id string, args ...string) string {
	t.Helper()
	var out, errOut strings.Builder
	code, err := r.Exec(context.Background(), id, args, nil, &out, &errOut)
	if err != nil || code != 0 {
		t.Fatalf("exec %v: code %d, %v; stderr %q", args, code, err, errOut.String())
	}
	return out.String()
}

// helperDaemon starts the test binary as a daemon that runs one container,
// and returns it once the container runs.
func helperDaemon(t *testing.T, r *Runc, id, bundle, log string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NEXUS_OCI_HELPER=run", "HELPER_RUNC="+r.Binary, "HELPER_ROOT="+r.Root,
		"HELPER_ID="+id, "HELPER_BUNDLE="+bundle, "HELPER_LOG="+log)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pid ") {
		t.Fatalf("helper daemon: %q, %v", line, err)
	}
	return cmd
}

func isNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// killed reports whether err is a process killed by sig.
func killed(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}
