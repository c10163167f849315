package oci

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Busybox is where Debian's busybox-static installs the binary BuildBusybox
// copies.
const Busybox = "/bin/busybox"

// BuildBusybox lays out a minimal root filesystem in dir: the usual top-level
// directories, a copy of the static [Busybox] binary with a symlink for each
// of its applets, and /etc/passwd, group, hosts and a placeholder
// resolv.conf. It is idempotent and replaces what it wrote before, so it
// also upgrades a layer after busybox was updated; files it did not write
// are left alone. The result is meant as the read-only lower layer of an
// IMVU's overlays.
func BuildBusybox(dir string) error {
	if err := buildBusybox(Busybox, dir); err != nil {
		return fmt.Errorf("build busybox rootfs in %s: %w", dir, err)
	}
	return nil
}

func buildBusybox(src, dir string) error {
	if err := checkStatic(src); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dirs := []struct {
		name string
		mode fs.FileMode
	}{
		{"bin", 0o755}, {"sbin", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755},
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"etc", 0o755},
		{"root", 0o700}, {"home", 0o755}, {"mnt", 0o755}, {"run", 0o755},
		{"var/log", 0o755}, {"var/spool", 0o755},
		{"var/tmp", 0o777 | fs.ModeSticky}, {"tmp", 0o777 | fs.ModeSticky},
	}
	for _, d := range dirs {
		p := filepath.Join(dir, d.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		// MkdirAll applies the umask; the mode must be exact.
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	bin, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(dir, "bin/busybox"), bin, 0o755); err != nil {
		return err
	}
	applets, err := listApplets(src)
	if err != nil {
		return err
	}
	for _, a := range applets {
		if err := linkApplet(dir, a); err != nil {
			return err
		}
	}
	etc := []struct{ name, content string }{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		// The workload's resolver is set when it starts (bind mount or
		// upper layer); a file without nameservers keeps lookups from
		// going to the host's.
		{"etc/resolv.conf", "# Written by Nexus when the workload starts.\n"},
	}
	for _, f := range etc {
		if err := writeIfChanged(filepath.Join(dir, f.name), []byte(f.content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkStatic refuses a dynamically linked busybox: the rootfs has no libc.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("busybox binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; install busybox-static", bin)
		}
	}
	return nil
}

// listApplets asks busybox where each applet belongs ("usr/bin/awk"),
// falling back to bin/ for builds without --list-full.
func listApplets(bin string) ([]string, error) {
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		out, err = exec.Command(bin, "--list").Output()
		if err != nil {
			return nil, fmt.Errorf("list busybox applets: %w", err)
		}
		var full bytes.Buffer
		for _, name := range strings.Fields(string(out)) {
			full.WriteString("bin/" + name + "\n")
		}
		out = full.Bytes()
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		a = path.Clean(a)
		if path.IsAbs(a) || a == "." || strings.HasPrefix(a, "../") || strings.Contains(a, "/../") {
			return nil, fmt.Errorf("busybox lists a strange applet path %q", a)
		}
		if a != "bin/busybox" {
			applets = append(applets, a)
		}
	}
	if len(applets) == 0 {
		return nil, errors.New("busybox lists no applets")
	}
	return applets, nil
}

func linkApplet(root, applet string) error {
	const target = "/bin/busybox"
	p := filepath.Join(root, applet)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink == 0:
		return nil // something put a real file there; keep it
	default:
		if cur, err := os.Readlink(p); err == nil && cur == target {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return os.Symlink(target, p)
}

// writeIfChanged replaces name atomically unless it already holds data.
func writeIfChanged(name string, data []byte, mode fs.FileMode) error {
	if cur, err := os.ReadFile(name); err == nil && bytes.Equal(cur, data) {
		return os.Chmod(name, mode)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
