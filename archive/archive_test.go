package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexus-core/nexus/archive"

	"github.com/nexus-core/nexus/internal/testenv"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	testenv.Missing(t, "needs root")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// node is what a round trip must keep of one entry.
type node struct {
	mode, uid, gid uint32
	body           string // sha256 of a regular file
	nlink          uint64 // of a regular file
	link           string // a symlink's target
	rdev           uint64
	mtime          int64
	xattrs         string
}

// describe summarises every entry under dir.
func describe(t testing.TB, dir string) map[string]node {
	t.Helper()
	out := make(map[string]node)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{mode: st.Mode, uid: st.Uid, gid: st.Gid, rdev: st.Rdev, mtime: st.Mtim.Nano()}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.body = fmt.Sprintf("%d:%x", len(b), sha256.Sum256(b))
			n.nlink = st.Nlink
		case unix.S_IFLNK:
			n.link, _ = os.Readlink(p)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			for _, x := range []string{"trusted.overlay.opaque", "user.note", "security.capability"} {
				buf := make([]byte, 256)
				if k, err := unix.Lgetxattr(p, x, buf); err == nil {
					n.xattrs += fmt.Sprintf(" %s=%q", x, buf[:k])
				}
			}
		}
		out[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// upperTree makes what an overlay upper directory can hold.
func upperTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	j := func(p string) string { return filepath.Join(dir, p) }
	must(t, os.MkdirAll(j("etc/app"), 0o750))
	must(t, os.WriteFile(j("etc/app/conf"), []byte("key=value\n"), 0o640))
	must(t, os.Chown(j("etc/app/conf"), 1000, 1001))
	must(t, os.Chown(j("etc/app"), 1000, 1001))
	must(t, os.WriteFile(j("suid"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Chmod(j("suid"), 0o755|fs.ModeSetuid|fs.ModeSetgid))
	must(t, os.WriteFile(j("empty"), nil, 0o600))
	must(t, os.WriteFile(j("big"), bytes.Repeat([]byte("0123456789"), 7000), 0o644))
	must(t, os.Link(j("etc/app/conf"), j("hardlink")))
	must(t, os.Symlink("/bin/busybox", j("abs-link")))
	must(t, os.Symlink("../../nowhere", j("etc/dangling")))
	must(t, os.Lchown(j("abs-link"), 5, 6))
	must(t, unix.Mkfifo(j("fifo"), 0o620))
	// Whiteout: a deleted lower file. Opaque: a directory recreated over a
	// lower one.
	must(t, unix.Mknod(j("etc/hosts"), unix.S_IFCHR, 0))
	must(t, os.Mkdir(j("var"), 0o755))
	must(t, unix.Setxattr(j("var"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, unix.Setxattr(j("etc/app/conf"), "user.note", []byte("kept"), 0))
	must(t, unix.Setxattr(j("empty"), "security.capability", []byte{1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
	must(t, os.Mkdir(j("sticky"), 0o777))
	must(t, os.Chmod(j("sticky"), 0o777|fs.ModeSticky))
	old := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	must(t, os.Chtimes(j("etc/app/conf"), old, old))
	// Directories last: filling them changed their mtimes.
	for _, d := range []string{"etc/app", "etc", "var", "sticky"} {
		must(t, os.Chtimes(j(d), old, old))
	}
	return dir
}

func TestRoundTrip(t *testing.T) {
	requireRoot(t) // owners, whiteouts, trusted.* xattrs
	src := upperTree(t)
	var buf bytes.Buffer
	must(t, archive.Write(context.Background(), src, &buf))
	t.Logf("archive of %d entries: %d bytes", len(describe(t, src)), buf.Len())

	for _, tt := range []struct {
		name string
		opts archive.Options
		// want turns the source's summary into what the target must hold.
		want func(rel string, n node) node
	}{
		{"owners", archive.Options{Owners: true}, func(rel string, n node) node {
			// security.* is never packed.
			n.xattrs = strings.Replace(n.xattrs, ` security.capability="\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"`, "", 1)
			return n
		}},
		{"as the caller", archive.Options{}, func(rel string, n node) node {
			n.uid, n.gid = uint32(os.Geteuid()), uint32(os.Getegid())
			n.mode &^= unix.S_ISUID | unix.S_ISGID
			n.xattrs = strings.Replace(n.xattrs, ` trusted.overlay.opaque="y"`, "", 1)
			n.xattrs = strings.Replace(n.xattrs, ` security.capability="\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"`, "", 1)
			return n
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "restored")
			must(t, archive.Extract(context.Background(), bytes.NewReader(buf.Bytes()), dst, tt.opts))
			want, got := describe(t, src), describe(t, dst)
			names := make([]string, 0, len(want))
			for k := range want {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, k := range names {
				if w := tt.want(k, want[k]); got[k] != w {
					t.Errorf("%s:\n got %+v\nwant %+v", k, got[k], w)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("extra entry %s", k)
				}
			}
			var a, b unix.Stat_t
			if unix.Stat(filepath.Join(dst, "hardlink"), &a) != nil || unix.Stat(filepath.Join(dst, "etc/app/conf"), &b) != nil || a.Ino != b.Ino {
				t.Error("hard link not restored as one inode")
			}
		})
	}
}

func TestCancelled(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o600))
	var buf bytes.Buffer
	must(t, archive.Write(context.Background(), src, &buf))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := archive.Write(ctx, src, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context: %v", err)
	}
	if err := archive.Extract(ctx, &buf, t.TempDir(), archive.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Extract with a cancelled context: %v", err)
	}
}

// names lists an archive's entries in order.
func names(t testing.TB, data []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s%c", hdr.Name, hdr.Typeflag))
	}
}

func TestWriteSkip(t *testing.T) {
	src := t.TempDir()
	j := func(p string) string { return filepath.Join(src, filepath.FromSlash(p)) }
	must(t, os.MkdirAll(j("work/deep"), 0o755))
	must(t, os.WriteFile(j("work/deep/f"), []byte("x"), 0o600))
	must(t, os.MkdirAll(j("bundle/rootfs/bin"), 0o755))
	must(t, os.WriteFile(j("bundle/config.json"), []byte("{}"), 0o600))
	must(t, os.WriteFile(j(".done"), nil, 0o600))
	// A hard link whose first name is skipped is packed as a file.
	must(t, os.WriteFile(j("a-first"), []byte("linked"), 0o600))
	must(t, os.Link(j("a-first"), j("b-second")))
	must(t, os.Link(j("a-first"), j("c-third")))
	// Sockets are never packed.
	sock := listenUnix(t, j("sock"))
	defer unix.Close(sock)

	var seen []string
	skip := func(rel string) bool {
		seen = append(seen, rel)
		switch rel {
		case "work", "bundle/rootfs", ".done", "a-first":
			return true
		}
		return false
	}
	var buf bytes.Buffer
	must(t, archive.WriteSkip(context.Background(), src, &buf, skip))
	got := names(t, buf.Bytes())
	want := []string{"b-second0", "bundle/5", "bundle/config.json0", "c-third1"}
	if !slices.Equal(got, want) {
		t.Errorf("packed %q, want %q", got, want)
	}
	for _, rel := range seen {
		if strings.HasPrefix(rel, "work/") || strings.HasPrefix(rel, "bundle/rootfs/") {
			t.Errorf("skip was asked about %s inside a skipped folder", rel)
		}
	}
	if !slices.Contains(seen, "bundle/config.json") {
		t.Errorf("skip saw %q, want slash-separated paths relative to the folder", seen)
	}

	dst := t.TempDir()
	must(t, archive.Extract(context.Background(), &buf, dst, archive.Options{}))
	if b, err := os.ReadFile(filepath.Join(dst, "c-third")); err != nil || string(b) != "linked" {
		t.Errorf("c-third = %q, %v", b, err)
	}
}

// listenUnix binds a unix socket at p.
func listenUnix(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: p}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd
}

type entry struct {
	hdr  tar.Header
	body string
}

// tarball builds a gzip'd tar of entries.
func tarball(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 && h.Typeflag != tar.TypeXGlobalHeader {
			h.Mode = 0o644
		}
		must(t, tw.WriteHeader(&h))
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return buf.Bytes()
}

func file(name, body string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
}

type hostile struct {
	name string
	data []byte
	want string // in the error
}

func hostileArchives(t testing.TB) []hostile {
	return []hostile{
		{"dotdot", tarball(t, file("../escaped", "x")), `"../escaped"`},
		{"inner dotdot", tarball(t, file("a/../../escaped", "x")), `".." element`},
		{"harmless dotdot", tarball(t, file("a/../b", "x")), `".." element`},
		{"absolute", tarball(t, file("/escaped", "x")), "absolute path"},
		{"through symlink", tarball(t, symlink("l", "../outside"), file("l/escaped", "x")), `"l/escaped": l: a parent is a symlink`},
		{"through abs symlink", tarball(t, symlink("l", "/nonexistent/nexus-archive-test"), file("l/escaped", "x")), "a parent is a symlink"}, // never a real host folder, even if Extract broke
		{"through symlink, deeper", tarball(t, symlink("l", "../outside"), file("l/new/escaped", "x")), "a parent is a symlink"},
		{"hardlink out", tarball(t, hardlink("h", "../outside/keep")), `".." element`},
		{"hardlink abs", tarball(t, hardlink("h", "/nonexistent/nexus-test")), "absolute path"},
		{"hardlink via symlink", tarball(t, symlink("l", "../outside"), hardlink("h", "l/keep")), "a parent is a symlink"},
		{"hardlink to the root", tarball(t, hardlink("h", "./")), "the target folder"},
		{"block device", tarball(t, entry{hdr: tar.Header{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8}}), "not allowed"},
		{"char device", tarball(t, entry{hdr: tar.Header{Name: "mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1}}), "device 1:1 refused"},
		{"security xattr", tarball(t, entry{hdr: tar.Header{Name: "cap", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}}}), "security.capability not allowed"},
		{"trusted xattr", tarball(t, entry{hdr: tar.Header{Name: "d/", Typeflag: tar.TypeDir, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.redirect": "/etc"}}}), "trusted.overlay.redirect not allowed"},
		{"file over dir", tarball(t, dir("d/"), file("d/f", "x"), file("d", "x")), "would replace a directory"},
		{"negative owner", tarball(t, entry{hdr: tar.Header{Name: "f", Typeflag: tar.TypeReg, Uid: -1}}), "out of range"},
		{"not gzip", []byte("plain text"), "not a gzip stream"},
		{"not tar", gz(t, bytes.Repeat([]byte("junk"), 200)), "extract into"},
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	must(t, zw.Close())
	return buf.Bytes()
}

// outside is a folder next to the target whose state an Extract must never
// change.
type outside struct {
	base string
	keep unix.Stat_t
	dir  unix.Stat_t
}

// sentinel makes base/outside holding one file; the target is base/root.
func sentinel(t testing.TB, base string) *outside {
	t.Helper()
	o := &outside{base: base}
	must(t, os.Mkdir(filepath.Join(base, "outside"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "outside", "keep"), []byte("keep"), 0o644))
	must(t, unix.Lstat(filepath.Join(base, "outside", "keep"), &o.keep))
	must(t, unix.Lstat(filepath.Join(base, "outside"), &o.dir))
	return o
}

func (o *outside) check(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(o.base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "root" && e.Name() != "outside" {
			t.Errorf("extract created %s outside its folder", e.Name())
		}
	}
	var keep, dir unix.Stat_t
	err = unix.Lstat(filepath.Join(o.base, "outside", "keep"), &keep)
	keep.Atim = o.keep.Atim // reading it is not a change
	if err != nil || keep != o.keep {
		t.Errorf("outside/keep changed: %+v, %v", keep, err)
	}
	err = unix.Lstat(filepath.Join(o.base, "outside"), &dir)
	dir.Atim = o.dir.Atim
	if err != nil || dir != o.dir {
		t.Errorf("outside changed: %+v, %v", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(o.base, "outside", "keep")); err != nil || string(b) != "keep" {
		t.Errorf("outside/keep = %q, %v", b, err)
	}
}

func TestExtractRefuses(t *testing.T) {
	for _, tt := range hostileArchives(t) {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			o := sentinel(t, base)
			err := archive.Extract(context.Background(), bytes.NewReader(tt.data), filepath.Join(base, "root"), archive.Options{Owners: os.Geteuid() == 0})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %s", err, tt.want)
			}
			o.check(t)
		})
	}
}

func TestExtractAccepts(t *testing.T) {
	requireRoot(t) // whiteouts
	base := t.TempDir()
	o := sentinel(t, base)
	// The link points at the sentinel outside the target, never at a file
	// of the host: were Extract to write through it, only the test's own
	// file would change, and o.check would say so.
	data := tarball(t,
		entry{hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o700}},
		file("./deep/er/file", "implied parents"),
		file("twice", "one"),
		file("twice", "two"),
		symlink("link", filepath.Join(base, "outside", "keep")),
		file("link", "replaces the link, not its target"),
		symlink("l", "../outside"),
		dir("l/"), // replaces the link
		file("l/inside", "in a real folder"),
		file("f", "a file"),
		dir("f/"),
		entry{hdr: tar.Header{Name: "wh", Typeflag: tar.TypeChar}},
		entry{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o640}},
		hardlink("h", "link"),
		entry{hdr: tar.Header{Name: "g", Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}}},
	)
	root := filepath.Join(base, "root")
	must(t, archive.Extract(context.Background(), bytes.NewReader(data), root, archive.Options{}))
	o.check(t)
	for name, want := range map[string]string{
		"deep/er/file": "implied parents",
		"twice":        "two",
		"link":         "replaces the link, not its target",
		"h":            "replaces the link, not its target",
		"l/inside":     "in a real folder",
	} {
		if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v", name, b, err)
		}
	}
	for name, want := range map[string]fs.FileMode{"l": fs.ModeDir, "f": fs.ModeDir, "wh": fs.ModeDevice | fs.ModeCharDevice, "fifo": fs.ModeNamedPipe} {
		if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || fi.Mode().Type() != want {
			t.Errorf("%s: %v, %v; want type %v", name, fi.Mode(), err, want)
		}
	}
}

func TestExtractIntoExisting(t *testing.T) {
	for _, tt := range []struct {
		name    string
		setup   func(t *testing.T, root string)
		entries []entry
		want    string // in the error; "" for success
		check   func(t *testing.T, root string)
	}{
		{
			name: "file replaces a file, not its other hard link",
			setup: func(t *testing.T, root string) {
				must(t, os.WriteFile(filepath.Join(root, "f"), []byte("old"), 0o644))
				must(t, os.Link(filepath.Join(root, "f"), filepath.Join(root, "g")))
			},
			entries: []entry{file("f", "new")},
			check: func(t *testing.T, root string) {
				readIs(t, root, "f", "new")
				readIs(t, root, "g", "old")
			},
		},
		{
			name: "file replaces a symlink leading outside",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("../outside/keep", filepath.Join(root, "f")))
			},
			entries: []entry{file("f", "new")},
			check: func(t *testing.T, root string) {
				readIs(t, root, "f", "new")
				if fi, err := os.Lstat(filepath.Join(root, "f")); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("f: %v, %v", fi.Mode(), err)
				}
			},
		},
		{
			name: "symlink replaces a file",
			setup: func(t *testing.T, root string) {
				must(t, os.WriteFile(filepath.Join(root, "f"), []byte("old"), 0o644))
			},
			entries: []entry{symlink("f", "../outside/keep")},
			check: func(t *testing.T, root string) {
				if l, err := os.Readlink(filepath.Join(root, "f")); err != nil || l != "../outside/keep" {
					t.Errorf("f -> %q, %v", l, err)
				}
			},
		},
		{
			name: "folders merge, files not named are kept",
			setup: func(t *testing.T, root string) {
				must(t, os.MkdirAll(filepath.Join(root, "d/sub"), 0o700))
				must(t, os.WriteFile(filepath.Join(root, "d/sub/old"), []byte("old"), 0o600))
				must(t, os.WriteFile(filepath.Join(root, "top"), []byte("top"), 0o600))
			},
			entries: []entry{dir("d/"), dir("d/sub/"), file("d/sub/new", "new"), file("d/other", "other")},
			check: func(t *testing.T, root string) {
				readIs(t, root, "d/sub/old", "old")
				readIs(t, root, "d/sub/new", "new")
				readIs(t, root, "d/other", "other")
				readIs(t, root, "top", "top")
				if fi, err := os.Stat(filepath.Join(root, "d/sub")); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("d/sub: %v, %v; want the archive's mode", fi.Mode(), err)
				}
			},
		},
		{
			name: "folder replaces a symlink leading outside",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("../outside", filepath.Join(root, "d")))
			},
			entries: []entry{dir("d/"), file("d/keep", "inside")},
			check: func(t *testing.T, root string) {
				readIs(t, root, "d/keep", "inside")
			},
		},
		{
			name: "nothing is written under an existing symlink",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("../outside", filepath.Join(root, "l")))
			},
			entries: []entry{file("l/keep", "overwritten")},
			want:    "a parent is a symlink",
		},
		{
			name: "nothing is made under an existing symlink",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("../outside", filepath.Join(root, "l")))
			},
			entries: []entry{dir("l/new/")},
			want:    "a parent is a symlink",
		},
		{
			name: "a file does not replace a folder",
			setup: func(t *testing.T, root string) {
				must(t, os.MkdirAll(filepath.Join(root, "d"), 0o700))
			},
			entries: []entry{file("d", "x")},
			want:    `"d": a non-directory would replace a directory`,
		},
		{
			name: "hard link to an existing file, then replaced",
			setup: func(t *testing.T, root string) {
				must(t, os.WriteFile(filepath.Join(root, "mine"), []byte("mine"), 0o600))
			},
			entries: []entry{hardlink("h", "mine"), file("h", "new")},
			check: func(t *testing.T, root string) {
				readIs(t, root, "mine", "mine")
				readIs(t, root, "h", "new")
			},
		},
		{
			name: "hard link through an existing symlink",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("../outside", filepath.Join(root, "l")))
			},
			entries: []entry{hardlink("h", "l/keep")},
			want:    "a parent is a symlink",
		},
		{
			name: "hard link to an existing symlink links the symlink",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("../outside/keep", filepath.Join(root, "l")))
			},
			entries: []entry{hardlink("h", "l")},
			check: func(t *testing.T, root string) {
				if l, err := os.Readlink(filepath.Join(root, "h")); err != nil || l != "../outside/keep" {
					t.Errorf("h -> %q, %v", l, err)
				}
			},
		},
		{
			name: "no crossing into a mount point",
			setup: func(t *testing.T, root string) {
				requireRoot(t)
				m := filepath.Join(root, "m")
				must(t, os.Mkdir(m, 0o700))
				must(t, unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"))
				t.Cleanup(func() { unix.Unmount(m, unix.MNT_DETACH) })
			},
			entries: []entry{file("m/f", "x")},
			want:    "mount point",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			o := sentinel(t, base)
			root := filepath.Join(base, "root")
			must(t, os.Mkdir(root, 0o755))
			tt.setup(t, root)
			err := archive.Extract(context.Background(), bytes.NewReader(tarball(t, tt.entries...)), root, archive.Options{})
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one containing %s", err, tt.want)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
			o.check(t)
		})
	}
}

func readIs(t *testing.T, root, name, want string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != want {
		t.Errorf("%s = %q, %v; want %q", name, b, err, want)
	}
}

func TestExtractLimit(t *testing.T) {
	data := tarball(t, file("a", strings.Repeat("a", 10)), hardlink("a2", "a"), dir("d/"), symlink("l", "a"), file("d/b", strings.Repeat("b", 20)))
	for _, tt := range []struct {
		limit   int64
		refused string // the entry refused, "" for none
	}{
		{0, ""},
		{30, ""}, // links and folders are not counted
		{29, "d/b"},
		{10, "d/b"},
		{9, "a"},
		{1, "a"},
	} {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			root := t.TempDir()
			err := archive.Extract(context.Background(), bytes.NewReader(data), root, archive.Options{Limit: tt.limit})
			if tt.refused == "" {
				must(t, err)
				return
			}
			if !errors.Is(err, archive.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.refused)) {
				t.Fatalf("err = %v, want ErrTooLarge naming %s", err, tt.refused)
			}
			if _, err := os.Lstat(filepath.Join(root, tt.refused)); err == nil {
				t.Errorf("%s was written", tt.refused)
			}
		})
	}
}

func TestExtractCreatesTarget(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	must(t, archive.Extract(context.Background(), bytes.NewReader(tarball(t, file("f", "x"))), root, archive.Options{}))
	if fi, err := os.Stat(root); err != nil || fi.Mode() != fs.ModeDir|0o700 {
		t.Errorf("target: %v, %v", fi.Mode(), err)
	}
	readIs(t, root, "f", "x")
}

func FuzzExtract(f *testing.F) {
	root := os.Geteuid() == 0
	for _, h := range hostileArchives(f) {
		f.Add(h.data, root)
		f.Add(h.data, false)
	}
	f.Add(tarball(f,
		dir("d/"),
		file("d/f", "content"),
		symlink("d/l", "f"),
		hardlink("d/h", "d/f"),
		entry{hdr: tar.Header{Name: "wh", Typeflag: tar.TypeChar}},
		entry{hdr: tar.Header{Name: "p", Typeflag: tar.TypeFifo}},
		entry{hdr: tar.Header{Name: "s", Typeflag: tar.TypeReg, Mode: 0o6755, Uid: 7, Gid: 8}},
		dir("esc/"),
		file("esc/keep", "x"),
		file("existing", "replaced"),
		file("dir/keep", "replaces the planted symlink"),
		hardlink("h2", "existing"),
		entry{hdr: tar.Header{Name: "o/", Typeflag: tar.TypeDir, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.x": "1"}}},
	), root)
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte, owners bool) {
		base := t.TempDir()
		o := sentinel(t, base)
		dst := filepath.Join(base, "root")
		// A non-empty target, with a way out planted in it.
		must(t, os.MkdirAll(filepath.Join(dst, "dir"), 0o755))
		must(t, os.WriteFile(filepath.Join(dst, "existing"), []byte("existing"), 0o644))
		must(t, os.Symlink("../outside", filepath.Join(dst, "esc")))
		must(t, os.Symlink("../outside/keep", filepath.Join(dst, "dir", "keep")))

		_ = archive.Extract(context.Background(), bytes.NewReader(data), dst, archive.Options{Limit: limit, Owners: owners})
		o.check(t)
		var total int64
		seen := make(map[uint64]bool)
		_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil {
				return nil
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFBLK:
				t.Errorf("device %s made", p)
			case unix.S_IFCHR:
				if st.Rdev != 0 {
					t.Errorf("device %s made", p)
				}
			case unix.S_IFREG:
				if !seen[st.Ino] {
					seen[st.Ino] = true
					total += st.Size
				}
			}
			if !owners {
				if st.Uid != uint32(os.Geteuid()) || st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%s: owner %d, mode %o without Options.Owners", p, st.Uid, st.Mode)
				}
				if _, err := unix.Lgetxattr(p, "trusted.overlay.opaque", nil); err == nil {
					t.Errorf("%s: opaque marker set without Options.Owners", p)
				}
			}
			return nil
		})
		if total > limit+int64(len("existing")) {
			t.Errorf("%d bytes of files under the target, limit %d", total, limit)
		}
	})
}
