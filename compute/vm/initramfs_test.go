package vm

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type cpioEntry struct {
	name         string
	mode         uint32
	data         []byte
	major, minor uint32
}

// parseCPIO reads a newc archive independently of cpioWriter.
func parseCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if len(b)-off < 110 || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, size, major, minor, namesize := field(1), field(6), field(9), field(10), field(11)
		off += 110
		name := string(b[off : off+int(namesize)-1])
		if b[off+int(namesize)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += int(namesize)
		align()
		data := b[off : off+int(size)]
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{name, mode, data, major, minor})
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	steps := []error{
		c.Dir("etc", 0o755),
		c.File("etc/a", 0o644, []byte("odd")), // 3 bytes: padding after data
		c.File("etc/bb", 0o600, nil),
		c.Symlink("etc/link", "/etc/a"),
		c.CharDevice("console", 0o600, 5, 1),
		c.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if buf.Len()%4 != 0 {
		t.Fatalf("archive is %d bytes, not a multiple of 4", buf.Len())
	}
	want := []cpioEntry{
		{"etc", cpioDir | 0o755, nil, 0, 0},
		{"etc/a", cpioReg | 0o644, []byte("odd"), 0, 0},
		{"etc/bb", cpioReg | 0o600, nil, 0, 0},
		{"etc/link", cpioSymlink | 0o777, []byte("/etc/a"), 0, 0},
		{"console", cpioChar | 0o600, nil, 5, 1},
	}
	got := parseCPIO(t, buf.Bytes())
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.mode != w.mode || !bytes.Equal(g.data, w.data) || g.major != w.major || g.minor != w.minor {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	if err := newCPIOWriter(io.Discard).File("/abs", 0o644, nil); err == nil {
		t.Error("wrote an absolute name")
	}
	dup := newCPIOWriter(io.Discard)
	if dup.Dir("x", 0o755) != nil || dup.Dir("x", 0o755) == nil {
		t.Error("wrote a name twice")
	}
}

func TestBuildInitramfs(t *testing.T) {
	_, err := os.Stat("/bin/busybox")
	needIf(t, err == nil, "no /bin/busybox (Debian package busybox-static)")
	opts := InitramfsOptions{
		Name:    "web-1",
		Command: "echo it's me",
		Files:   map[string][]byte{"/etc/app/config": []byte("port=80\n"), "/srv/run.sh": []byte("#!/bin/sh\n")},
	}
	var gz bytes.Buffer
	if err := BuildInitramfs(&gz, opts); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := BuildInitramfs(&again, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gz.Bytes(), again.Bytes()) {
		t.Error("two builds with the same options differ")
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries := parseCPIO(t, raw)
	byName := map[string]cpioEntry{}
	for _, e := range entries {
		if dir := parentDir(e.name); dir != "" {
			if _, ok := byName[dir]; !ok {
				t.Errorf("%s comes before its directory %s", e.name, dir)
			}
		}
		byName[e.name] = e
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		mode uint32
		data []byte // nil: not checked
	}{
		{"bin/busybox", cpioReg | 0o755, busybox},
		{"bin/sh", cpioSymlink | 0o777, []byte("/bin/busybox")},
		{"sbin/poweroff", cpioSymlink | 0o777, []byte("/bin/busybox")},
		{"dev/console", cpioChar | 0o600, nil},
		{"proc", cpioDir | 0o755, nil},
		{"etc/app/config", cpioReg | 0o755, []byte("port=80\n")},
		{"srv/run.sh", cpioReg | 0o755, []byte("#!/bin/sh\n")},
		{"etc/nexus/command", cpioReg | 0o755, []byte("echo it's me")},
		{"init", cpioReg | 0o755, nil},
		{"etc/acpi/PWRF/00000080", cpioReg | 0o755, []byte(powerButtonScript)},
	}
	for _, c := range checks {
		e, ok := byName[c.name]
		if !ok {
			t.Errorf("no %s in the archive", c.name)
			continue
		}
		if e.mode != c.mode || (c.data != nil && !bytes.Equal(e.data, c.data)) {
			t.Errorf("%s: mode %o, %d bytes; want mode %o and %d bytes", c.name, e.mode, len(e.data), c.mode, len(c.data))
		}
	}
	if e := byName["dev/console"]; e.major != 5 || e.minor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", e.major, e.minor)
	}
	init := string(byName["init"].data)
	for _, want := range []string{"mount -t devtmpfs", "echo 'NEXUS-VM-UP web-1'", "/bin/sh /etc/nexus/command", `echo "NEXUS-VM-EXIT $?"`, "poweroff -f"} {
		if !strings.Contains(init, want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}
	t.Logf("initramfs: %d entries, %d KiB compressed", len(entries), again.Len()>>10)
}

// TestCPIOTool lists what BuildInitramfs writes with GNU cpio.
func TestCPIOTool(t *testing.T) {
	cpio := needBinary(t, "cpio", "cpio")
	_, err := os.Stat("/bin/busybox")
	needIf(t, err == nil, "no /bin/busybox (Debian package busybox-static)")
	var gz bytes.Buffer
	err = BuildInitramfs(&gz, InitramfsOptions{Name: "t", Files: map[string][]byte{"/odd/size": []byte("12345")}})
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range parseCPIO(t, raw) {
		want = append(want, e.name)
	}
	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, want) {
		t.Errorf("cpio -t lists %d names, the archive has %d: %q", len(got), len(want), got)
	}
	// And extracts it: the symlinks and the file with odd padding intact.
	dir := t.TempDir()
	cmd = exec.Command(cpio, "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "dev/console") {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	if b, err := os.ReadFile(dir + "/odd/size"); err != nil || string(b) != "12345" {
		t.Errorf("extracted /odd/size = %q, %v", b, err)
	}
	if target, err := os.Readlink(dir + "/bin/sh"); err != nil || target != "/bin/busybox" {
		t.Errorf("extracted /bin/sh -> %q, %v", target, err)
	}
}

func parentDir(name string) string {
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		return name[:i]
	}
	return ""
}

func TestInitramfsIdle(t *testing.T) {
	init := string(initScript(InitramfsOptions{Marker: "READY"}, []string{"/lib/modules/virtio.ko"}))
	for _, want := range []string{"insmod /lib/modules/virtio.ko", "echo 'READY'", "while :; do sleep 3600; done"} {
		if !strings.Contains(init, want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}
	if strings.Contains(init, "poweroff") {
		t.Errorf("an idle guest powers off:\n%s", init)
	}
}

func TestInitramfsOptionsRejected(t *testing.T) {
	tests := []struct {
		name string
		opts InitramfsOptions
	}{
		{"relative file", InitramfsOptions{Files: map[string][]byte{"etc/x": nil}}},
		{"unclean file", InitramfsOptions{Files: map[string][]byte{"/etc/../x": nil}}},
		{"replaces init", InitramfsOptions{Files: map[string][]byte{"/init": nil}}},
		{"under etc/nexus", InitramfsOptions{Files: map[string][]byte{"/etc/nexus/command": nil}}},
		{"two-line marker", InitramfsOptions{Marker: "a\nb"}},
		{"name with space", InitramfsOptions{Name: "a b"}},
		{"module not .ko", InitramfsOptions{Modules: []string{"/lib/modules/x.ko.xz"}}},
		{"module twice", InitramfsOptions{Modules: []string{"/a/virtio.ko", "/b/virtio.ko"}}},
		{"dynamic busybox", InitramfsOptions{Busybox: "/bin/true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := BuildInitramfs(io.Discard, tt.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
		})
	}
}

func ExampleBuildInitramfs() {
	f, err := os.Create("/var/lib/nexus/vm/web-1/initrd.gz")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	err = BuildInitramfs(f, InitramfsOptions{
		Name:    "web-1",
		Command: "echo hello from the guest",
	})
	if err != nil {
		fmt.Println(err)
	}
}
