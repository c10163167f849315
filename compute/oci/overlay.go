package oci

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MountOverlay mounts an overlay at merged: lower read-only beneath, upper
// taking every write, work as overlayfs's scratch space (on the same
// filesystem as upper). Missing upper, work and merged directories are
// created. It is idempotent: if merged already holds the same overlay (a
// daemon restart) it returns nil.
//
// Redirects, metacopy and the inode index are turned off so that the upper
// directory is a plain tree of the workload's files and whiteouts, which
// [archive.Write] can snapshot and [archive.Extract] can put over another copy of
// the same lower layer.
func MountOverlay(lower, upper, work, merged string) error {
	if err := mountOverlay(lower, upper, work, merged); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", merged, err)
	}
	return nil
}

func mountOverlay(lower, upper, work, merged string) error {
	dirs := []*string{&lower, &upper, &work, &merged}
	for _, d := range dirs {
		abs, err := filepath.Abs(*d)
		if err != nil {
			return err
		}
		// overlayfs splits its options at ',' and lowerdir at ':'.
		if strings.ContainsAny(abs, ",:\\") {
			return fmt.Errorf("path %q contains ',', ':' or '\\'", abs)
		}
		*d = abs
	}
	if fi, err := os.Stat(lower); err != nil {
		return fmt.Errorf("lower: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("lower %s is not a directory", lower)
	}
	for _, d := range dirs[1:] {
		if err := os.MkdirAll(*d, 0o755); err != nil {
			return err
		}
	}
	m, err := findMount(merged)
	if err != nil {
		return err
	}
	if m != nil {
		if m.fstype == "overlay" && m.option("lowerdir") == lower && m.option("upperdir") == upper {
			return nil
		}
		return fmt.Errorf("%s is already a %s mount", merged, m.fstype)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off,redirect_dir=off,metacopy=off", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount(2) %s: %w", opts, err)
	}
	return nil
}

// Unmount unmounts the overlay at merged. It is a no-op when nothing is
// mounted there. It does not detach lazily: a mount still in use (EBUSY) is
// an error, so that a workload's files are never left half-visible.
func Unmount(merged string) error {
	err := unix.Unmount(merged, 0)
	if err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if errors.Is(err, syscall.EINVAL) {
		abs, aerr := filepath.Abs(merged)
		if aerr != nil {
			return fmt.Errorf("unmount %s: %w", merged, aerr)
		}
		if m, ferr := findMount(abs); ferr == nil && m == nil {
			return nil // not a mount point
		}
	}
	return fmt.Errorf("unmount %s: %w", merged, err)
}

type mountInfo struct {
	fstype string
	opts   []string // super block options
}

func (m *mountInfo) option(key string) string {
	for _, o := range m.opts {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// findMount returns the topmost mount at dir in this mount namespace, or nil.
func findMount(dir string) (*mountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found *mountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+3 >= len(fields) {
			continue
		}
		if unescapeMount(fields[4]) != dir {
			continue
		}
		// Later lines are mounted on top of earlier ones.
		found = &mountInfo{fstype: fields[sep+1], opts: strings.Split(fields[sep+3], ",")}
		for i, o := range found.opts {
			found.opts[i] = unescapeMount(o)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return found, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DiskUsage returns the bytes allocated on disk under dir, dir included:
// what an upper directory costs its IMVU. Symlinks are counted as
// themselves, never followed; hard links are counted once; sparse files
// count only their allocated blocks.
func DiskUsage(dir string) (uint64, error) {
	type inode struct{ dev, ino uint64 }
	seen := make(map[inode]bool)
	var total uint64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while walking
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := inode{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += uint64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return total, nil
}
