package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Join moves process pid into path, in every hierarchy. Memory the process
// already uses stays charged where it was (v1) or moves only partially, so a
// launcher should rather join before exec through [Host.ProcsFiles].
func (h *Host) Join(path string, pid int) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if pid <= 0 {
		return fmt.Errorf("join cgroup %s: invalid pid %d", path, pid)
	}
	for _, f := range h.ProcsFiles(path) {
		if err := h.writeFile(f, strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("join cgroup %s: %w", path, err)
		}
	}
	return nil
}

// Procs returns the processes in path and below it, sorted. On v1 it is the
// union over all hierarchies, so a process half-moved elsewhere still shows.
func (h *Host) Procs(path string) ([]int, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	pids, err := h.procs(path)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", path, err)
	}
	return pids, nil
}

func (h *Host) procs(path string) ([]int, error) {
	seen := make(map[int]bool)
	var pids []int
	for _, top := range h.allDirs(path) {
		dirs, err := subtree(top)
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			b, err := os.ReadFile(d + "/cgroup.procs")
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile, or no such file in a fake tree
			}
			if err != nil {
				return nil, err
			}
			for _, s := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(s)
				if err != nil {
					return nil, fmt.Errorf("parse %s/cgroup.procs: %w", d, err)
				}
				if !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// Kill sends SIGKILL to every process in path and below and returns once
// they are gone. It uses cgroup.kill where the kernel has it (v2, Linux
// 5.14); otherwise it freezes the cgroup so nothing can fork while it kills,
// and repeats until the cgroup is empty. It gives up when ctx is done.
func (h *Host) Kill(ctx context.Context, path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if err := h.kill(ctx, path); err != nil {
		return fmt.Errorf("kill processes of cgroup %s: %w", path, err)
	}
	return nil
}

func (h *Host) kill(ctx context.Context, path string) error {
	if h.version == 2 {
		f := filepath.Join(h.root, path, "cgroup.kill")
		if _, err := os.Stat(f); err == nil {
			if err := h.writeFile(f, "1"); err != nil {
				return err
			}
			return h.waitEmpty(ctx, path)
		}
	}
	for {
		frozen, err := h.freeze(ctx, path, true)
		if err != nil {
			return err
		}
		pids, err := h.procs(path)
		if err != nil {
			return err
		}
		for _, pid := range pids {
			// ESRCH: it exited on its own.
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill %d: %w", pid, err)
			}
		}
		// Frozen tasks die only once thawed.
		if frozen {
			if _, err := h.freeze(ctx, path, false); err != nil {
				return err
			}
		}
		if len(pids) == 0 {
			return nil
		}
		err = h.waitEmpty(ctx, path)
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
}

// freeze freezes or thaws path if the host has a freezer, waiting for a
// freeze to complete. It reports whether it did anything.
func (h *Host) freeze(ctx context.Context, path string, on bool) (bool, error) {
	var file, want, value string
	switch {
	case h.version == 2:
		file, value = filepath.Join(h.root, path, "cgroup.freeze"), "0"
		if on {
			value = "1"
		}
	case h.ctrl["freezer"] != "":
		file, value = h.file("freezer", path, "freezer.state"), "THAWED"
		if on {
			value, want = "FROZEN", "FROZEN"
		}
	default:
		return false, nil
	}
	if _, err := os.Stat(file); err != nil {
		return false, nil
	}
	if !on {
		// Thaw the whole subtree: a paused workload below (runc pause)
		// stays frozen after its parent thaws, and its killed processes
		// would never exit.
		dirs, err := subtree(filepath.Dir(file))
		if err != nil {
			return false, err
		}
		for _, d := range dirs {
			f := filepath.Join(d, filepath.Base(file))
			if err := h.writeFile(f, value); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, err
			}
		}
		return true, nil
	}
	if err := h.writeFile(file, value); err != nil {
		return false, err
	}
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		var done bool
		if h.version == 2 {
			n, err := readKey(filepath.Join(h.root, path, "cgroup.events"), "frozen")
			done = err == nil && n == 1
		} else {
			s, err := readString(file)
			done = err == nil && s == want
		}
		if done {
			return true, nil
		}
		if err := sleep(ctx, delay); err != nil {
			// Do not leave a half-frozen cgroup behind.
			_, _ = h.freeze(context.Background(), path, false)
			return false, fmt.Errorf("freeze: %w", err)
		}
	}
}

// waitEmpty polls until no process is left in path, for at most a second
// per call (the caller kills again after that).
func (h *Host) waitEmpty(ctx context.Context, path string) error {
	deadline := time.Now().Add(time.Second)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		pids, err := h.procs(path)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still running", pids)
		}
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("processes %v still running: %w", pids, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Remove deletes path and every cgroup below it, children first, in every
// hierarchy (on v1 also those Nexus does not manage but runc creates
// container cgroups in, such as devices). A missing cgroup is not an error.
// It fails with [ErrPopulated], naming the cgroup, while processes remain:
// call [Host.Kill] first.
func (h *Host) Remove(path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	for _, top := range h.allDirs(path) {
		dirs, err := subtree(top)
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", path, err)
		}
		for _, d := range dirs {
			if err := h.rmdir(d); err != nil {
				return fmt.Errorf("remove cgroup %s: %w", path, err)
			}
		}
	}
	return nil
}

func (h *Host) rmdir(dir string) error {
	if h.plain {
		// A fake tree holds ordinary files the kernel would not.
		return os.RemoveAll(dir)
	}
	// A cgroup whose last task is still exiting is briefly busy.
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		b, _ := os.ReadFile(dir + "/cgroup.procs")
		if pids := strings.Fields(string(b)); len(pids) > 0 {
			return fmt.Errorf("%s: %w: pids %s", dir, ErrPopulated, strings.Join(pids, " "))
		}
		if i == 50 {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
}
