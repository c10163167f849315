package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/handshake"

	"github.com/nexus-core/nexus/internal/testenv"
)

// needCompute skips (fails under NEXUS_REQUIRE_ALL=1) without root and runc.
func needCompute(t *testing.T) {
	t.Helper()
	need(t, "runc", "runc")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "%s", "compute tests need root (cgroups, namespaces, mounts)")
	}
}

// ps is `nexus compute ps` as the owner sees it.
func (n *node) ps(t testing.TB, id string) map[string]compute.Status {
	t.Helper()
	var out []compute.Status
	if err := json.Unmarshal([]byte(n.cliOK(t, "compute", "ps", id, "--key", n.keyFile(id), "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]compute.Status{}
	for _, s := range out {
		m[s.Name] = s
	}
	return m
}

// waitWorkload polls ps until ok holds for the workload.
func (n *node) waitWorkload(t testing.TB, id, name string, d time.Duration, ok func(compute.Status) bool) compute.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := n.ps(t, id)[name]
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("workload %s/%s did not get there within %s: %+v", id, name, d, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func running(s compute.Status) bool { return s.State == "running" }

// cgroupFile is a file of a workload's (or, with name "", the IMVU's
// envelope) cgroup on this machine's v1 hierarchy.
func (n *node) cgroupFile(t testing.TB, controller, id, name, file string) string {
	t.Helper()
	b, err := os.ReadFile(n.dd.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return filepath.Join("/sys/fs/cgroup", controller, "nexus", hex.EncodeToString(sum[:4]), id, name, file)
}

func readUint(t testing.TB, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestComputeHostile: a hostile IMVU's fork bomb, memory hog and CPU hog stay
// inside its envelope while a neighbour IMVU's workload keeps running; its
// containers see nothing of the host or the neighbour; admins cannot touch
// its workloads without the owner; runs past the envelope are denied.
func TestComputeHostile(t *testing.T) {
	t.Parallel()
	needCompute(t)
	n := newNode(t, "")
	o42 := n.createViaCLI(t, "imvu042")
	n.createViaCLI(t, "imvu043")
	k42, k43 := n.keyFile("imvu042"), n.keyFile("imvu043")

	// The neighbour: a heartbeat it writes every 100 ms.
	n.cliOK(t, "compute", "run", "imvu043", "steady", "--key", k43, "--", "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /beat.new; mv /beat.new /beat; sleep 0.1; done")
	n.waitWorkload(t, "imvu043", "steady", 30*time.Second, running)
	// The heartbeat file is replaced by rename, so a read never sees it
	// half written.
	beat := func(t *testing.T) string {
		out, _, _ := n.cli(t, "compute", "exec", "imvu043", "steady", "--key", k43, "--", "cat", "/beat")
		return strings.TrimSpace(out)
	}
	alive := func(t *testing.T, when string) {
		t.Helper()
		b1 := beat(t)
		time.Sleep(300 * time.Millisecond)
		if b2 := beat(t); b1 == "" || b1 == b2 {
			t.Fatalf("%s: the neighbour's heartbeat stopped (%q then %q)", when, b1, b2)
		}
	}
	alive(t, "at the start")

	t.Run("fork bomb stops at pids.max", func(t *testing.T) {
		n.cliOK(t, "compute", "run", "imvu042", "bomb", "--pids", "32", "--key", k42, "--", "sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 30")
		n.waitWorkload(t, "imvu042", "bomb", 30*time.Second, func(s compute.Status) bool { return s.State != "stopped" })
		time.Sleep(1500 * time.Millisecond)
		pidsMax := n.cgroupFile(t, "pids", "imvu042", "bomb", "pids.max")
		if b, _ := os.ReadFile(pidsMax); strings.TrimSpace(string(b)) != "32" {
			t.Fatalf("pids.max of the bomb's cgroup is %q, want 32", b)
		}
		if cur := readUint(t, n.cgroupFile(t, "pids", "imvu042", "bomb", "pids.current")); cur > 32 {
			t.Fatalf("the bomb has %d processes past its pids.max of 32", cur)
		}
		if events, _ := os.ReadFile(n.cgroupFile(t, "pids", "imvu042", "bomb", "pids.events")); !strings.Contains(string(events), "max") {
			t.Logf("pids.events: %s", events)
		}
		alive(t, "during the fork bomb")
		n.cliOK(t, "compute", "rm", "imvu042", "bomb", "--key", k42)
		n.waitWorkload(t, "imvu042", "bomb", 30*time.Second, func(s compute.Status) bool { return s.Name == "" })
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(n.cgroupFile(t, "pids", "imvu042", "bomb", "")); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the removed bomb's cgroup is still there after 20 s")
			}
		}
	})

	t.Run("memory hog is OOM-killed inside its envelope", func(t *testing.T) {
		n.cliOK(t, "compute", "run", "imvu042", "hog", "--memory", "32Mi", "--key", k42, "--", "sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
		s := n.waitWorkload(t, "imvu042", "hog", 60*time.Second, func(s compute.Status) bool { return s.State == "exited" })
		if s.Exit == nil || *s.Exit != 137 {
			t.Fatalf("the hog ended with %+v, want killed by SIGKILL (137)", s)
		}
		if peak := readUint(t, n.cgroupFile(t, "memory", "imvu042", "hog", "memory.max_usage_in_bytes")); peak > 34<<20 {
			t.Fatalf("the hog peaked at %d bytes past its 32Mi", peak)
		}
		alive(t, "after the memory hog")
		n.cliOK(t, "compute", "rm", "imvu042", "hog", "--key", k42)
	})

	t.Run("CPU hog is held to its quota", func(t *testing.T) {
		n.cliOK(t, "compute", "run", "imvu042", "spin", "--cpu", "200m", "--key", k42, "--", "sh", "-c", "while :; do :; done")
		n.waitWorkload(t, "imvu042", "spin", 30*time.Second, running)
		usage := n.cgroupFile(t, "cpuacct", "imvu042", "spin", "cpuacct.usage")
		time.Sleep(500 * time.Millisecond)
		u1, t1 := readUint(t, usage), time.Now()
		time.Sleep(3 * time.Second)
		u2, t2 := readUint(t, usage), time.Now()
		share := float64(u2-u1) / float64(t2.Sub(t1).Nanoseconds())
		t.Logf("CPU hog with a 200m quota used %.1f%% of one CPU over %s", share*100, t2.Sub(t1).Round(time.Millisecond))
		if share > 0.25 || share < 0.10 {
			t.Fatalf("CPU hog used %.1f%% of a CPU; its quota is 20%%", share*100)
		}
		alive(t, "during the CPU hog")
	})

	t.Run("containers see nothing of the host or the neighbour", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			deny string // a substring the output must not hold
			want string // a substring it must hold
		}{
			{[]string{"ps"}, "beat", "ps"},
			{[]string{"cat", "/proc/net/dev"}, "veth", "eth0:"}, // its own link on its IMVU's network, and lo
			{[]string{"ls", "/"}, "imvu043", "bin"},
			{[]string{"hostname"}, "", "spin"},
			{[]string{"sh", "-c", "ls /proc | grep -c '^[0-9]'"}, "", ""},
		} {
			out := n.cliOK(t, append([]string{"compute", "exec", "imvu042", "spin", "--key", k42, "--"}, c.args...)...)
			if (c.deny != "" && strings.Contains(out, c.deny)) || !strings.Contains(out, c.want) {
				t.Errorf("%v in imvu042's container:\n%s", c.args, out)
			}
		}
		out := n.cliOK(t, "compute", "exec", "imvu042", "spin", "--key", k42, "--", "sh", "-c", "ls /proc | grep -c '^[0-9]'")
		if procs, _ := strconv.Atoi(strings.TrimSpace(out)); procs > 4 {
			t.Errorf("imvu042's container sees %d processes; it should see only its own", procs)
		}
	})

	env := n.envelope(t, "imvu042")
	n.run(t, []hostile{
		{name: "admin execs in the IMVU's container", gate: "G06", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, compute.KindExec, "imvu042", compute.ExecParams{Name: "spin", Args: []string{"cat", "/etc/passwd"}})
			}},
		{name: "admin stops the IMVU's workload", gate: "G06", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, compute.KindStop, "imvu042", compute.NameParams{Name: "spin"})
			}},
		{name: "admin snapshots the IMVU's workload", gate: "G06", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, compute.KindSnapshot, "imvu042", compute.SnapshotParams{Name: "spin", Snapshot: "siphon"})
			}},
		{name: "admin shrinks the IMVU's envelope", gate: "G06", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				small := env
				small.CPUMilli = 100
				return n.send(t, n.admin, handshake.KindResize, "imvu042", handshake.EnvelopeParams{Envelope: small})
			}},
		{name: "another IMVU's owner execs in the container", gate: "G03", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.owners["imvu043"], compute.KindExec, "imvu042", compute.ExecParams{Name: "spin", Args: []string{"ps"}})
			}},
		{name: "a run past the CPU envelope", gate: "G07", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, o42, compute.KindRun, "imvu042", compute.RunParams{Name: "greedy", Args: []string{"true"}, CPUMilli: env.CPUMilli})
			}},
		{name: "a run past the memory envelope", gate: "G07", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, o42, compute.KindRun, "imvu042", compute.RunParams{Name: "greedy", Args: []string{"true"}, MemoryBytes: env.MemoryBytes + 1})
			}},
		{name: "a second workload of the same name", gate: "G04", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, o42, compute.KindRun, "imvu042", compute.RunParams{Name: "spin", Args: []string{"true"}, CPUMilli: 10})
			}},
		{name: "admin execs with the owner's co-signature", watch: []string{"imvu042"},
			try: func(t *testing.T) attempt {
				return n.send(t, n.admin, compute.KindSnapshot, "imvu042", compute.SnapshotParams{Name: "spin", Snapshot: "agreed"}, o42)
			}},
	})
	if got := fmt.Sprint(n.ps(t, "imvu042")["spin"].State); got != "running" {
		t.Fatalf("after the hostile attempts the spinner is %s", got)
	}
	alive(t, "at the end")
}

// reap removes what the node's workloads left in the kernel once its daemon
// is gone (workloads outlive their daemon by design): containers, VMs,
// cgroups and overlay mounts, so tests leave the machine as they found it.
func (n *node) reap(t testing.TB) {
	t.Helper()
	runc := filepath.Join(n.dir, "run", "runc")
	if out, err := exec.Command("runc", "--root", runc, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command("runc", "--root", runc, "delete", "-f", id).Run()
		}
	}
	b, err := os.ReadFile(n.dd.VerifierKey())
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	slices, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "nexus", hex.EncodeToString(sum[:4])))
	for _, slice := range slices {
		var dirs []string
		filepath.WalkDir(slice, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for range 50 {
				procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				if len(strings.TrimSpace(string(procs))) == 0 {
					break
				}
				for _, p := range strings.Fields(string(procs)) {
					if pid, err := strconv.Atoi(p); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			os.Remove(dirs[i])
		}
	}
	if nss, err := filepath.Glob("/run/netns/n" + hex.EncodeToString(sum[:4]) + "-*"); err == nil {
		for _, ns := range nss {
			exec.Command("ip", "netns", "del", filepath.Base(ns)).Run()
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], n.dir+"/") {
			syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}

// TestComputeVMAndExit: a VM boots under its envelope and prints its marker
// on the serial console; a container's files and snapshots leave in the exit
// bundle and come back running on a fresh node, rollback included.
func TestComputeVMAndExit(t *testing.T) {
	t.Parallel()
	needCompute(t)
	need(t, "qemu-system-x86_64", "qemu-system-x86")
	n := newNode(t, "")
	n.createViaCLI(t, "imvu042")
	key := n.keyFile("imvu042")

	n.cliOK(t, "compute", "run", "imvu042", "vm1", "--kind", "vm", "--memory", "256Mi", "--key", key, "--", "sh", "-c", "echo vm-ok; head -1 /proc/meminfo")
	s := n.waitWorkload(t, "imvu042", "vm1", 90*time.Second, func(s compute.Status) bool { return s.State == "exited" })
	logs := n.cliOK(t, "compute", "logs", "imvu042", "vm1", "--key", key)
	if s.Exit == nil || *s.Exit != 0 || !strings.Contains(logs, "NEXUS-VM-UP vm1") || !strings.Contains(logs, "vm-ok") {
		t.Fatalf("VM ended %+v with console:\n%s", s, tail(logs, 2000))
	}
	n.cliOK(t, "compute", "rm", "imvu042", "vm1", "--key", key)

	// A running VM's snapshot is taken live, into its qcow2 disk.
	n.cliOK(t, "compute", "run", "imvu042", "vm2", "--kind", "vm", "--memory", "256Mi", "--key", key)
	n.waitWorkload(t, "imvu042", "vm2", 90*time.Second, running)
	for deadline := time.Now().Add(90 * time.Second); !strings.Contains(n.cliOK(t, "compute", "logs", "imvu042", "vm2", "--key", key), "NEXUS-VM-UP vm2"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("vm2 did not boot")
		}
	}
	n.cliOK(t, "compute", "snapshot", "imvu042", "vm2", "live1", "--key", key)
	disk := filepath.Join(n.dir, "imvu", "imvu042", "compute", "vm2", "disk.qcow2")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, _ := exec.Command("qemu-img", "snapshot", "-l", "-U", disk).CombinedOutput()
		if strings.Contains(string(out), "live1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot live1 in %s: %s (ps: %+v)", disk, out, n.ps(t, "imvu042")["vm2"])
		}
	}
	if s := n.ps(t, "imvu042")["vm2"]; s.State != "running" || s.Error != "" {
		t.Fatalf("vm2 after its live snapshot: %+v", s)
	}
	n.cliOK(t, "compute", "rm", "imvu042", "vm2", "--key", key)

	n.cliOK(t, "compute", "run", "imvu042", "files", "--key", key, "--", "sh", "-c", "[ -f /data ] || echo kept > /data; exec sleep 1000")
	n.waitWorkload(t, "imvu042", "files", 30*time.Second, running)
	cat := func(n *node) string {
		return strings.TrimSpace(n.cliOK(t, "compute", "exec", "imvu042", "files", "--key", key, "--", "cat", "/data"))
	}
	if got := cat(n); got != "kept" {
		t.Fatalf("/data holds %q", got)
	}
	n.cliOK(t, "compute", "snapshot", "imvu042", "files", "s1", "--key", key)
	n.cliOK(t, "compute", "exec", "imvu042", "files", "--key", key, "--", "sh", "-c", "echo later > /data")

	out := filepath.Join(t.TempDir(), "imvu042.tar")
	n.cliOK(t, "imvu", "exit", "imvu042", "--out", out, "--key", key)
	n.cliOK(t, "imvu", "ack-exit", "imvu042", "--bundle", out, "--key", key)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(n.cgroupFile(t, "pids", "imvu042", "files", "")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exited IMVU's workload still has its cgroup")
		}
	}

	n2 := newNode(t, "")
	if err := os.WriteFile(n2.keyFile("imvu042"), must(os.ReadFile(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	n2.cliOK(t, "imvu", "import", out, "--key", key)
	n2.waitWorkload(t, "imvu042", "files", 30*time.Second, func(s compute.Status) bool {
		return s.State == "running" && len(s.Snapshots) == 1
	})
	if got := cat(n2); got != "later" {
		t.Fatalf("on the new node /data holds %q, want the last write", got)
	}
	n2.cliOK(t, "compute", "rollback", "imvu042", "files", "s1", "--key", key)
	if got := cat(n2); got != "kept" {
		t.Fatalf("after the rollback on the new node /data holds %q, want the snapshot's", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
