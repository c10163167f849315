package cgroup

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// cpuPeriodUS is the CFS period quotas are expressed over.
const cpuPeriodUS = 100000

// minCPUMilli is the smallest quota the kernel accepts: 1 ms per period.
const minCPUMilli = 10

// maxCPUMilli keeps quota arithmetic far from overflow (a million CPUs).
const maxCPUMilli = 1 << 30

// Limits are the hard caps of one cgroup. A zero field means no limit.
type Limits struct {
	CPUMilli    uint64 // CPU time in thousandths of a CPU: 500 is half a CPU
	MemoryBytes uint64 // memory without swap; the kernel rounds to pages
	Pids        uint64 // processes and threads

	// IO caps on one block device, in bytes or operations per second.
	IOReadBps, IOWriteBps, IOReadIOPS, IOWriteIOPS uint64
	// IODevice is "major:minor" of the whole block device the caps apply to
	// (see [DeviceOf]); empty means no IO caps.
	IODevice string
}

func (l Limits) hasIO() bool {
	return l.IOReadBps != 0 || l.IOWriteBps != 0 || l.IOReadIOPS != 0 || l.IOWriteIOPS != 0
}

// Validate reports the first field the kernel would refuse, by name.
func (l Limits) Validate() error {
	if l.CPUMilli != 0 && l.CPUMilli < minCPUMilli {
		return fmt.Errorf("CPUMilli %d below the kernel minimum of %d (1ms per 100ms period)", l.CPUMilli, minCPUMilli)
	}
	if l.CPUMilli > maxCPUMilli {
		return fmt.Errorf("CPUMilli %d too large", l.CPUMilli)
	}
	if l.MemoryBytes > 1<<62 {
		return fmt.Errorf("MemoryBytes %d too large", l.MemoryBytes)
	}
	if l.Pids > 1<<31 {
		return fmt.Errorf("Limits.Pids %d too large", l.Pids)
	}
	if l.IODevice == "" {
		if l.hasIO() {
			return errors.New("no IODevice given for the IO caps")
		}
		return nil
	}
	if _, _, err := parseDevice(l.IODevice); err != nil {
		return fmt.Errorf("IODevice: %w", err)
	}
	return nil
}

func parseDevice(s string) (major, minor uint64, err error) {
	a, b, ok := strings.Cut(s, ":")
	if ok {
		major, err = strconv.ParseUint(a, 10, 32)
		if err == nil {
			minor, err = strconv.ParseUint(b, 10, 32)
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("%q is not major:minor", s)
	}
	return major, minor, nil
}

// Create makes the cgroup at path and its missing ancestors and applies l to
// path. It is idempotent: an existing cgroup just gets l applied. On v1 the
// cgroup is created in every hierarchy Nexus uses, with cpuset.cpus and
// cpuset.mems copied from the parent (processes cannot join an empty
// cpuset); on v2 the cpu, io, memory and pids controllers are enabled in the
// ancestors' cgroup.subtree_control.
func (h *Host) Create(path string, l Limits) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("create cgroup %s: %w", path, err)
	}
	var err error
	if h.version == 2 {
		err = h.createV2(path)
	} else {
		err = h.createV1(path)
	}
	if err != nil {
		return err
	}
	return h.set(path, l)
}

func (h *Host) createV1(path string) error {
	for _, p := range prefixes(path) {
		for _, c := range v1Controllers() {
			hier := h.ctrl[c]
			if hier == "" {
				continue
			}
			dir := hier + "/" + p
			if _, err := mkdir(dir); err != nil {
				return err
			}
			// Co-mounted controllers share a directory: initialising it
			// twice is harmless.
			switch c {
			case "cpuset":
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					if err := h.inherit(dir, f); err != nil {
						return err
					}
				}
			case "memory":
				// Always 1 on kernels since 5.x; older ones default to 0,
				// which would let children escape the envelope.
				f := dir + "/memory.use_hierarchy"
				if v, err := readString(f); err == nil && v == "0" {
					if err := h.writeFile(f, "1"); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// inherit copies a cpuset file from the parent when it is still empty.
func (h *Host) inherit(dir, name string) error {
	cur, err := readString(dir + "/" + name)
	if err != nil && !(h.plain && os.IsNotExist(err)) {
		return fmt.Errorf("read %s/%s: %w", dir, name, err)
	}
	if cur != "" {
		return nil
	}
	parent := dir[:strings.LastIndexByte(dir, '/')]
	v, err := readString(parent + "/" + name)
	if err != nil {
		if h.plain && os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("read %s/%s: %w", parent, name, err)
	}
	return h.writeFile(dir+"/"+name, v)
}

func (h *Host) createV2(path string) error {
	var want []string
	for _, c := range v2Controllers() {
		if h.avail[c] {
			want = append(want, c)
		}
	}
	parent := h.root
	for _, p := range prefixes(path) {
		if err := h.enable(parent, want); err != nil {
			return err
		}
		dir := h.root + "/" + p
		if _, err := mkdir(dir); err != nil {
			return err
		}
		parent = dir
	}
	return nil
}

// enable turns on the wanted controllers for dir's children, writing only
// the missing ones so existing configuration is left alone.
func (h *Host) enable(dir string, want []string) error {
	f := dir + "/cgroup.subtree_control"
	cur, err := readString(f)
	if err != nil && !(h.plain && os.IsNotExist(err)) {
		return fmt.Errorf("read %s: %w", f, err)
	}
	on := make(map[string]bool)
	for _, c := range strings.Fields(cur) {
		on[strings.TrimPrefix(c, "+")] = true
	}
	var add []string
	for _, c := range want {
		if !on[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return h.writeFile(f, strings.Join(add, " "))
}

// Set replaces the limits of an existing cgroup; zero fields remove a limit.
// Lowering memory below what the cgroup holds fails with [ErrBelowUsage]
// rather than OOM-killing its processes.
func (h *Host) Set(path string, l Limits) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("set limits of cgroup %s: %w", path, err)
	}
	if _, err := os.Stat(h.file("memory", path, "")); err != nil {
		return fmt.Errorf("set limits of cgroup %s: %w", path, err)
	}
	return h.set(path, l)
}

func (h *Host) set(path string, l Limits) error {
	var err error
	if h.version == 2 {
		err = h.setV2(path, l)
	} else {
		err = h.setV1(path, l)
	}
	if err != nil {
		return fmt.Errorf("set limits of cgroup %s: %w", path, err)
	}
	return nil
}

func (h *Host) setV1(path string, l Limits) error {
	quota := "-1"
	if l.CPUMilli != 0 {
		quota = strconv.FormatUint(l.CPUMilli*cpuPeriodUS/1000, 10)
	}
	if err := h.writeFile(h.file("cpu", path, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriodUS)); err != nil {
		return cpuErr(err)
	}
	if err := h.writeFile(h.file("cpu", path, "cpu.cfs_quota_us"), quota); err != nil {
		return cpuErr(err)
	}

	if err := h.setMemoryV1(path, l.MemoryBytes); err != nil {
		return err
	}

	if err := h.writeFile(h.file("pids", path, "pids.max"), maxOr(l.Pids)); err != nil {
		return err
	}
	return h.setIOV1(path, l)
}

// cpuErr explains the one EINVAL v1 gives for a valid quota.
func cpuErr(err error) error {
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%w (on cgroup v1 a quota may not exceed the parent's or fall below a child's)", err)
	}
	return err
}

func (h *Host) setMemoryV1(path string, limit uint64) error {
	val := "-1"
	if limit != 0 {
		val = strconv.FormatUint(limit, 10)
	}
	mem := h.file("memory", path, "memory.limit_in_bytes")
	memsw := h.file("memory", path, "memory.memsw.limit_in_bytes")
	if _, err := os.Stat(memsw); err != nil {
		// No swap accounting: memory.limit_in_bytes alone is the cap.
		return belowUsage(h.writeFile(mem, val))
	}
	// memsw must never be below the memory limit, so raise it first when
	// growing and lower it last when shrinking.
	cur, err := readUint(mem)
	if err != nil {
		return err
	}
	order := []string{mem, memsw}
	if limit == 0 || limit > cur {
		order = []string{memsw, mem}
	}
	for _, f := range order {
		if err := h.writeFile(f, val); err != nil {
			return belowUsage(err)
		}
	}
	return nil
}

// belowUsage turns the kernel's EBUSY for a limit it cannot reclaim down to
// into ErrBelowUsage.
func belowUsage(err error) error {
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("%w: %w", ErrBelowUsage, err)
	}
	return err
}

func (h *Host) setIOV1(path string, l Limits) error {
	caps := []struct {
		file string
		val  uint64
	}{
		{"blkio.throttle.read_bps_device", l.IOReadBps},
		{"blkio.throttle.write_bps_device", l.IOWriteBps},
		{"blkio.throttle.read_iops_device", l.IOReadIOPS},
		{"blkio.throttle.write_iops_device", l.IOWriteIOPS},
	}
	if h.ctrl["blkio"] == "" {
		if l.IODevice != "" {
			return errors.New("the IO caps need the blkio controller, which is not mounted")
		}
		return nil
	}
	for _, c := range caps {
		f := h.file("blkio", path, c.file)
		// Clear caps left on other devices by earlier limits.
		old, err := readString(f)
		if err != nil && !(h.plain && os.IsNotExist(err)) {
			return fmt.Errorf("read %s: %w", f, err)
		}
		for _, line := range strings.Split(old, "\n") {
			dev, _, _ := strings.Cut(line, " ")
			if dev == "" || dev == l.IODevice {
				continue
			}
			if err := h.writeFile(f, dev+" 0"); err != nil {
				return err
			}
		}
		if l.IODevice != "" {
			// 0 removes the cap on that device.
			if err := h.writeFile(f, fmt.Sprintf("%s %d", l.IODevice, c.val)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *Host) setV2(path string, l Limits) error {
	cpu := "max " + strconv.Itoa(cpuPeriodUS)
	if l.CPUMilli != 0 {
		cpu = fmt.Sprintf("%d %d", l.CPUMilli*cpuPeriodUS/1000, cpuPeriodUS)
	}
	if err := h.writeFile(h.file("cpu", path, "cpu.max"), cpu); err != nil {
		return err
	}

	if err := h.setMemoryV2(path, l.MemoryBytes); err != nil {
		return err
	}

	if err := h.writeFile(h.file("pids", path, "pids.max"), maxOr(l.Pids)); err != nil {
		return err
	}
	return h.setIOV2(path, l)
}

func (h *Host) setMemoryV2(path string, limit uint64) error {
	if limit != 0 {
		// v2 OOM-kills instead of failing when memory.max drops below
		// memory.current, so check first and try reclaiming the difference.
		cur, err := readUint(h.file("memory", path, "memory.current"))
		if err == nil && cur > limit {
			// EAGAIN here only means it could not reclaim it all.
			_ = h.writeFile(h.file("memory", path, "memory.reclaim"), strconv.FormatUint(cur-limit, 10))
			if cur, err = readUint(h.file("memory", path, "memory.current")); err == nil && cur > limit {
				return fmt.Errorf("%w: %d bytes in use, limit %d", ErrBelowUsage, cur, limit)
			}
		}
	}
	if err := h.writeFile(h.file("memory", path, "memory.max"), maxOr(limit)); err != nil {
		return err
	}
	swap := "max"
	if limit != 0 {
		swap = "0"
	}
	f := h.file("memory", path, "memory.swap.max")
	if _, err := os.Stat(f); err != nil && !h.plain {
		return nil // kernel without swap accounting: nothing to cap
	}
	return h.writeFile(f, swap)
}

func (h *Host) setIOV2(path string, l Limits) error {
	f := h.file("io", path, "io.max")
	if !h.avail["io"] {
		if l.IODevice != "" {
			return errors.New("the IO caps need the io controller, which is not available")
		}
		return nil
	}
	old, err := readString(f)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", f, err)
	}
	for _, line := range strings.Split(old, "\n") {
		dev, _, _ := strings.Cut(line, " ")
		if dev == "" || dev == l.IODevice {
			continue
		}
		if err := h.writeFile(f, dev+" rbps=max wbps=max riops=max wiops=max"); err != nil {
			return err
		}
	}
	if l.IODevice == "" {
		return nil
	}
	return h.writeFile(f, fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s",
		l.IODevice, maxOr(l.IOReadBps), maxOr(l.IOWriteBps), maxOr(l.IOReadIOPS), maxOr(l.IOWriteIOPS)))
}

// maxOr renders a limit for files where "max" means none.
func maxOr(v uint64) string {
	if v == 0 {
		return "max"
	}
	return strconv.FormatUint(v, 10)
}

func readUint(file string) (uint64, error) {
	s, err := readString(file)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", file, err)
	}
	return v, nil
}
