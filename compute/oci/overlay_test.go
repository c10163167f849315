package oci

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOverlay(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower, upper, work, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	if err := os.MkdirAll(filepath.Join(lower, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "etc/hosts"), []byte("lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mountUpper(t, lower, upper, work, merged)
	// Mounting the same overlay again (a daemon restart) is a no-op.
	if err := MountOverlay(lower, upper, work, merged); err != nil {
		t.Fatalf("second mount: %v", err)
	}
	if err := MountOverlay(lower, filepath.Join(dir, "other"), work, merged); err == nil {
		t.Error("mounting a different overlay over a mounted one succeeded")
	}

	if err := os.WriteFile(filepath.Join(merged, "new.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(merged, "etc/hosts")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "new.txt")); err != nil || string(b) != "hello" {
		t.Errorf("upper/new.txt = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(lower, "new.txt")); !os.IsNotExist(err) {
		t.Errorf("the write reached the lower layer: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(upper, "etc/hosts"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Errorf("deleting a lower file left no whiteout: mode %o rdev %d, %v", st.Mode, st.Rdev, err)
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "etc/hosts")); string(b) != "lower\n" {
		t.Error("the delete reached the lower layer")
	}

	if err := Unmount(merged); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(merged); err != nil {
		t.Errorf("unmounting twice: %v", err)
	}
	if _, err := os.Stat(filepath.Join(merged, "new.txt")); !os.IsNotExist(err) {
		t.Errorf("still mounted: %v", err)
	}
	for _, bad := range []string{"/tmp/a,b", "/tmp/a:b"} {
		if err := MountOverlay(lower, bad, work, merged); err == nil || !strings.Contains(err.Error(), "contains") {
			t.Errorf("MountOverlay with upper %q: %v", bad, err)
		}
	}
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if base < 1<<20 || base > 1<<20+64<<10 {
		t.Fatalf("DiskUsage with a 1 MiB file = %d", base)
	}
	// A hard link, a symlink to the big file and to /, and a 1 GiB sparse
	// file barely add anything.
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "root")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got < base || got > base+64<<10 {
		t.Errorf("DiskUsage = %d, want about %d", got, base)
	}
	if _, err := DiskUsage(filepath.Join(dir, "missing")); err == nil {
		t.Error("DiskUsage of a missing dir succeeded")
	}
}
