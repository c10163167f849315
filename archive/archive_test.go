package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-core/nexus/archive"
)

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "cur", "deep"), 0o750))
	must(os.WriteFile(filepath.Join(src, "cur", "1:2,S"), []byte("Subject: a\r\n\r\nhi\r\n"), 0o600))
	must(os.WriteFile(filepath.Join(src, "cur", "deep", "x"), bytes.Repeat([]byte("x"), 70000), 0o640))
	must(os.Symlink("cur/deep/x", filepath.Join(src, "link")))
	var buf bytes.Buffer
	must(archive.Write(context.Background(), src, &buf))

	dst := filepath.Join(t.TempDir(), "new")
	must(archive.Extract(context.Background(), bytes.NewReader(buf.Bytes()), dst, archive.Options{}))
	for _, f := range []string{"cur/1:2,S", "cur/deep/x"} {
		a, _ := os.ReadFile(filepath.Join(src, f))
		b, err := os.ReadFile(filepath.Join(dst, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after the round trip: %v", f, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "cur", "deep", "x")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode not kept: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "cur/deep/x" {
		t.Fatalf("symlink: %q %v", l, err)
	}
	if err := archive.Extract(context.Background(), bytes.NewReader(buf.Bytes()), t.TempDir(), archive.Options{Limit: 1000}); !errors.Is(err, archive.ErrTooLarge) {
		t.Fatalf("limit 1000: %v, want ErrTooLarge", err)
	}
}

// tarball builds a gzip'd tar from headers (with Body for regular files).
func tarball(t testing.TB, entries ...tar.Header) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = h.Uname
			h.Uname = ""
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestExtractRefusesEscapes(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []tar.Header
		want    string
	}{
		{"dot-dot", []tar.Header{{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o600, Uname: "x"}}, "leaves the target"},
		{"absolute", []tar.Header{{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o600, Uname: "x"}}, "relative path"},
		{"through a symlink", []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/tmp"},
			{Name: "l/evil", Typeflag: tar.TypeReg, Mode: 0o600, Uname: "x"}}, "extract l/evil"},
		{"block device", []tar.Header{{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8}}, "refused"},
		{"char device", []tar.Header{{Name: "mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1}}, "refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			outside := t.TempDir()
			dst := filepath.Join(outside, "in")
			err := archive.Extract(context.Background(), bytes.NewReader(tarball(t, c.entries...)), dst, archive.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
				t.Fatal("an entry landed outside the target folder")
			}
			if _, err := os.Stat("/tmp/evil"); err == nil {
				t.Fatal("an entry was written through a symlink into /tmp")
			}
		})
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(tarball(f, tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o600, Uname: "hello"}))
	f.Add(tarball(f, tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: ".."}, tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Uname: "x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		outside := t.TempDir()
		dst := filepath.Join(outside, "in")
		archive.Extract(context.Background(), bytes.NewReader(data), dst, archive.Options{Limit: 1 << 20})
		entries, _ := os.ReadDir(outside)
		if len(entries) > 1 {
			t.Fatalf("extract wrote outside its folder: %v", entries)
		}
	})
}
