package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// fsName names the filesystems that have no block device, for errors.
func fsName(magic int64) string {
	switch magic {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.PROC_SUPER_MAGIC:
		return "proc"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	case unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC:
		return "cgroupfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case 0x2fc12fc1: // not in x/sys/unix
		return "zfs"
	}
	return fmt.Sprintf("filesystem type %#x", magic)
}

// DeviceOf returns "major:minor" of the whole block device holding dir, the
// device IO caps must name (throttling applies to whole devices, not
// partitions). It fails, saying why, for directories on filesystems without
// a block device of their own: overlay, tmpfs, btrfs subvolumes, network
// filesystems.
func DeviceOf(dir string) (string, error) {
	return deviceOf("/sys", dir)
}

func deviceOf(sys, dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", fmt.Errorf("block device of %s: stat: %w", dir, err)
	}
	major, minor := unix.Major(st.Dev), unix.Minor(st.Dev)
	if major == 0 {
		var sfs unix.Statfs_t
		name := "a filesystem without a block device"
		if unix.Statfs(dir, &sfs) == nil {
			name = fsName(sfs.Type)
		}
		return "", fmt.Errorf("block device of %s: it is on %s (device 0:%d); IO caps need a directory on a block device", dir, name, minor)
	}
	dev := fmt.Sprintf("%d:%d", major, minor)
	link := filepath.Join(sys, "dev/block", dev)
	if _, err := os.Stat(filepath.Join(link, "partition")); err == nil {
		real, err := filepath.EvalSymlinks(link)
		if err != nil {
			return "", fmt.Errorf("block device of %s: resolve partition %s: %w", dir, dev, err)
		}
		b, err := os.ReadFile(filepath.Join(filepath.Dir(real), "dev"))
		if err != nil {
			return "", fmt.Errorf("block device of %s: disk of partition %s: %w", dir, dev, err)
		}
		whole := string(b)
		if n := len(whole); n > 0 && whole[n-1] == '\n' {
			whole = whole[:n-1]
		}
		if _, _, err := parseDevice(whole); err != nil {
			return "", fmt.Errorf("block device of %s: disk of partition %s: %w", dir, dev, err)
		}
		return whole, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("block device of %s: %w", dir, err)
	}
	if _, err := os.Stat(link); err != nil {
		return "", fmt.Errorf("block device of %s: device %s is not a block device: %w", dir, dev, err)
	}
	return dev, nil
}
