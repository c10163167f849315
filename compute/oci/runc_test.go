package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-core/nexus/archive"
	"github.com/nexus-core/nexus/compute/cgroup"
)

func TestRunExitCodesAndLogs(t *testing.T) {
	r := newRunc(t)
	lower := lowerLayer(t)
	h, parent := envelope(t, cgroup.Limits{})
	for _, tt := range []struct {
		script string
		code   int
	}{
		{"echo hello from $(hostname); exit 0", 0},
		{"echo failing >&2; exit 3", 3},
	} {
		id := "exit-" + randomID(t)
		bundle, _ := overlayBundle(t, lower, spec(h, parent, id, "sh", "-c", tt.script))
		out := logFile(t)
		p, err := r.Run(context.Background(), id, bundle, out, out)
		if err != nil {
			t.Fatal(err)
		}
		if code := waitCode(t, p, 10*time.Second); code != tt.code {
			t.Errorf("%q exited %d, want %d; log %q", tt.script, code, tt.code, readLog(t, out))
		}
		st, err := r.State(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != StatusStopped || st.ExitCode != tt.code || st.Pid != 0 || st.Bundle != bundle {
			t.Errorf("State after exit = %+v, want stopped with code %d", st, tt.code)
		}
		if err := r.Delete(context.Background(), id, false); err != nil {
			t.Fatal(err)
		}
		if _, err := r.State(context.Background(), id); !isNotExist(err) {
			t.Errorf("State after Delete: %v, want ErrNotExist", err)
		}
		if err := r.Delete(context.Background(), id, false); err != nil {
			t.Errorf("second Delete: %v", err)
		}
		if _, err := os.Stat(filepath.Join(r.Root, id)); !os.IsNotExist(err) {
			t.Errorf("Delete left the state directory: %v", err)
		}
		if tt.code == 0 {
			if got, want := readLog(t, out), "hello from box-"+id[:8]+"\n"; got != want {
				t.Errorf("log = %q, want %q", got, want)
			}
		}
	}
}

func TestRunFailsClearly(t *testing.T) {
	r := newRunc(t)
	h, parent := envelope(t, cgroup.Limits{})
	id := "fail-" + randomID(t)
	bundle, _ := overlayBundle(t, lowerLayer(t), spec(h, parent, id, "/no/such/binary"))
	_, err := r.Run(context.Background(), id, bundle, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Run of a missing binary: %v, want runc's reason", err)
	}
	t.Logf("error: %v", err)
	if states, err := r.List(context.Background()); err != nil || len(states) != 0 {
		t.Errorf("List after a failed Run = %v, %v; want nothing", states, err)
	}
	if _, err := r.Run(context.Background(), "bad/id", bundle, nil, nil); err == nil {
		t.Error("Run with a bad ID succeeded")
	}
	if _, err := r.Run(context.Background(), id, t.TempDir(), nil, nil); err == nil {
		t.Error("Run without config.json succeeded")
	}
}

// TestContainerOutlivesDaemon kills -9 the process that started a
// container and finds the container again from a fresh Runc.
func TestContainerOutlivesDaemon(t *testing.T) {
	r := newRunc(t)
	h, parent := envelope(t, cgroup.Limits{})
	id := "survivor-" + randomID(t)
	bundle, _ := overlayBundle(t, lowerLayer(t), spec(h, parent, id, "sh", "-c", "echo started; exec sleep 600"))
	log := filepath.Join(t.TempDir(), "out.log")
	daemon := helperDaemon(t, r, id, bundle, log)
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Wait(); !killed(err, syscall.SIGKILL) {
		t.Fatalf("daemon: %v", err)
	}

	fresh := &Runc{Binary: r.Binary, Root: r.Root}
	ctx := context.Background()
	st, err := fresh.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusRunning || st.Pid <= 0 || st.ExitCode != -1 {
		t.Fatalf("State after the daemon died = %+v, want running", st)
	}
	if err := syscall.Kill(st.Pid, 0); err != nil {
		t.Fatalf("init %d: %v", st.Pid, err)
	}
	list, err := fresh.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(list, func(s State) bool { return s.ID == id }); i < 0 || list[i].Status != StatusRunning {
		t.Fatalf("List = %+v, want %s running", list, id)
	}
	// The shim outlived its parent too, and is recognised as the shim.
	shim, err := readPid(filepath.Join(fresh.Root, id, shimPidFile))
	if err != nil || !isShim(shim, id) {
		t.Fatalf("shim %d (%v) not recognised", shim, err)
	}
	p, err := fresh.Process(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() != st.Pid {
		t.Errorf("Process pid %d, State pid %d", p.Pid(), st.Pid)
	}
	if err := fresh.Kill(ctx, id, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, 10*time.Second); code != 137 {
		t.Errorf("exit code after SIGKILL = %d, want 137", code)
	}
	if st, err := fresh.State(ctx, id); err != nil || st.Status != StatusStopped || st.ExitCode != 137 {
		t.Errorf("State = %+v, %v; want stopped, 137", st, err)
	}
	if b, _ := os.ReadFile(log); string(b) != "started\n" {
		t.Errorf("log = %q", b)
	}
	// A handle on a stopped container returns at once.
	p, err = fresh.Process(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, time.Second); code != 137 {
		t.Errorf("Process of a stopped container: %d", code)
	}
	if err := fresh.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
}

func TestExecAndIsolation(t *testing.T) {
	r := newRunc(t)
	h, parent := envelope(t, cgroup.Limits{})
	id := "iso-" + randomID(t)
	s := spec(h, parent, id, "sleep", "600")
	bundle, _ := overlayBundle(t, lowerLayer(t), s)
	p, err := r.Run(context.Background(), id, bundle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if got := strings.TrimSpace(exec1(t, r, id, "hostname")); got != s.Hostname {
		t.Errorf("hostname = %q, want %q", got, s.Hostname)
	}
	// Only its own processes: sleep as pid 1 and the ps itself.
	ps := exec1(t, r, id, "ps", "-o", "pid,comm")
	var comms []string
	for _, line := range strings.Split(strings.TrimSpace(ps), "\n")[1:] {
		f := strings.Fields(line)
		comms = append(comms, f[1])
		if f[0] == "1" && f[1] != "sleep" {
			t.Errorf("pid 1 is %s, want sleep", f[1])
		}
	}
	if !slices.Equal(comms, []string{"sleep", "ps"}) {
		t.Errorf("ps inside the container:\n%s", ps)
	}
	// Only loopback, and it is up.
	ifaces := exec1(t, r, id, "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
	if strings.TrimSpace(ifaces) != "lo" {
		t.Errorf("interfaces: %q, want lo only", ifaces)
	}
	if out := exec1(t, r, id, "cat", "/sys/class/net/lo/operstate"); strings.TrimSpace(out) == "down" {
		t.Error("loopback is down")
	}
	// The capability set: nothing beyond the documented twelve.
	status := exec1(t, r, id, "cat", "/proc/self/status")
	var want uint64
	for _, c := range []int{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_KILL,
		unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP} {
		want |= 1 << c
	}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && (k == "CapEff" || k == "CapBnd") {
			got, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if got != want {
				t.Errorf("%s = %#x, want %#x", k, got, want)
			}
		}
		if k, v, ok := strings.Cut(line, ":"); ok && k == "NoNewPrivs" && strings.TrimSpace(v) != "1" {
			t.Error("NoNewPrivs not set")
		}
	}
	// No raw sockets; unprivileged ICMP sockets are allowed instead
	// (busybox's ping does not use them, iputils' does).
	var pingErr strings.Builder
	if code, err := r.Exec(ctx, id, []string{"ping", "-c", "1", "127.0.0.1"}, nil, nil, &pingErr); err != nil || code == 0 || !strings.Contains(pingErr.String(), "permission denied") {
		t.Errorf("raw ping: %d, %v, %q; want permission denied", code, err, pingErr.String())
	}
	if got := strings.Fields(exec1(t, r, id, "cat", "/proc/sys/net/ipv4/ping_group_range")); !slices.Equal(got, []string{"0", "2147483647"}) {
		t.Errorf("ping_group_range = %v", got)
	}

	// Exit codes, stdin, and a command that cannot run.
	var out bytes.Buffer
	code, err := r.Exec(ctx, id, []string{"sh", "-c", "read x; echo got $x; exit 5"}, strings.NewReader("input\n"), &out, nil)
	if err != nil || code != 5 || out.String() != "got input\n" {
		t.Errorf("Exec = %d, %v, %q; want 5, nil, \"got input\"", code, err, out.String())
	}
	if _, err := r.Exec(ctx, id, []string{"no-such-command"}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Exec of a missing command: %v", err)
	}
	if _, err := r.Exec(ctx, "nosuch", []string{"true"}, nil, nil, nil); !isNotExist(err) {
		t.Errorf("Exec in a missing container: %v", err)
	}

	// Pause and resume.
	if err := r.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := r.State(ctx, id); err != nil || st.Status != StatusPaused {
		t.Errorf("State after Pause = %+v, %v", st, err)
	}
	if err := r.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := r.State(ctx, id); err != nil || st.Status != StatusRunning {
		t.Errorf("State after Resume = %+v, %v", st, err)
	}
	if _, err := exec.LookPath("criu"); err != nil {
		if err := r.Checkpoint(ctx, id, t.TempDir()); !errors.Is(err, ErrNoCRIU) {
			t.Errorf("Checkpoint without criu: %v", err)
		}
	}

	if err := r.Delete(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, 10*time.Second); code != 137 {
		t.Errorf("exit code after forced delete = %d, want 137", code)
	}
}

func TestEnvelopeHoldsForkBomb(t *testing.T) {
	r := newRunc(t)
	const pidsMax = 32
	h, parent := envelope(t, cgroup.Limits{Pids: pidsMax})
	id := "bomb-" + randomID(t)
	// The container itself has no pids limit: only the envelope holds it.
	bundle, _ := overlayBundle(t, lowerLayer(t), spec(h, parent, id, "sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 600"))
	out := logFile(t)
	p, err := r.Run(context.Background(), id, bundle, out, out)
	if err != nil {
		t.Fatal(err)
	}
	var peak uint64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		u, err := h.Usage(parent)
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, u.Pids)
		if u.Pids > pidsMax {
			t.Fatalf("pids.current %d above the envelope's %d", u.Pids, pidsMax)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("fork bomb peak: %d processes under pids.max %d", peak, pidsMax)
	if peak < pidsMax-2 {
		t.Errorf("fork bomb peaked at %d; want it pressing against %d", peak, pidsMax)
	}
	// The host is unaffected.
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("host fork: %v", err)
	}
	if !strings.Contains(readLog(t, out), "can't fork") {
		t.Errorf("no fork failures logged: %q", readLog(t, out)[:min(200, len(readLog(t, out)))])
	}
	if err := r.Kill(context.Background(), id, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, 10*time.Second); code != 137 {
		t.Errorf("exit code %d, want 137", code)
	}
	if err := r.Delete(context.Background(), id, false); err != nil {
		t.Fatal(err)
	}
	if pids, err := h.Procs(parent); err != nil || len(pids) != 0 {
		t.Errorf("processes left in the envelope: %v, %v", pids, err)
	}
}

func TestEnvelopeOOMKillsHog(t *testing.T) {
	r := newRunc(t)
	h, parent := envelope(t, cgroup.Limits{MemoryBytes: 32 << 20})
	id := "hog-" + randomID(t)
	bundle, _ := overlayBundle(t, lowerLayer(t), spec(h, parent, id, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"))
	p, err := r.Run(context.Background(), id, bundle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, 20*time.Second); code != 137 {
		t.Errorf("hog exited %d, want 137 (OOM-killed)", code)
	}
	// Before Delete: on v1 the kill is counted in the container's cgroup.
	u, err := h.Usage(parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("envelope after the hog: %+v", u)
	if u.OOMKills < 1 || u.MemoryPeakBytes > 33<<20 {
		t.Errorf("envelope usage %+v: want an OOM kill and a peak at the 32 MiB limit", u)
	}
	if err := r.Delete(context.Background(), id, false); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	r := newRunc(t)
	h, parent := envelope(t, cgroup.Limits{})
	lower := lowerLayer(t)
	ctx := context.Background()

	id := "snap-" + randomID(t)
	bundle, upper := overlayBundle(t, lower, spec(h, parent, id, "sh", "-c",
		"echo data > /hello.txt && rm /etc/hosts && mkdir -p /var/app && echo x > /var/app/f && chown 1000:1000 /var/app/f"))
	p, err := r.Run(ctx, id, bundle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, 10*time.Second); code != 0 {
		t.Fatalf("writer exited %d", code)
	}
	if err := r.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "hello.txt")); err != nil || string(b) != "data\n" {
		t.Errorf("upper/hello.txt = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(lower, "hello.txt")); !os.IsNotExist(err) {
		t.Errorf("the write reached the shared lower layer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lower, "etc/hosts")); err != nil {
		t.Errorf("the delete reached the shared lower layer: %v", err)
	}
	used, err := DiskUsage(upper)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upper layer uses %d bytes", used)

	var snap bytes.Buffer
	if err := archive.Write(ctx, upper, &snap); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %d bytes", snap.Len())

	// A new workload from the snapshot over the same lower layer.
	id2 := "restored-" + randomID(t)
	dir := t.TempDir()
	bundle2, upper2 := filepath.Join(dir, "bundle"), filepath.Join(dir, "upper")
	if err := archive.Extract(ctx, &snap, upper2, archive.Options{Owners: true}); err != nil {
		t.Fatal(err)
	}
	if err := WriteBundle(bundle2, spec(h, parent, id2, "sh", "-c",
		"cat /hello.txt; test -e /etc/hosts && echo hosts-present || echo hosts-gone; stat -c %u /var/app/f")); err != nil {
		t.Fatal(err)
	}
	mountUpper(t, lower, upper2, filepath.Join(dir, "work"), filepath.Join(bundle2, "rootfs"))
	out := logFile(t)
	p, err = r.Run(ctx, id2, bundle2, out, out)
	if err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, p, 10*time.Second); code != 0 {
		t.Fatalf("reader exited %d: %q", code, readLog(t, out))
	}
	if got, want := readLog(t, out), "data\nhosts-gone\n1000\n"; got != want {
		t.Errorf("restored container saw %q, want %q", got, want)
	}
	if err := r.Delete(ctx, id2, false); err != nil {
		t.Fatal(err)
	}
}

func TestRunCancelled(t *testing.T) {
	r := newRunc(t)
	h, parent := envelope(t, cgroup.Limits{})
	id := "cancel-" + randomID(t)
	bundle, _ := overlayBundle(t, lowerLayer(t), spec(h, parent, id, "sleep", "600"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Run(ctx, id, bundle, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
	if _, err := r.State(context.Background(), id); !isNotExist(err) {
		t.Errorf("container left after a cancelled Run: %v", err)
	}
}

func BenchmarkRunTrue(b *testing.B) {
	r := newRunc(b)
	h, parent := envelope(b, cgroup.Limits{})
	lower := lowerLayer(b)
	ctx := context.Background()
	bundles := make([]string, b.N)
	ids := make([]string, b.N)
	for i := range bundles {
		ids[i] = fmt.Sprintf("true-%s-%d", randomID(b), i)
		bundles[i], _ = overlayBundle(b, lower, spec(h, parent, ids[i], "true"))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := r.Run(ctx, ids[i], bundles[i], nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if code, err := p.Wait(); err != nil || code != 0 {
			b.Fatalf("exit %d, %v", code, err)
		}
		if err := r.Delete(ctx, ids[i], false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareRuncRun is the baseline: `runc run` in the foreground, which
// deletes the container itself.
func BenchmarkBareRuncRun(b *testing.B) {
	r := newRunc(b)
	h, parent := envelope(b, cgroup.Limits{})
	lower := lowerLayer(b)
	bundles := make([]string, b.N)
	ids := make([]string, b.N)
	for i := range bundles {
		ids[i] = fmt.Sprintf("bare-%s-%d", randomID(b), i)
		bundles[i], _ = overlayBundle(b, lower, spec(h, parent, ids[i], "true"))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(r.Binary, "--root", r.Root, "run", "--bundle", bundles[i], ids[i])
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
	}
}
