package oci

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestBuildBusybox(t *testing.T) {
	requireRoot(t) // chroot
	if err := checkStatic(Busybox); err != nil {
		testenv.Missing(t, "busybox-static not installed: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := BuildBusybox(dir); err != nil {
		t.Fatal(err)
	}
	// A file someone else put where an applet would go survives a rebuild;
	// a stale applet link is fixed.
	if err := os.Remove(filepath.Join(dir, "bin/cat")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/cat"), []byte("mine"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "bin/ls")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/elsewhere", filepath.Join(dir, "bin/ls")); err != nil {
		t.Fatal(err)
	}
	if err := BuildBusybox(dir); err != nil {
		t.Fatalf("second build: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bin/cat")); string(b) != "mine" {
		t.Errorf("rebuild replaced a file it did not write")
	}
	for _, link := range []string{"bin/sh", "bin/ls", "usr/bin/awk", "sbin/ifconfig"} {
		if target, err := os.Readlink(filepath.Join(dir, link)); err != nil || target != "/bin/busybox" {
			t.Errorf("%s -> %q, %v; want /bin/busybox", link, target, err)
		}
	}
	for name, want := range map[string]fs.FileMode{"tmp": fs.ModeDir | fs.ModeSticky | 0o777, "root": fs.ModeDir | 0o700, "bin/busybox": 0o755} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	out, err := exec.Command("chroot", dir, "/bin/sh", "-c", "id -un; echo ok").CombinedOutput()
	if err != nil || string(out) != "root\nok\n" {
		t.Errorf("shell in the rootfs: %q, %v", out, err)
	}
}

func TestBuildBusyboxRefusesDynamic(t *testing.T) {
	err := buildBusybox("/bin/ls", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("dynamic busybox: %v", err)
	}
}
