//go:build linux

package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
)

// vmTimeout bounds each VM in the tests; boots take 2-5 s here.
const vmTimeout = 90 * time.Second

// needVM skips unless qemu, busybox and a kernel are installed, and
// returns the kernel to boot.
func needVM(t testing.TB) string {
	t.Helper()
	needBinary(t, qemuBinary, "qemu-system-x86")
	needBinary(t, "qemu-img", "qemu-utils")
	_, err := os.Stat("/bin/busybox")
	needIf(t, err == nil, "no /bin/busybox (Debian package busybox-static)")
	vmlinuz, err := FindKernel()
	needIf(t, err == nil, "no kernel in /boot (Debian package linux-image-cloud-amd64): %v", err)
	kernel, err := PrepareKernel(context.Background(), vmlinuz, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return kernel
}

func writeInitramfs(t testing.TB, dir string, opts InitramfsOptions) string {
	t.Helper()
	p := filepath.Join(dir, "initrd.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := BuildInitramfs(f, opts); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// makeCgroups creates nexus-test-<rand> in each controller's hierarchy
// (a path under /sys/fs/cgroup) and removes them when the test ends.
func makeCgroups(t *testing.T, hierarchies ...string) []string {
	t.Helper()
	needRoot(t)
	name := "nexus-test-" + randSuffix(t)
	var dirs []string
	for _, h := range hierarchies {
		root := filepath.Join("/sys/fs/cgroup", h)
		_, err := os.Stat(filepath.Join(root, "cgroup.procs"))
		needIf(t, err == nil, "no cgroup hierarchy at %s", root)
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
		t.Cleanup(func() {
			// The processes may take a moment to leave after they exit.
			var err error
			for range 100 {
				if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("remove cgroup %s: %v", dir, err)
		})
	}
	return dirs
}

func procsFiles(dirs []string) []string {
	var files []string
	for _, d := range dirs {
		files = append(files, filepath.Join(d, "cgroup.procs"))
	}
	return files
}

// newNetNS returns the path of a fresh network namespace, held by a
// sleeping child that the test kills at the end.
func newNetNS(t *testing.T) string {
	t.Helper()
	needRoot(t)
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
}

func nsID(t *testing.T, path string) string {
	t.Helper()
	id, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func readUint(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status in bytes.
func procStatusBytes(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func TestConfigPrepare(t *testing.T) {
	dir := t.TempDir()
	base := Config{
		Name: "vm-1", Kernel: "/boot/k", Initrd: "/boot/i", SerialLog: dir + "/serial.log",
		QMPSocket: dir + "/qmp.sock", Accel: "tcg", Machine: "microvm",
	}
	bad := []struct {
		name string
		edit func(*Config)
	}{
		{"no name", func(c *Config) { c.Name = "" }},
		{"name with slash", func(c *Config) { c.Name = "a/b" }},
		{"no kernel", func(c *Config) { c.Kernel = "" }},
		{"no serial log", func(c *Config) { c.SerialLog = "" }},
		{"no QMP socket", func(c *Config) { c.QMPSocket = "" }},
		{"comma in a path", func(c *Config) { c.Disk = dir + "/a,b.qcow2" }},
		{"newline in the command line", func(c *Config) { c.Append = "console=ttyS0\ninit=/x" }},
		{"not a cgroup.procs file", func(c *Config) { c.CgroupProcs = []string{"/sys/fs/cgroup/memory/x/tasks"} }},
		{"bad accelerator", func(c *Config) { c.Accel = "hvf" }},
		{"bad machine", func(c *Config) { c.Machine = "q35" }},
		{"negative CPUs", func(c *Config) { c.CPUs = -1 }},
	}
	for _, tt := range bad {
		c := base
		tt.edit(&c)
		if _, err := c.prepare(); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}

	c, err := base.prepare()
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(c.args(), " ")
	for _, want := range []string{
		"-machine microvm", "-accel tcg", "-cpu max", "-m 256M", "-smp 1", "-nodefaults", "-no-user-config",
		"-display none", "-no-reboot", "-serial file:" + dir + "/serial.log",
		"-qmp unix:" + dir + "/qmp.sock,server=on,wait=off", "-initrd /boot/i", "-sandbox on,",
		"console=ttyS0 quiet panic=-1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu arguments lack %q: %s", want, args)
		}
	}
	if _, err := tscKHz("/proc/cpuinfo"); err == nil && !strings.Contains(c.Append, "tsc_early_khz=") {
		t.Errorf("microvm under tcg without tsc_early_khz: %q", c.Append)
	}

	pc := base
	pc.Machine, pc.Accel, pc.Disk, pc.MemoryBytes, pc.CPUs, pc.NoSandbox = "pc", "kvm", dir+"/d.qcow2", 300<<20+1, 2, true
	if pc, err = pc.prepare(); err != nil {
		t.Fatal(err)
	}
	args = strings.Join(pc.args(), " ")
	for _, want := range []string{"-machine pc", "-cpu host", "-m 301M", "-smp 2", "virtio-blk-pci,drive=disk0", "file=" + dir + "/d.qcow2,if=none,id=disk0,format=qcow2"} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu arguments lack %q: %s", want, args)
		}
	}
	if strings.Contains(args, "-sandbox") || strings.Contains(args, "tsc_early_khz") {
		t.Errorf("unexpected sandbox or tsc_early_khz: %s", args)
	}
}

// TestPlacement checks that the process Start runs is in its cgroups and
// network namespace from its first instruction: a stand-in for qemu
// records /proc/self/cgroup and its namespace as the first thing it does.
func TestPlacement(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name        string
		hierarchies []string
		netns       bool
	}{
		{"cgroup v1 through sh", []string{"memory", "cpu", "pids"}, false},
		{"cgroup v2 through clone3", []string{"unified"}, false},
		{"network namespace", nil, true},
		{"v1 and namespace", []string{"memory", "pids"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "seen")
			fake := filepath.Join(dir, "qemu")
			script := "#!/bin/sh\ncat /proc/self/cgroup > " + out + "\nreadlink /proc/self/ns/net >> " + out + "\n"
			if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := Config{Name: "placement"}
			dirs := makeCgroups(t, tt.hierarchies...)
			cfg.CgroupProcs = procsFiles(dirs)
			if tt.netns {
				cfg.NetNSPath = newNetNS(t)
			}
			cmd, fd, err := command(fake, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if fd >= 0 {
				defer syscall.Close(fd)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			before := nsID(t, "/proc/thread-self/ns/net")
			if err := startIn(cfg.NetNSPath, cmd); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			if after := nsID(t, "/proc/thread-self/ns/net"); after != before {
				t.Fatalf("the test's thread is left in %s", after)
			}
			seen, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range dirs {
				rel := "/" + filepath.Base(d)
				if !inCgroup(string(seen), filepath.Base(filepath.Dir(d)), rel) {
					t.Errorf("not in %s at its start:\n%s", d, seen)
				}
			}
			wantNS := nsID(t, "/proc/self/ns/net")
			if tt.netns {
				wantNS = nsID(t, cfg.NetNSPath)
			}
			if !strings.Contains(string(seen), wantNS) {
				t.Errorf("not in network namespace %s at its start:\n%s", wantNS, seen)
			}
		})
	}
}

// inCgroup reports whether /proc/<pid>/cgroup text puts the process at
// path in the hierarchy of controller ("unified" is the v2 line "0::").
func inCgroup(text, controller, path string) bool {
	for line := range strings.Lines(text) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || parts[2] != path {
			continue
		}
		if controller == "unified" && parts[0] == "0" && parts[1] == "" {
			return true
		}
		if slices.Contains(strings.Split(parts[1], ","), controller) {
			return true
		}
	}
	return false
}

func TestStartErrors(t *testing.T) {
	needBinary(t, qemuBinary, "qemu-system-x86")
	needBinary(t, "qemu-img", "qemu-utils")
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	dir := t.TempDir()
	base := Config{
		Name: "bad", Kernel: filepath.Join(dir, "no-such-kernel"), SerialLog: filepath.Join(dir, "serial.log"),
		QMPSocket: filepath.Join(dir, "qmp.sock"), Accel: "tcg", Machine: "pc",
	}
	t.Run("qemu refuses", func(t *testing.T) {
		_, err := Start(ctx, base)
		if err == nil || !strings.Contains(err.Error(), "no-such-kernel") {
			t.Fatalf("Start with a missing kernel: %v; want qemu's complaint about it", err)
		}
	})
	t.Run("backing file", func(t *testing.T) {
		backing := filepath.Join(dir, "base.qcow2")
		if err := CreateDisk(ctx, backing, 1<<20); err != nil {
			t.Fatal(err)
		}
		overlay := filepath.Join(dir, "overlay.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, overlay).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		cfg := base
		cfg.Disk = overlay
		if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "backing file") {
			t.Fatalf("Start with a backing file: %v", err)
		}
	})
	t.Run("cgroup missing", func(t *testing.T) {
		needRoot(t)
		cfg := base
		cfg.CgroupProcs = []string{"/sys/fs/cgroup/memory/nexus-test-" + randSuffix(t) + "/cgroup.procs"}
		_, err := Start(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "exit status 125") {
			t.Fatalf("Start into a missing cgroup: %v", err)
		}
	})
}

// TestLongRunningVM boots a guest that prints a tick every 100 ms and never
// ends, in v1 cgroups and a network namespace, with a disk: placement and
// memory charging, Find, live snapshots, and Shutdown.
func TestLongRunningVM(t *testing.T) {
	kernel := needVM(t)
	needRoot(t)
	needBinary(t, "qemu-io", "qemu-utils")
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	dir := t.TempDir()
	cgroups := makeCgroups(t, "memory", "cpu", "pids")
	netns := newNetNS(t)
	disk := filepath.Join(dir, "disk.qcow2")
	if err := CreateDisk(ctx, disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	name := "long-" + randSuffix(t)
	ticker := "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"
	cfg := Config{
		Name:        name,
		Kernel:      kernel,
		Initrd:      writeInitramfs(t, dir, InitramfsOptions{Name: name, Command: ticker}),
		Disk:        disk,
		SerialLog:   filepath.Join(dir, "serial.log"),
		QMPSocket:   filepath.Join(dir, "qmp.sock"),
		CgroupProcs: procsFiles(cgroups),
		NetNSPath:   netns,
	}
	// A stand-in daemon starts the VM and is killed; the VM runs on, and
	// the test finds it as a restarted daemon would. The test reaps qemu
	// itself (as subreaper) rather than leave a zombie to a pid 1 that may
	// not reap.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	start := time.Now()
	pid := startFromDaemon(t, cfg)
	t.Cleanup(func() {
		unix.Kill(pid, unix.SIGKILL)
		unix.Wait4(pid, nil, 0, nil)
	})
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("qemu %d died with the daemon that started it: %v", pid, err)
	}
	m, err := Find(ctx, cfg.QMPSocket)
	if err != nil {
		t.Fatal(err)
	}
	if m.Pid() != pid || m.Name() != name || m.serialLog != cfg.SerialLog {
		t.Errorf("Find = pid %d name %q log %q, want %d %q %q", m.Pid(), m.Name(), m.serialLog, pid, name, cfg.SerialLog)
	}
	started := time.Since(start)
	if err := m.WaitMarker(ctx, "NEXUS-VM-UP "+name); err != nil {
		log, _ := os.ReadFile(cfg.SerialLog)
		t.Fatalf("%v\nserial log:\n%s", err, log)
	}
	t.Logf("started and found after %v, marker after %v", started, time.Since(start))

	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", m.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cgroups {
		if !inCgroup(string(cg), filepath.Base(filepath.Dir(d)), "/"+filepath.Base(d)) {
			t.Errorf("qemu is not in %s:\n%s", d, cg)
		}
	}
	if got, want := nsID(t, fmt.Sprintf("/proc/%d/ns/net", m.Pid())), nsID(t, netns); got != want {
		t.Errorf("qemu is in network namespace %s, want %s", got, want)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", m.Pid()))
	if filepath.Base(exe) != qemuBinary {
		t.Errorf("pid %d is %s, not qemu", m.Pid(), exe)
	}
	// Memory qemu touched before it could have been moved is charged to
	// the cgroup only if it was there from the start: all of its
	// anonymous memory must be.
	charged := readUint(t, filepath.Join(cgroups[0], "memory.usage_in_bytes"))
	anon := procStatusBytes(t, m.Pid(), "RssAnon")
	peak := readUint(t, filepath.Join(cgroups[0], "memory.max_usage_in_bytes"))
	t.Logf("memory cgroup: %d MiB charged (peak %d MiB), qemu RssAnon %d MiB; pids.current %d",
		charged>>20, peak>>20, anon>>20, readUint(t, filepath.Join(cgroups[2], "pids.current")))
	if charged < 50<<20 || charged < anon {
		t.Errorf("memory cgroup charged %d bytes, want > 50 MiB and >= qemu's anonymous RSS %d", charged, anon)
	}

	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "belongs to running qemu") {
		t.Errorf("a second Start on the same QMP socket: %v", err)
	}

	// Live snapshots.
	before, err := DiskUsage(disk)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := m.Snapshot(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	saved := time.Since(t0)
	after, err := DiskUsage(disk)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := Snapshots(ctx, disk); err != nil || !slices.Equal(names, []string{"live"}) {
		t.Errorf("Snapshots of the running VM's disk = %q, %v", names, err)
	}
	if err := Snapshot(ctx, disk, "offline"); err == nil {
		t.Error("qemu-img took a snapshot of a disk a running qemu holds")
	}
	// Let the guest tick on, then roll back: it goes back to a tick it
	// had already printed, and prints the following ones a second time.
	last := lastTick(t, cfg.SerialLog)
	if err := m.WaitMarker(ctx, fmt.Sprintf("tick %d", last+5)); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := m.Rollback(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	loaded := time.Since(t0)
	if err := waitRepeatedTick(ctx, cfg.SerialLog); err != nil {
		t.Errorf("after Rollback: %v", err)
	}
	if err := m.Rollback(ctx, "nosuch"); err == nil {
		t.Error("rolled back to a snapshot that does not exist")
	}
	if err := m.DeleteSnapshot(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	if names, err := Snapshots(ctx, disk); err != nil || len(names) != 0 {
		t.Errorf("after DeleteSnapshot: %q, %v", names, err)
	}
	t.Logf("live snapshot: savevm %v, loadvm %v; disk %d KiB before, %d KiB with the snapshot", saved, loaded, before>>10, after>>10)

	t0 = time.Now()
	const grace = 500 * time.Millisecond
	if err := m.Shutdown(ctx, grace); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatal("the found machine did not notice the exit")
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("qemu after Shutdown: %v (%v), want exit 0", ws, err)
	}
	t.Logf("Shutdown took %v (the guest ignores the power button; grace %v)", time.Since(t0), grace)
	if err := m.Kill(); err != nil {
		t.Errorf("Kill after exit: %v", err)
	}
}

// starterEnv carries a Config (JSON) to the test binary run as a stand-in
// daemon by startFromDaemon.
const starterEnv = "NEXUS_VM_TEST_STARTER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(starterEnv); cfg != "" {
		runStarter(cfg)
		return
	}
	os.Exit(m.Run())
}

// runStarter plays the daemon: it starts the VM, prints qemu's pid and
// waits to be killed.
func runStarter(config string) {
	var cfg Config
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	m, err := Start(ctx, cfg)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(m.Pid())
	time.Sleep(vmTimeout)
}

// startFromDaemon starts the VM from a separate process, kills that
// process with SIGKILL, and returns qemu's pid.
func startFromDaemon(t *testing.T, cfg Config) int {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(os.Args[0], "-test.run=^$")
	daemon.Env = append(os.Environ(), starterEnv+"="+string(js))
	daemon.Stderr = os.Stderr
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	daemon.Process.Kill()
	daemon.Wait()
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("the stand-in daemon said %q (%v)", line, err)
	}
	return pid
}

// lastTick is the highest "tick N" in the serial log.
func lastTick(t *testing.T, log string) int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for line := range strings.Lines(string(b)) {
		if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "tick "))); err == nil && strings.HasPrefix(line, "tick ") {
			last = max(last, n)
		}
	}
	return last
}

// waitRepeatedTick waits until some "tick N" line appears twice.
func waitRepeatedTick(ctx context.Context, log string) error {
	for {
		b, err := os.ReadFile(log)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "tick ") {
				continue
			}
			if seen[line] {
				return nil
			}
			seen[line] = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no tick printed twice: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestCommandVM boots a guest whose command writes to its virtio disk and
// exits: qemu exits 0 and the host reads what the guest wrote.
func TestCommandVM(t *testing.T) {
	kernel := needVM(t)
	needBinary(t, "qemu-io", "qemu-utils")
	modules, err := virtioModules(kernel)
	needIf(t, err == nil, "no virtio modules for the guest kernel: %v", err)
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	if err := CreateDisk(ctx, disk, 16<<20); err != nil {
		t.Fatal(err)
	}
	name := "cmd-" + randSuffix(t)
	cfg := Config{
		Name:   name,
		Kernel: kernel,
		Initrd: writeInitramfs(t, dir, InitramfsOptions{
			Name:    name,
			Modules: modules,
			Command: "echo hello-from-$(hostname)\nprintf nexus-disk-ok | dd of=/dev/vda conv=fsync 2>/dev/null\nexit 3",
		}),
		Disk:      disk,
		SerialLog: filepath.Join(dir, "serial.log"),
		QMPSocket: filepath.Join(dir, "qmp.sock"),
	}
	start := time.Now()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Kill()
		m.Wait()
	})
	if err := m.WaitMarker(ctx, "NEXUS-VM-UP "+name); err != nil {
		t.Fatal(err)
	}
	marker := time.Since(start)
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatal("the VM did not power off")
	}
	if err := m.Wait(); err != nil {
		t.Fatalf("qemu exited with %v, want 0", err)
	}
	t.Logf("marker after %v, qemu exited after %v", marker, time.Since(start))
	log, err := os.ReadFile(cfg.SerialLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello-from-" + name, ExitPrefix + "3"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("serial log lacks %q:\n%s", want, log)
		}
	}
	if err := m.WaitMarker(ctx, "no such line"); err == nil {
		t.Error("WaitMarker found a line that is not there")
	}
	// "nexus-disk-ok" (qemu-io shows '-' as '.' in its text column)
	if out := qemuIO(t, disk, "read -v 0 16"); !strings.Contains(out, "6e 65 78 75 73 2d 64 69 73 6b 2d 6f 6b 00") {
		t.Errorf("the disk does not hold what the guest wrote:\n%s", out)
	}
}

// TestPowerButtonVM boots a guest on the pc machine with the modules for
// the ACPI power button: Shutdown reaches its command as SIGTERM and the
// guest powers off well within the grace period.
func TestPowerButtonVM(t *testing.T) {
	needVM(t)
	vmlinuz, err := FindKernel()
	if err != nil {
		t.Fatal(err)
	}
	modules, err := guestModules(vmlinuz, "input/evdev", "acpi/button")
	needIf(t, err == nil, "no evdev and button modules for the guest kernel: %v", err)
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	dir := t.TempDir()
	name := "button-" + randSuffix(t)
	cfg := Config{
		Name:   name,
		Kernel: vmlinuz, // the bzImage: pc
		Initrd: writeInitramfs(t, dir, InitramfsOptions{
			Name:    name,
			Modules: modules,
			Command: "trap 'echo got-SIGTERM; exit 0' TERM\necho trap-set\nwhile :; do sleep 1 & wait $!; done",
		}),
		SerialLog: filepath.Join(dir, "serial.log"),
		QMPSocket: filepath.Join(dir, "qmp.sock"),
	}
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Kill()
		m.Wait()
	})
	// The button before the guest's trap is set would end it unannounced.
	if err := m.WaitMarker(ctx, "trap-set"); err != nil {
		t.Fatal(err)
	}
	const grace = 10 * time.Second
	start := time.Now()
	if err := m.Shutdown(ctx, grace); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := m.Wait(); err != nil {
		t.Errorf("qemu exited with %v, want 0", err)
	}
	if took > grace/2 {
		t.Errorf("Shutdown took %v: the guest ignored the power button", took)
	}
	log, err := os.ReadFile(cfg.SerialLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"got-SIGTERM", ExitPrefix + "0"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("serial log lacks %q:\n%s", want, log)
		}
	}
	t.Logf("the guest powered off %v after the button", took)
}

// virtioModules returns the guest modules for a virtio disk on microvm.
func virtioModules(kernel string) ([]string, error) {
	if m, err := kernelMachine(kernel); err != nil || m != machineMicrovm {
		return nil, fmt.Errorf("kernel %s boots on pc, the test writes to a virtio-mmio disk", kernel)
	}
	vmlinuz, err := FindKernel()
	if err != nil {
		return nil, err
	}
	return guestModules(vmlinuz, "virtio/virtio_ring", "virtio/virtio", "virtio/virtio_mmio", "block/virtio_blk")
}

// guestModules finds modules (paths under kernel/drivers) in /lib/modules
// of the release vmlinuz-<release> names.
func guestModules(vmlinuz string, names ...string) ([]string, error) {
	release := strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	var paths []string
	for _, m := range names {
		p := filepath.Join("/lib/modules", release, "kernel/drivers", m+".ko")
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func ExampleStart() {
	ctx := context.Background()
	vmlinuz, err := FindKernel()
	if err != nil {
		fmt.Println(err)
		return
	}
	kernel, err := PrepareKernel(ctx, vmlinuz, "/var/cache/nexus/kernels")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := Start(ctx, Config{
		Name:        "web-1",
		MemoryBytes: 256 << 20,
		Kernel:      kernel,
		Initrd:      "/var/lib/nexus/vm/web-1/initrd.gz", // from BuildInitramfs
		SerialLog:   "/var/lib/nexus/vm/web-1/serial.log",
		QMPSocket:   "/run/nexus/vm/web-1.qmp",
		CgroupProcs: []string{
			"/sys/fs/cgroup/memory/nexus/imvu042/cgroup.procs",
			"/sys/fs/cgroup/cpu/nexus/imvu042/cgroup.procs",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := m.WaitMarker(ctx, "NEXUS-VM-UP web-1"); err != nil {
		fmt.Println(err)
	}
	// After a daemon restart: m, err = Find(ctx, "/run/nexus/vm/web-1.qmp")
}

// bootConfig prepares a VM on machine (microvm or pc) whose command exits
// at once, for the benchmarks.
func bootConfig(b *testing.B, machine string) Config {
	kernel := needVM(b)
	if machine == machinePC {
		kernel, _ = FindKernel() // the bzImage itself
	}
	dir := b.TempDir()
	return Config{
		Name:      "bench",
		Machine:   machine,
		Kernel:    kernel,
		Initrd:    writeInitramfs(b, dir, InitramfsOptions{Name: "bench", Command: ":"}),
		SerialLog: filepath.Join(dir, "serial.log"),
		QMPSocket: filepath.Join(dir, "qmp.sock"),
	}
}

// BenchmarkBoot is Start, WaitMarker and Wait of a guest whose command
// exits at once: what a caller of this package waits for.
func BenchmarkBoot(b *testing.B) {
	for _, machine := range []string{machineMicrovm, machinePC} {
		b.Run(machine, func(b *testing.B) {
			cfg := bootConfig(b, machine)
			ctx := context.Background()
			var toMarker time.Duration
			for b.Loop() {
				start := time.Now()
				m, err := Start(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.WaitMarker(ctx, "NEXUS-VM-UP bench"); err != nil {
					b.Fatal(err)
				}
				toMarker += time.Since(start)
				if err := m.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(toMarker.Milliseconds())/float64(b.N), "marker-ms")
		})
	}
}

// BenchmarkBareQemu runs the command line Start builds for the same guest
// directly, to exit: the overhead of this package is the difference to
// BenchmarkBoot.
func BenchmarkBareQemu(b *testing.B) {
	for _, machine := range []string{machineMicrovm, machinePC} {
		b.Run(machine, func(b *testing.B) {
			cfg, err := bootConfig(b, machine).prepare()
			if err != nil {
				b.Fatal(err)
			}
			args := cfg.args()
			for b.Loop() {
				os.Remove(cfg.QMPSocket)
				if out, err := exec.Command(qemuBinary, args...).CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
		})
	}
}
