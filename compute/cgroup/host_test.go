package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/internal/testenv"
)

const mib = 1 << 20

// limitFiles maps the control files a limit lands in to their expected
// contents, per cgroup version, for a cgroup at path.
func limitFiles(h *Host, path string, l Limits) map[string]string {
	want := make(map[string]string)
	if h.Version() == 2 {
		cpu := "max 100000"
		if l.CPUMilli != 0 {
			cpu = fmt.Sprintf("%d 100000", l.CPUMilli*100)
		}
		want[h.file("cpu", path, "cpu.max")] = cpu
		want[h.file("memory", path, "memory.max")] = maxOr(l.MemoryBytes)
		want[h.file("pids", path, "pids.max")] = maxOr(l.Pids)
		return want
	}
	quota := "-1"
	if l.CPUMilli != 0 {
		quota = strconv.FormatUint(l.CPUMilli*100, 10)
	}
	want[h.file("cpu", path, "cpu.cfs_quota_us")] = quota
	want[h.file("cpu", path, "cpu.cfs_period_us")] = "100000"
	mem := "9223372036854771712" // v1's "unlimited" on 4 KiB pages
	if l.MemoryBytes != 0 {
		mem = strconv.FormatUint(l.MemoryBytes, 10)
	}
	want[h.file("memory", path, "memory.limit_in_bytes")] = mem
	if _, err := os.Stat(h.file("memory", path, "memory.memsw.limit_in_bytes")); err == nil {
		want[h.file("memory", path, "memory.memsw.limit_in_bytes")] = mem
	}
	want[h.file("pids", path, "pids.max")] = maxOr(l.Pids)
	if l.IODevice != "" {
		for file, v := range map[string]uint64{
			"blkio.throttle.read_bps_device":   l.IOReadBps,
			"blkio.throttle.write_bps_device":  l.IOWriteBps,
			"blkio.throttle.read_iops_device":  l.IOReadIOPS,
			"blkio.throttle.write_iops_device": l.IOWriteIOPS,
		} {
			want[h.file("blkio", path, file)] = fmt.Sprintf("%s %d", l.IODevice, v)
		}
	}
	return want
}

func checkFiles(t *testing.T, want map[string]string) {
	t.Helper()
	for f, v := range want {
		if got := readFile(t, f); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
}

func TestCreateAppliesLimits(t *testing.T) {
	h := realHost(t)
	parent := testParent(t, h)
	child := parent + "/imvu042/web"
	dev, err := DeviceOf(t.TempDir())
	if err != nil {
		testenv.Missing(t, "no block device for IO caps: %v", err)
	}
	envelope := Limits{
		CPUMilli: 1500, MemoryBytes: 256 * mib, Pids: 100,
		IOReadBps: 10 * mib, IOWriteBps: 5 * mib, IOReadIOPS: 1000, IOWriteIOPS: 500, IODevice: dev,
	}
	work := Limits{CPUMilli: 500, MemoryBytes: 64 * mib, Pids: 20}

	mustCreate(t, h, parent+"/imvu042", envelope)
	mustCreate(t, h, child, work)
	checkFiles(t, limitFiles(h, parent+"/imvu042", envelope))
	checkFiles(t, limitFiles(h, child, work))

	// Creating again is a no-op apart from applying the limits.
	mustCreate(t, h, child, work)
	checkFiles(t, limitFiles(h, child, work))

	if h.Version() == 1 {
		// Processes can only join a cpuset with CPUs and memory nodes.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			root := readFile(t, filepath.Join(h.ctrl["cpuset"], f))
			if got := readFile(t, h.file("cpuset", child, f)); got != root {
				t.Errorf("%s of the child = %q, want the root's %q", f, got, root)
			}
		}
	}

	// Resize: remove every limit of the workload, drop the IO caps of the
	// envelope.
	if err := h.Set(child, Limits{}); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, limitFiles(h, child, Limits{}))
	envelope.IOReadBps, envelope.IOWriteBps, envelope.IOReadIOPS, envelope.IOWriteIOPS, envelope.IODevice = 0, 0, 0, 0, ""
	if err := h.Set(parent+"/imvu042", envelope); err != nil {
		t.Fatal(err)
	}
	if h.Version() == 1 {
		if got := readFile(t, h.file("blkio", parent+"/imvu042", "blkio.throttle.read_bps_device")); got != "" {
			t.Errorf("read_bps_device after clearing = %q, want empty", got)
		}
	}

	if err := h.Set(parent+"/nosuch", Limits{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Set on a missing cgroup: %v, want ErrNotExist", err)
	}
	if h.Version() == 1 {
		// v1 refuses a child quota above its parent's; the error says so.
		err := h.Set(child, Limits{CPUMilli: 2000})
		if err == nil || !strings.Contains(err.Error(), "parent") {
			t.Errorf("child quota above the parent's: %v, want an error explaining it", err)
		}
	}
}

func TestProcessJoinsAndIsMetered(t *testing.T) {
	h := realHost(t)
	parent := testParent(t, h)
	child := parent + "/web"
	mustCreate(t, h, parent, Limits{CPUMilli: 1000, MemoryBytes: 128 * mib, Pids: 50})
	mustCreate(t, h, child, Limits{CPUMilli: 200})

	before, err := h.Usage(parent)
	if err != nil {
		t.Fatal(err)
	}
	p := startIn(t, h, child, "while :; do :; done")

	procs, err := h.Procs(parent)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(procs, p.cmd.Process.Pid) {
		t.Fatalf("Procs(parent) = %v, want it to include the child's %d", procs, p.cmd.Process.Pid)
	}
	const window = time.Second
	time.Sleep(window)
	after, err := h.Usage(parent)
	if err != nil {
		t.Fatal(err)
	}
	used := time.Duration(after.CPUNanos - before.CPUNanos)
	t.Logf("spinning under a 200m quota for %v used %v CPU", window, used)
	// The quota allows 200ms per second; the scheduler overshoots a little.
	if used < 100*time.Millisecond || used > 300*time.Millisecond {
		t.Errorf("CPU used in %v = %v, want about 200ms (quota 200m, counted at the parent)", window, used)
	}
	if after.Pids < 1 || after.MemoryBytes == 0 {
		t.Errorf("Usage(parent) = %+v, want the spinning process counted", after)
	}
	files := h.ProcsFiles(child)
	if len(files) == 0 {
		t.Fatal("no ProcsFiles")
	}
	for _, f := range files {
		if !strings.Contains(readFile(t, f), strconv.Itoa(p.cmd.Process.Pid)) {
			t.Errorf("%s does not list the joined process", f)
		}
	}
}

func TestPidsMaxStopsForks(t *testing.T) {
	h := realHost(t)
	parent := testParent(t, h)
	mustCreate(t, h, parent, Limits{Pids: 10})
	mustCreate(t, h, parent+"/web", Limits{})

	// The shell counts as one; it may start 9 more before fork fails, and
	// a failed fork ends a non-interactive shell.
	p := startIn(t, h, parent+"/web", `i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); echo $i; done`)
	err := p.wait(t, 10*time.Second)
	if err == nil {
		t.Fatal("fork loop finished 100 forks under pids.max 10")
	}
	// The sleeps hold the output pipe open until they are gone.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Kill(ctx, parent); err != nil {
		t.Fatal(err)
	}
	out, _ := p.out.ReadString(0)
	lines := strings.Fields(out)
	started := 0
	for _, l := range lines {
		if n, err := strconv.Atoi(l); err == nil {
			started = n
		}
	}
	t.Logf("forks before pids.max stopped the loop: %d; output tail %q", started, out[max(0, len(out)-80):])
	if started != 9 {
		t.Errorf("started %d processes, want 9 (pids.max 10 including the shell)", started)
	}
	u, err := h.Usage(parent)
	if err != nil {
		t.Fatal(err)
	}
	if u.Pids > 10 {
		t.Errorf("pids.current = %d above pids.max 10", u.Pids)
	}
	// The host itself can still fork.
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("host fork after the loop: %v", err)
	}
}

func TestMemoryLimitOOMKills(t *testing.T) {
	h := realHost(t)
	parent := testParent(t, h)
	mustCreate(t, h, parent, Limits{MemoryBytes: 64 * mib})
	mustCreate(t, h, parent+"/web", Limits{MemoryBytes: 32 * mib})

	// dd fills one 64 MiB buffer: twice the workload's limit.
	p := startIn(t, h, parent+"/web", "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	err := p.wait(t, 20*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 || !strings.Contains(ee.Error(), "killed") {
		t.Fatalf("hog exited with %v, want killed by SIGKILL", err)
	}
	for _, path := range []string{parent + "/web", parent} {
		u, err := h.Usage(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s after the OOM kill: %+v", path, u)
		if u.OOMKills < 1 {
			t.Errorf("Usage(%s).OOMKills = %d, want >= 1", path, u.OOMKills)
		}
		if u.MemoryPeakBytes > 33*mib || u.MemoryPeakBytes < 16*mib {
			t.Errorf("Usage(%s).MemoryPeakBytes = %d, want near the 32 MiB limit", path, u.MemoryPeakBytes)
		}
	}
}

func TestSetBelowUsageFails(t *testing.T) {
	h := realHost(t)
	parent := testParent(t, h)
	mustCreate(t, h, parent, Limits{MemoryBytes: 128 * mib})
	// dd holds its 48 MiB buffer while blocked writing into a pipe nobody
	// reads; there is no swap to push it to.
	p := startIn(t, h, parent, "dd if=/dev/zero bs=48M count=1 | sleep 60")
	eventually(t, 10*time.Second, "48 MiB charged", func() bool {
		u, err := h.Usage(parent)
		return err == nil && u.MemoryBytes >= 48*mib
	})
	err := h.Set(parent, Limits{MemoryBytes: 16 * mib})
	if !errors.Is(err, ErrBelowUsage) {
		t.Fatalf("shrinking below usage: %v, want ErrBelowUsage", err)
	}
	t.Logf("shrink error: %v", err)
	select {
	case <-p.done:
		t.Fatal("the workload died when the limit was refused")
	default:
	}
	// Growing still works.
	if err := h.Set(parent, Limits{MemoryBytes: 256 * mib}); err != nil {
		t.Fatal(err)
	}
}

func TestKillAndRemoveLeaveNothing(t *testing.T) {
	h := realHost(t)
	parent := testParent(t, h)
	mustCreate(t, h, parent, Limits{Pids: 200})
	mustCreate(t, h, parent+"/a", Limits{})
	mustCreate(t, h, parent+"/b/c", Limits{})
	// A shell that keeps forking, to race the kill.
	startIn(t, h, parent+"/a", "while :; do sleep 60 & sleep 0.01; done")
	startIn(t, h, parent+"/b/c", "sleep 60 & sleep 60 & sleep 60")
	eventually(t, 5*time.Second, "processes to start", func() bool {
		pids, err := h.Procs(parent)
		return err == nil && len(pids) >= 6
	})
	// A paused workload (runc pause) must not survive the kill frozen.
	if h.Version() == 1 {
		if err := h.writeFile(h.file("freezer", parent+"/b/c", "freezer.state"), "FROZEN"); err != nil {
			t.Fatal(err)
		}
	} else if err := h.writeFile(h.file("", parent+"/b/c", "cgroup.freeze"), "1"); err != nil {
		t.Fatal(err)
	}

	err := h.Remove(parent)
	if !errors.Is(err, ErrPopulated) || !strings.Contains(err.Error(), parent) {
		t.Fatalf("Remove of a busy cgroup: %v, want ErrPopulated naming it", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.Kill(ctx, parent); err != nil {
		t.Fatal(err)
	}
	t.Logf("Kill took %v", time.Since(start))
	if pids, err := h.Procs(parent); err != nil || len(pids) != 0 {
		t.Fatalf("after Kill: Procs = %v, %v; want none", pids, err)
	}
	if err := h.Remove(parent); err != nil {
		t.Fatal(err)
	}
	if left := cgroupDirs(h, parent); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	// Removing again is fine.
	if err := h.Remove(parent); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestIOThrottle(t *testing.T) {
	h := realHost(t)
	dir := t.TempDir()
	dev, err := DeviceOf(dir)
	if err != nil {
		testenv.Missing(t, "no block device for IO caps: %v", err)
	}
	parent := testParent(t, h)
	const rate = 512 << 10
	mustCreate(t, h, parent, Limits{IOWriteBps: rate, IODevice: dev})
	// Direct IO: v1 does not throttle buffered writeback.
	script := fmt.Sprintf("exec dd if=/dev/zero of=%s/f bs=64k count=16 oflag=direct 2>/dev/null", dir)
	start := time.Now()
	p := startIn(t, h, parent, script)
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("dd: %v", err)
	}
	took := time.Since(start)
	u, err := h.Usage(parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1 MiB of direct writes capped at 512 KiB/s took %v; usage %+v", took, u)
	if took < 1500*time.Millisecond {
		t.Errorf("1 MiB at 512 KiB/s took %v, want about 2s", took)
	}
	if u.IOWriteBytes < mib {
		t.Errorf("IOWriteBytes = %d, want >= 1 MiB", u.IOWriteBytes)
	}
}

func TestInvalidPaths(t *testing.T) {
	if _, err := Open(t.TempDir(), 2); err == nil {
		t.Fatal("Open of an empty dir as v2 succeeded")
	}
	root := t.TempDir()
	writeTree(t, root, map[string]string{"cgroup.controllers": "cpu memory pids"})
	h, err := Open(root, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "/abs", "../up", "a/../b", "a//b", "a/", ".", ".hidden", "a/-x", "a b", "a/cgroup procs"} {
		if err := h.Create(p, Limits{}); err == nil {
			t.Errorf("Create(%q) succeeded", p)
		}
		if err := h.Remove(p); err == nil {
			t.Errorf("Remove(%q) succeeded", p)
		}
		if f := h.ProcsFiles(p); f != nil {
			t.Errorf("ProcsFiles(%q) = %v", p, f)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		l       Limits
		wantErr string
	}{
		{Limits{}, ""},
		{Limits{CPUMilli: 10, MemoryBytes: 1, Pids: 1}, ""},
		{Limits{CPUMilli: 5}, "CPUMilli"},
		{Limits{IOReadBps: 1}, "IODevice"},
		{Limits{IODevice: "8"}, "IODevice"},
		{Limits{IODevice: "8:x", IOReadBps: 1}, "IODevice"},
		{Limits{IODevice: "8:0", IOReadBps: 1}, ""},
		{Limits{Pids: 1 << 40}, "Pids"},
	}
	for _, tt := range tests {
		err := tt.l.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v.Validate() = %v, want error containing %q", tt.l, err, tt.wantErr)
		}
	}
}
