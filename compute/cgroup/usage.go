package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is what a cgroup and everything below it has consumed.
type Usage struct {
	CPUNanos        uint64 // CPU time since the cgroup was created
	MemoryBytes     uint64 // memory charged now, page cache included
	MemoryPeakBytes uint64 // highest MemoryBytes seen; 0 if the kernel does not track it
	IOReadBytes     uint64 // bytes read from block devices
	IOWriteBytes    uint64 // bytes written to block devices
	Pids            uint64 // processes and threads now
	OOMKills        uint64 // processes killed for exceeding a memory limit
}

// Usage reads the counters of path. They include all descendants, with one
// v1 caveat: OOM kills are counted in the victim's own cgroup there, so they
// are summed over the descendants that still exist and a removed child's
// kills are lost.
func (h *Host) Usage(path string) (Usage, error) {
	if err := checkPath(path); err != nil {
		return Usage{}, err
	}
	var (
		u   Usage
		err error
	)
	if h.version == 2 {
		u, err = h.usageV2(path)
	} else {
		u, err = h.usageV1(path)
	}
	if err != nil {
		return Usage{}, fmt.Errorf("read usage of cgroup %s: %w", path, err)
	}
	return u, nil
}

func (h *Host) usageV1(path string) (Usage, error) {
	var u Usage
	var err error
	if u.CPUNanos, err = readUint(h.file("cpuacct", path, "cpuacct.usage")); err != nil {
		return u, err
	}
	if u.MemoryBytes, err = readUint(h.file("memory", path, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	if u.MemoryPeakBytes, err = readUint(h.file("memory", path, "memory.max_usage_in_bytes")); err != nil {
		return u, err
	}
	if u.Pids, err = readUint(h.file("pids", path, "pids.current")); err != nil {
		return u, err
	}
	if h.ctrl["blkio"] != "" {
		// The _recursive file includes descendants; the plain one does not.
		f := h.file("blkio", path, "blkio.throttle.io_service_bytes_recursive")
		if _, err := os.Stat(f); err != nil {
			f = h.file("blkio", path, "blkio.throttle.io_service_bytes")
		}
		if u.IOReadBytes, u.IOWriteBytes, err = readBlkio(f); err != nil {
			return u, err
		}
	}
	dirs, err := subtree(filepath.Join(h.ctrl["memory"], path))
	if err != nil {
		return u, err
	}
	if len(dirs) == 0 {
		return u, fmt.Errorf("cgroup %s: %w", path, fs.ErrNotExist)
	}
	for _, d := range dirs {
		n, err := readKey(d+"/memory.oom_control", "oom_kill")
		if errors.Is(err, fs.ErrNotExist) && d != dirs[len(dirs)-1] {
			continue // removed while we read
		}
		if err != nil {
			return u, err
		}
		u.OOMKills += n
	}
	return u, nil
}

func (h *Host) usageV2(path string) (Usage, error) {
	var u Usage
	usec, err := readKey(h.file("cpu", path, "cpu.stat"), "usage_usec")
	if err != nil {
		return u, err
	}
	u.CPUNanos = usec * 1000
	if u.MemoryBytes, err = readUint(h.file("memory", path, "memory.current")); err != nil {
		return u, err
	}
	// memory.peak arrived in Linux 5.19.
	if u.MemoryPeakBytes, err = readUint(h.file("memory", path, "memory.peak")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	if u.Pids, err = readUint(h.file("pids", path, "pids.current")); err != nil {
		return u, err
	}
	if u.IOReadBytes, u.IOWriteBytes, err = readIOStat(h.file("io", path, "io.stat")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	if u.OOMKills, err = readKey(h.file("memory", path, "memory.events"), "oom_kill"); err != nil {
		return u, err
	}
	return u, nil
}

// readKey reads the value of key from a flat keyed file ("key value" lines).
// A missing key reads as 0: kernels add keys over time.
func readKey(file, key string) (uint64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %s: %w", file, key, err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", file, err)
	}
	return 0, nil
}

// readBlkio sums the Read and Write lines of a v1 io_service_bytes file:
//
//	254:0 Read 4096
//	254:0 Write 1048576
//	...
//	Total 1052672
func readBlkio(file string) (read, write uint64, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %q: %w", file, line, err)
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write, nil
}

// readIOStat sums rbytes and wbytes over the devices of a v2 io.stat file:
//
//	254:0 rbytes=4096 wbytes=1048576 rios=1 wios=16 dbytes=0 dios=0
func readIOStat(file string) (read, write uint64, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if k != "rbytes" && k != "wbytes" {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("parse %s: %q: %w", file, line, err)
			}
			if k == "rbytes" {
				read += n
			} else {
				write += n
			}
		}
	}
	return read, write, nil
}
