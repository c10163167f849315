package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestDeviceOf(t *testing.T) {
	dir := t.TempDir()
	dev, err := DeviceOf(dir)
	if err != nil {
		testenv.Missing(t, "temp dir is not on a block device: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/dev/block", dev)); err != nil {
		t.Errorf("DeviceOf(%s) = %s, not a block device: %v", dir, dev, err)
	}
	if _, err := os.Stat(filepath.Join("/sys/dev/block", dev, "partition")); err == nil {
		t.Errorf("DeviceOf(%s) = %s, a partition", dir, dev)
	}
	t.Logf("DeviceOf(%s) = %s", dir, dev)

	for _, tt := range []struct{ dir, want string }{
		{"/proc", "proc"},
		{"/sys", "sysfs"},
		{"/dev/shm", "tmpfs"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		if _, err := os.Stat(filepath.Dir(tt.dir)); err != nil {
			continue
		}
		_, err := DeviceOf(tt.dir)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DeviceOf(%s) = %v, want an error mentioning %q", tt.dir, err, tt.want)
		}
	}
}

// TestDeviceOfPartition resolves a partition to its disk through a fake
// /sys laid out like the kernel's.
func TestDeviceOfPartition(t *testing.T) {
	dir := t.TempDir()
	dev, err := DeviceOf(dir)
	if err != nil {
		testenv.Missing(t, "temp dir is not on a block device: %v", err)
	}
	sys := t.TempDir()
	writeTree(t, sys, map[string]string{
		"devices/virtual/block/disk/dev":            "8:0\n",
		"devices/virtual/block/disk/part/partition": "1\n",
		"devices/virtual/block/disk/part/dev":       dev + "\n",
	})
	if err := os.MkdirAll(filepath.Join(sys, "dev/block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/virtual/block/disk/part", filepath.Join(sys, "dev/block", dev)); err != nil {
		t.Fatal(err)
	}
	got, err := deviceOf(sys, dir)
	if err != nil || got != "8:0" {
		t.Errorf("deviceOf(partition %s) = %q, %v; want the disk 8:0", dev, got, err)
	}
}
