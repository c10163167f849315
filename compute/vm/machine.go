//go:build linux

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes one VM for Start.
type Config struct {
	// Name identifies the VM to qemu (-name) and in errors: a letter or
	// digit, then up to 62 letters, digits, '_', '.' or '-'.
	Name string
	// MemoryBytes is the guest RAM, rounded up to MiB; 256 MiB if zero.
	MemoryBytes uint64
	// CPUs is the number of virtual CPUs; 1 if zero.
	CPUs int
	// Kernel is what PrepareKernel returned; Initrd is optional.
	Kernel, Initrd string
	// Append is the kernel command line; "console=ttyS0 quiet panic=-1"
	// if empty (panic=-1 turns a guest panic into an exit of qemu). Start
	// adds tsc_early_khz on microvm under tcg.
	Append string
	// Disk is an optional qcow2 file made by CreateDisk, attached as a
	// virtio disk. Start refuses one with a backing file.
	Disk string
	// SerialLog receives the guest's console (truncated at start).
	SerialLog string
	// QMPSocket is where qemu listens for QMP; Find takes it too.
	QMPSocket string
	// QemuLog receives qemu's own output; SerialLog+".qemu" if empty.
	QemuLog string
	// CgroupProcs are cgroup.procs files, one per hierarchy, that qemu is
	// in before its first instruction.
	CgroupProcs []string
	// NetNSPath is an optional network namespace (such as
	// /run/netns/<name> or /proc/<pid>/ns/net) qemu is born in.
	NetNSPath string
	// Accel is "kvm" or "tcg"; Accel() decides if empty.
	Accel string
	// Machine is "microvm" or "pc"; if empty, microvm for an ELF kernel
	// with a PVH entry (see PrepareKernel), pc otherwise.
	Machine string
	// NoSandbox leaves out qemu's seccomp sandbox (-sandbox on), for a
	// qemu built without it.
	NoSandbox bool
}

const (
	defaultMemory = 256 << 20
	defaultAppend = "console=ttyS0 quiet panic=-1"
	qemuBinary    = "qemu-system-x86_64"
	// startTimeout bounds the wait for qemu's QMP socket when ctx has no
	// earlier deadline.
	startTimeout = 30 * time.Second
)

var vmName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// prepare checks c and fills in its defaults.
func (c Config) prepare() (Config, error) {
	if !vmName.MatchString(c.Name) {
		return c, fmt.Errorf("bad VM name %q", c.Name)
	}
	if c.Kernel == "" || c.SerialLog == "" || c.QMPSocket == "" {
		return c, errors.New("kernel, serial log and QMP socket are required")
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = defaultMemory
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.CPUs < 0 || c.CPUs > 256 {
		return c, fmt.Errorf("bad CPU count %d", c.CPUs)
	}
	if c.Append == "" {
		c.Append = defaultAppend
	}
	if c.QemuLog == "" {
		c.QemuLog = c.SerialLog + ".qemu"
	}
	// Paths end up inside qemu option strings, where a comma starts the
	// next option.
	for _, p := range []*string{&c.Kernel, &c.Initrd, &c.Disk, &c.SerialLog, &c.QMPSocket, &c.QemuLog} {
		if *p == "" {
			continue
		}
		if strings.ContainsAny(*p, ",\n\x00") {
			return c, fmt.Errorf("path %q contains a comma or newline", *p)
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, err
		}
		*p = abs
	}
	if strings.ContainsAny(c.Append, "\n\x00") {
		return c, errors.New("kernel command line contains a newline")
	}
	for _, f := range c.CgroupProcs {
		if filepath.Base(f) != "cgroup.procs" {
			return c, fmt.Errorf("cgroup file %q is not a cgroup.procs file", f)
		}
	}
	if c.Accel == "" {
		a, err := Accel()
		if err != nil {
			return c, err
		}
		c.Accel = a.Name
	}
	if c.Accel != "kvm" && c.Accel != "tcg" {
		return c, fmt.Errorf("bad accelerator %q", c.Accel)
	}
	if c.Machine == "" {
		m, err := kernelMachine(c.Kernel)
		if err != nil {
			return c, err
		}
		c.Machine = m
	}
	if c.Machine != machineMicrovm && c.Machine != machinePC {
		return c, fmt.Errorf("bad machine %q", c.Machine)
	}
	if c.Machine == machineMicrovm && c.Accel == "tcg" && !strings.Contains(c.Append, "tsc_early_khz=") {
		if khz, err := tscKHz("/proc/cpuinfo"); err == nil {
			c.Append += " tsc_early_khz=" + strconv.FormatUint(khz, 10)
		}
	}
	return c, nil
}

// args is qemu's command line for c (after prepare), without the binary.
func (c Config) args() []string {
	cpu := "max"
	if c.Accel == "kvm" {
		cpu = "host"
	}
	a := []string{
		"-name", c.Name,
		"-machine", c.Machine,
		"-accel", c.Accel,
		"-cpu", cpu,
		"-m", strconv.FormatUint((c.MemoryBytes+(1<<20)-1)>>20, 10) + "M",
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "file:" + c.SerialLog,
		"-qmp", "unix:" + c.QMPSocket + ",server=on,wait=off",
		"-kernel", c.Kernel,
		"-append", c.Append,
	}
	if c.Initrd != "" {
		a = append(a, "-initrd", c.Initrd)
	}
	if c.Disk != "" {
		dev := "virtio-blk-pci"
		if c.Machine == machineMicrovm {
			dev = "virtio-blk-device"
		}
		a = append(a,
			"-drive", "file="+c.Disk+",if=none,id=disk0,format=qcow2",
			"-device", dev+",drive=disk0")
	}
	if !c.NoSandbox {
		// qemu needs none of these after start: no setuid, no fork or
		// exec, no priority or affinity changes.
		a = append(a, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	return a
}

// Machine is a running (or exited) qemu.
type Machine struct {
	name      string
	pid       int
	qmpSocket string
	serialLog string
	pidfd     *os.File // closed once the process is gone

	done chan struct{}
	err  error // the exit status, written before done closes

	mu sync.Mutex // one QMP session at a time
}

// Start starts qemu for cfg and returns once its QMP socket answers. ctx
// bounds only the start: the VM runs, in its own session, until it powers
// off or is stopped, even after the caller exits.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	cfg, err := cfg.prepare()
	if err != nil {
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	m, err := start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start VM %s: %w", cfg.Name, err)
	}
	return m, nil
}

func start(ctx context.Context, cfg Config) (*Machine, error) {
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return nil, fmt.Errorf("%w (install qemu-system-x86)", err)
	}
	if cfg.Disk != "" {
		info, err := diskInfo(ctx, cfg.Disk)
		if err != nil {
			return nil, err
		}
		if info.Format != "qcow2" || info.BackingFilename != "" {
			return nil, fmt.Errorf("disk %s is %s with backing file %q: want qcow2 without one", cfg.Disk, info.Format, info.BackingFilename)
		}
	}
	// Connecting is enough to tell: a live qemu may be busy with another
	// QMP client and not greet for a long time.
	if c, err := net.DialTimeout("unix", cfg.QMPSocket, time.Second); err == nil {
		q := &qmpConn{conn: c.(*net.UnixConn)}
		pid, _ := q.peerPid()
		c.Close()
		return nil, fmt.Errorf("QMP socket %s belongs to running qemu %d", cfg.QMPSocket, pid)
	}
	// A socket nobody answers on is left from a qemu that died. qemu
	// truncates the serial log itself.
	if fi, err := os.Lstat(cfg.QMPSocket); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("QMP socket path %s is not a socket", cfg.QMPSocket)
		}
		if err := os.Remove(cfg.QMPSocket); err != nil {
			return nil, err
		}
	}
	logf, err := os.OpenFile(cfg.QemuLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // qemu has its own copy

	cmd, cgroupFD, err := command(qemu, cfg)
	if err != nil {
		return nil, err
	}
	if cgroupFD >= 0 {
		defer unix.Close(cgroupFD)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startIn(cfg.NetNSPath, cmd); err != nil {
		return nil, err
	}
	pidfd, err := openPidfd(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	m := &Machine{
		name:      cfg.Name,
		pid:       cmd.Process.Pid,
		qmpSocket: cfg.QMPSocket,
		serialLog: cfg.SerialLog,
		pidfd:     pidfd,
		done:      make(chan struct{}),
	}
	go func() {
		err := cmd.Wait()
		m.exited(err)
	}()
	if err := m.waitQMP(ctx); err != nil {
		m.Kill()
		<-m.done
		tail := logTail(cfg.QemuLog)
		if strings.Contains(tail, "sandbox") && !cfg.NoSandbox {
			tail += " (set NoSandbox for a qemu built without seccomp)"
		}
		return nil, fmt.Errorf("%w%s", err, tail)
	}
	return m, nil
}

// command builds the exec.Cmd that runs qemu inside cfg's cgroups, and
// the cgroup directory fd it uses (-1 if none).
func command(qemu string, cfg Config) (*exec.Cmd, int, error) {
	args := cfg.args()
	attr := &syscall.SysProcAttr{Setsid: true}
	if len(cfg.CgroupProcs) == 1 && isCgroup2(filepath.Dir(cfg.CgroupProcs[0])) {
		// clone3 places the child straight into the cgroup.
		fd, err := unix.Open(filepath.Dir(cfg.CgroupProcs[0]), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, -1, fmt.Errorf("open cgroup: %w", err)
		}
		attr.UseCgroupFD, attr.CgroupFD = true, fd
		cmd := exec.Command(qemu, args...)
		cmd.SysProcAttr = attr
		return cmd, fd, nil
	}
	if len(cfg.CgroupProcs) == 0 {
		cmd := exec.Command(qemu, args...)
		cmd.SysProcAttr = attr
		return cmd, -1, nil
	}
	// Go cannot run code between fork and exec, and cgroup v1 has no
	// CLONE_INTO_CGROUP: sh joins each cgroup with its own pid, then
	// becomes qemu (same pid) with exec.
	const wrapper = `n=$1; shift
while [ "$n" -gt 0 ]; do
	echo $$ > "$1" || exit 125
	n=$((n-1)); shift
done
exec "$@"`
	wargs := []string{"-c", wrapper, "nexus-vm-" + cfg.Name, strconv.Itoa(len(cfg.CgroupProcs))}
	wargs = append(wargs, cfg.CgroupProcs...)
	wargs = append(wargs, qemu)
	wargs = append(wargs, args...)
	cmd := exec.Command("/bin/sh", wargs...)
	cmd.SysProcAttr = attr
	return cmd, -1, nil
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// startIn starts cmd from an OS thread that is inside the network
// namespace netns (if not empty), so the child is born there.
func startIn(netns string, cmd *exec.Cmd) error {
	if netns == "" {
		return cmd.Start()
	}
	target, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer unix.Close(target)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", netns, err)
			return
		}
		err = cmd.Start()
		// A thread that cannot go back stays locked, so the runtime
		// ends it with this goroutine rather than reuse it.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Non-blocking, so the runtime poller waits for the exit.
	return os.NewFile(uintptr(fd), "pidfd"), nil
}

func (m *Machine) exited(err error) {
	m.err = err
	m.pidfd.Close()
	close(m.done)
}

// waitQMP waits until the QMP socket answers or qemu exits.
func (m *Machine) waitQMP(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		q, err := dialQMP(dctx, m.qmpSocket)
		dcancel()
		if err == nil {
			return q.Close()
		}
		select {
		case <-m.done:
			return fmt.Errorf("qemu exited: %v", m.err)
		case <-ctx.Done():
			return fmt.Errorf("wait for QMP socket: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// logTail returns the end of qemu's log for an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return ": " + strings.TrimSpace(string(b))
}

// Find returns the VM whose QMP socket is qmpSocket, typically one started
// by an earlier run of the daemon. Its Wait reports the exit but not the
// exit status (the process is not a child).
func Find(ctx context.Context, qmpSocket string) (*Machine, error) {
	q, err := dialQMP(ctx, qmpSocket)
	if err != nil {
		return nil, fmt.Errorf("find VM at %s: %w", qmpSocket, err)
	}
	defer q.Close()
	pid, err := q.peerPid()
	if err != nil {
		return nil, fmt.Errorf("find VM at %s: %w", qmpSocket, err)
	}
	pidfd, err := openPidfd(pid)
	if err != nil {
		return nil, fmt.Errorf("find VM at %s: %w", qmpSocket, err)
	}
	// qemu still answering after pidfd_open means the pid was not
	// reused in between.
	var name struct {
		Name string `json:"name"`
	}
	if err := q.execute("query-name", nil, &name); err != nil {
		pidfd.Close()
		return nil, fmt.Errorf("find VM at %s: %w", qmpSocket, err)
	}
	m := &Machine{
		name:      name.Name,
		pid:       pid,
		qmpSocket: qmpSocket,
		pidfd:     pidfd,
		done:      make(chan struct{}),
	}
	// QMP does not tell a file chardev's path; qemu's command line does.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		args := strings.Split(string(cmdline), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if p, ok := strings.CutPrefix(args[i+1], "file:"); ok && args[i] == "-serial" {
				m.serialLog = p
			}
		}
	}
	go m.watch()
	return m, nil
}

// watch waits for a process that is not a child to exit.
func (m *Machine) watch() {
	rc, err := m.pidfd.SyscallConn()
	if err == nil {
		// A pidfd becomes readable when the process exits.
		err = rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(p, 0)
			return err == nil && n > 0
		})
	}
	m.exited(err)
}

// Name is the VM's name.
func (m *Machine) Name() string { return m.name }

// Pid is qemu's process id.
func (m *Machine) Pid() int { return m.pid }

// Done is closed when qemu has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Wait waits for qemu to exit. For a machine from Start it returns nil if
// qemu exited with status 0 (the guest powered off or Shutdown quit it),
// an *exec.ExitError otherwise; for one from Find, nil.
func (m *Machine) Wait() error {
	<-m.done
	return m.err
}

// WaitMarker waits until a line of the serial console ends with marker.
// It fails if qemu exits first.
func (m *Machine) WaitMarker(ctx context.Context, marker string) error {
	if m.serialLog == "" {
		return fmt.Errorf("wait for %q on VM %s: no serial log", marker, m.name)
	}
	if marker == "" || strings.ContainsAny(marker, "\r\n") {
		return fmt.Errorf("wait for %q on VM %s: marker must be one non-empty line", marker, m.name)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var partial []byte
	buf := make([]byte, 64<<10)
	scan := func() (bool, error) {
		if f == nil {
			var err error
			if f, err = os.Open(m.serialLog); err != nil {
				return false, err
			}
		}
		for {
			n, err := f.Read(buf)
			partial = append(partial, buf[:n]...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				if bytes.HasSuffix(bytes.TrimSpace(partial[:i]), []byte(marker)) {
					return true, nil
				}
				partial = partial[i+1:]
			}
			if err == io.EOF || n == 0 {
				return false, nil
			}
			if err != nil {
				return false, err
			}
		}
	}
	for {
		// Read once more after an exit, for what qemu wrote last.
		exited := false
		select {
		case <-m.done:
			exited = true
		default:
		}
		found, err := scan()
		switch {
		case err != nil:
			return fmt.Errorf("wait for %q on VM %s: %w", marker, m.name, err)
		case found:
			return nil
		case exited:
			return fmt.Errorf("wait for %q on VM %s: qemu exited first", marker, m.name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %q on VM %s: %w", marker, m.name, ctx.Err())
		case <-m.done:
		case <-tick.C:
		}
	}
}

// Shutdown presses the VM's ACPI power button, waits up to grace for the
// guest to power off, then tells qemu to quit; it returns when qemu is
// gone or ctx is done, whichever is first. Guests that ignore the button,
// as those of BuildInitramfs do, need no grace.
func (m *Machine) Shutdown(ctx context.Context, grace time.Duration) error {
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.qmp(ctx, func(q *qmpConn) error { return q.execute("system_powerdown", nil, nil) }); err != nil {
		select {
		case <-m.done: // it went away meanwhile
			return nil
		default:
		}
		return fmt.Errorf("shut down VM %s: %w", m.name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shut down VM %s: %w", m.name, ctx.Err())
	case <-timer.C:
	}
	// quit may lose its reply to the exit itself.
	qerr := m.qmp(ctx, func(q *qmpConn) error { return q.execute("quit", nil, nil) })
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		if qerr != nil {
			return fmt.Errorf("shut down VM %s: quit: %w", m.name, qerr)
		}
		return fmt.Errorf("shut down VM %s: %w", m.name, ctx.Err())
	}
}

// Kill stops qemu at once with SIGKILL. It is a no-op once qemu has
// exited; the pidfd it signals through cannot reach a reused pid.
func (m *Machine) Kill() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	rc, err := m.pidfd.SyscallConn()
	if err != nil {
		return fmt.Errorf("kill VM %s: %w", m.name, err)
	}
	var kerr error
	err = rc.Control(func(fd uintptr) {
		kerr = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0)
	})
	if errors.Is(err, os.ErrClosed) || errors.Is(kerr, unix.ESRCH) {
		return nil
	}
	if err == nil {
		err = kerr
	}
	if err != nil {
		return fmt.Errorf("kill VM %s: %w", m.name, err)
	}
	return nil
}

// Snapshot saves the running VM (RAM, devices and disk) as the internal
// snapshot name of its disk, replacing one of that name. The guest is
// paused while its RAM is written.
func (m *Machine) Snapshot(ctx context.Context, name string) error {
	return m.snapshotCmd(ctx, "savevm", "snapshot", name)
}

// Rollback returns the running VM to the snapshot name, which stays
// available; the guest continues from the moment the snapshot was taken.
func (m *Machine) Rollback(ctx context.Context, name string) error {
	return m.snapshotCmd(ctx, "loadvm", "roll back", name)
}

// DeleteSnapshot removes the snapshot name from the running VM's disk.
func (m *Machine) DeleteSnapshot(ctx context.Context, name string) error {
	return m.snapshotCmd(ctx, "delvm", "delete snapshot of", name)
}

func (m *Machine) snapshotCmd(ctx context.Context, hmp, what, name string) error {
	if err := checkSnapshotName(name); err != nil {
		return fmt.Errorf("%s VM %s: %w", what, m.name, err)
	}
	if err := m.qmp(ctx, func(q *qmpConn) error { return q.hmp(hmp + " " + name) }); err != nil {
		return fmt.Errorf("%s VM %s as %s: %w", what, m.name, name, err)
	}
	return nil
}

// qmp runs fn in a fresh QMP session.
func (m *Machine) qmp(ctx context.Context, fn func(*qmpConn) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	q, err := dialQMP(ctx, m.qmpSocket)
	if err != nil {
		return err
	}
	defer q.Close()
	return fn(q)
}
