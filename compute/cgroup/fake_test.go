package cgroup

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeV2 lays out what a cgroup2 mount shows at its root.
func fakeV2(t *testing.T) (*Host, string) {
	t.Helper()
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
	})
	h, err := Open(root, 2)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version() != 2 || !h.plain {
		t.Fatalf("Open(tmpdir, 2) = version %d, plain %v", h.Version(), h.plain)
	}
	return h, root
}

func TestV2WritesFiles(t *testing.T) {
	h, root := fakeV2(t)
	envelope := Limits{
		CPUMilli: 500, MemoryBytes: 256 * mib, Pids: 64,
		IOReadBps: 10 * mib, IOWriteBps: 5 * mib, IODevice: "8:0",
	}
	if err := h.Create("nexus/imvu042", envelope); err != nil {
		t.Fatal(err)
	}
	if err := h.Create("nexus/imvu042/web", Limits{CPUMilli: 250}); err != nil {
		t.Fatal(err)
	}
	all := "+cpu +io +memory +pids"
	tests := []struct{ file, want string }{
		{"cgroup.subtree_control", all},
		{"nexus/cgroup.subtree_control", all},
		{"nexus/imvu042/cgroup.subtree_control", all},
		{"nexus/imvu042/cpu.max", "50000 100000"},
		{"nexus/imvu042/memory.max", "268435456"},
		{"nexus/imvu042/memory.swap.max", "0"},
		{"nexus/imvu042/pids.max", "64"},
		{"nexus/imvu042/io.max", "8:0 rbps=10485760 wbps=5242880 riops=max wiops=max"},
		{"nexus/imvu042/web/cpu.max", "25000 100000"},
		{"nexus/imvu042/web/memory.max", "max"},
		{"nexus/imvu042/web/memory.swap.max", "max"},
		{"nexus/imvu042/web/pids.max", "max"},
	}
	for _, tt := range tests {
		if got := readFile(t, filepath.Join(root, tt.file)); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.file, got, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "nexus/imvu042/web/cgroup.subtree_control")); err == nil {
		t.Error("the leaf got a subtree_control: it could then not hold processes")
	}

	// Already enabled controllers are not written again.
	writeTree(t, root, map[string]string{"nexus/cgroup.subtree_control": "cpu io memory pids"})
	if err := h.Create("nexus/other", Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "nexus/cgroup.subtree_control")); got != "cpu io memory pids" {
		t.Errorf("subtree_control rewritten to %q", got)
	}

	// Removing the limits writes "max" and clears the IO caps.
	if err := h.Set("nexus/imvu042", Limits{}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"cpu.max":         "max 100000",
		"memory.max":      "max",
		"memory.swap.max": "max",
		"pids.max":        "max",
		"io.max":          "8:0 rbps=max wbps=max riops=max wiops=max",
	} {
		if got := readFile(t, filepath.Join(root, "nexus/imvu042", file)); got != want {
			t.Errorf("after Set(Limits{}): %s = %q, want %q", file, got, want)
		}
	}

	if got, want := h.ProcsFiles("nexus/imvu042/web"), []string{filepath.Join(root, "nexus/imvu042/web/cgroup.procs")}; !slices.Equal(got, want) {
		t.Errorf("ProcsFiles = %v, want %v", got, want)
	}
	if got := h.RuntimePath("nexus/imvu042/web"); got != "/nexus/imvu042/web" {
		t.Errorf("RuntimePath = %q", got)
	}
	if err := h.Join("nexus/imvu042/web", 4242); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "nexus/imvu042/web/cgroup.procs")); got != "4242" {
		t.Errorf("cgroup.procs after Join = %q", got)
	}
}

func TestV2Usage(t *testing.T) {
	h, root := fakeV2(t)
	if err := h.Create("nexus/imvu042", Limits{}); err != nil {
		t.Fatal(err)
	}
	writeTree(t, root, map[string]string{
		"nexus/imvu042/cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
		"nexus/imvu042/memory.current": "1048576\n",
		"nexus/imvu042/memory.peak":    "2097152\n",
		"nexus/imvu042/pids.current":   "3\n",
		"nexus/imvu042/io.stat":        "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n253:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
		"nexus/imvu042/memory.events":  "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
	})
	u, err := h.Usage("nexus/imvu042")
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{CPUNanos: 1500000, MemoryBytes: mib, MemoryPeakBytes: 2 * mib, IOReadBytes: 101, IOWriteBytes: 202, Pids: 3, OOMKills: 2}
	if u != want {
		t.Errorf("Usage = %+v, want %+v", u, want)
	}
}

func TestV2KillAndRemove(t *testing.T) {
	h, root := fakeV2(t)
	if err := h.Create("nexus/imvu042/web", Limits{}); err != nil {
		t.Fatal(err)
	}
	writeTree(t, root, map[string]string{"nexus/imvu042/cgroup.kill": ""})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Kill(ctx, "nexus/imvu042"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "nexus/imvu042/cgroup.kill")); got != "1" {
		t.Errorf("cgroup.kill = %q, want 1", got)
	}
	if err := h.Remove("nexus/imvu042"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "nexus/imvu042")); !os.IsNotExist(err) {
		t.Errorf("nexus/imvu042 still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "nexus")); err != nil {
		t.Errorf("Remove took the parent too: %v", err)
	}
}

func TestV2MissingIOController(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"cgroup.controllers": "cpu memory pids"})
	h, err := Open(root, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Create("nexus", Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "cgroup.subtree_control")); got != "+cpu +memory +pids" {
		t.Errorf("subtree_control = %q", got)
	}
	err = h.Create("nexus/a", Limits{IOReadBps: 1, IODevice: "8:0"})
	if err == nil || !strings.Contains(err.Error(), "io controller") {
		t.Errorf("IO caps without the io controller: %v", err)
	}
}

func TestV1FakeTree(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{"cpuset/cpuset.cpus": "0-3", "cpuset/cpuset.mems": "0", "devices/devices.list": "a *:* rwm"}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio", "freezer"} {
		files[c+"/cgroup.procs"] = ""
	}
	writeTree(t, root, files)
	h, err := Open(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Create("nexus/imvu042", Limits{CPUMilli: 1500, MemoryBytes: mib, Pids: 7, IODevice: "8:0", IOReadIOPS: 100}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"cpuset/nexus/cpuset.cpus":                            "0-3",
		"cpuset/nexus/imvu042/cpuset.mems":                    "0",
		"cpu/nexus/imvu042/cpu.cfs_quota_us":                  "150000",
		"cpu/nexus/imvu042/cpu.cfs_period_us":                 "100000",
		"memory/nexus/imvu042/memory.limit_in_bytes":          "1048576",
		"pids/nexus/imvu042/pids.max":                         "7",
		"blkio/nexus/imvu042/blkio.throttle.read_iops_device": "8:0 100",
		"blkio/nexus/imvu042/blkio.throttle.read_bps_device":  "8:0 0",
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// runc creates container cgroups in hierarchies Nexus does not use;
	// Remove must clear those too.
	writeTree(t, root, map[string]string{"devices/nexus/imvu042/web/devices.list": ""})
	if err := h.Remove("nexus"); err != nil {
		t.Fatal(err)
	}
	if left := cgroupDirs(h, "nexus"); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	if got := len(h.ProcsFiles("nexus")); got != 7 {
		t.Errorf("%d ProcsFiles, want one per managed controller (7)", got)
	}
}
