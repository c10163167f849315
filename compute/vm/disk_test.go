package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// qemuIO runs qemu-io commands against a qcow2 file and fails the test if
// qemu-io reports an error (it exits 0 even when a pattern does not match,
// so its output is checked for the failure text too).
func qemuIO(t *testing.T, disk string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("qemu-io", append(args, disk)...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io %q: %v\n%s", cmds, err, out)
	}
	return string(out)
}

func TestSnapshotRollbackOffline(t *testing.T) {
	needBinary(t, "qemu-img", "qemu-utils")
	needBinary(t, "qemu-io", "qemu-utils")
	ctx := context.Background()
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := CreateDisk(ctx, disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	empty, err := DiskUsage(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateDisk(ctx, disk, 64<<20); err == nil {
		t.Fatal("CreateDisk replaced an existing disk")
	}

	qemuIO(t, disk, "write -P 0xab 0 1M")
	if err := Snapshot(ctx, disk, "before"); err != nil {
		t.Fatal(err)
	}
	qemuIO(t, disk, "write -P 0xcd 0 64k")
	if out := qemuIO(t, disk, "read -P 0xcd 0 64k"); strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("the overwrite did not land:\n%s", out)
	}
	if err := Snapshot(ctx, disk, "after"); err != nil {
		t.Fatal(err)
	}
	names, err := Snapshots(ctx, disk)
	if err != nil || !slices.Equal(names, []string{"before", "after"}) {
		t.Fatalf("Snapshots = %q, %v; want [before after]", names, err)
	}
	used, err := DiskUsage(disk)
	if err != nil {
		t.Fatal(err)
	}
	if used <= empty {
		t.Errorf("DiskUsage %d after writing 1 MiB and two snapshots, %d when empty", used, empty)
	}
	t.Logf("DiskUsage: %d KiB empty, %d KiB with 1 MiB written and two snapshots", empty>>10, used>>10)

	if err := Rollback(ctx, disk, "before"); err != nil {
		t.Fatal(err)
	}
	if out := qemuIO(t, disk, "read -P 0xab 0 1M"); strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("after rollback the data is not the snapshot's:\n%s", out)
	}
	if err := Rollback(ctx, disk, "after"); err != nil {
		t.Fatal(err)
	}
	if out := qemuIO(t, disk, "read -P 0xcd 0 64k", "read -P 0xab 64k 960k"); strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("rolling forward to the later snapshot failed:\n%s", out)
	}

	if err := DeleteSnapshot(ctx, disk, "before"); err != nil {
		t.Fatal(err)
	}
	if names, err := Snapshots(ctx, disk); err != nil || !slices.Equal(names, []string{"after"}) {
		t.Fatalf("after delete Snapshots = %q, %v", names, err)
	}
	if err := Rollback(ctx, disk, "before"); err == nil {
		t.Fatal("rolled back to a deleted snapshot")
	}
}

func TestSnapshotNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"nightly-2024.01_a", true},
		{"s1", true},
		{"1", false}, // would match a snapshot ID
		{"", false},
		{"a b", false},
		{"-c", false},
		{"x;quit", false},
		{strings.Repeat("a", 65), false},
	} {
		if err := checkSnapshotName(tt.name); (err == nil) != tt.ok {
			t.Errorf("checkSnapshotName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestDiskErrors(t *testing.T) {
	needBinary(t, "qemu-img", "qemu-utils")
	ctx := context.Background()
	dir := t.TempDir()
	if err := CreateDisk(ctx, filepath.Join(dir, "odd.qcow2"), 1000); err == nil {
		t.Error("created a disk of 1000 bytes")
	}
	missing := filepath.Join(dir, "missing.qcow2")
	if err := Snapshot(ctx, missing, "s"); err == nil || !strings.Contains(err.Error(), "missing.qcow2") {
		t.Errorf("Snapshot of a missing disk: %v", err)
	}
	if _, err := Snapshots(ctx, missing); err == nil {
		t.Error("listed snapshots of a missing disk")
	}
	if _, err := DiskUsage(missing); err == nil {
		t.Error("DiskUsage of a missing file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed calls left %d files behind", len(entries))
	}
}

func ExampleSnapshot() {
	ctx := context.Background()
	disk := "/var/lib/nexus/vm/web-1/disk.qcow2"
	if err := CreateDisk(ctx, disk, 1<<30); err != nil {
		fmt.Println(err)
		return
	}
	// ... the VM runs, writes, and is stopped ...
	if err := Snapshot(ctx, disk, "nightly"); err != nil {
		fmt.Println(err)
		return
	}
	// ... later, undo everything since:
	if err := Rollback(ctx, disk, "nightly"); err != nil {
		fmt.Println(err)
	}
}
