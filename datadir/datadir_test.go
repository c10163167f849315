package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIMVUPathsStayInside(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../platform", "a/b", "", "IMVU", "-x", strings.Repeat("a", 64), "imvu042/.."} {
		if _, err := d.IMVU(id); err == nil {
			t.Errorf("IMVU(%q) accepted", id)
		}
		if err := d.WriteIMVU(id, []byte("x")); err == nil {
			t.Errorf("WriteIMVU(%q) accepted", id)
		}
	}
	p, err := d.IMVU("imvu042")
	if err != nil || p != filepath.Join(d.Root(), "imvu", "imvu042") {
		t.Fatalf("IMVU(imvu042) = %q, %v", p, err)
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one", "two"} {
		if err := d.WriteIMVU("imvu042", []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := d.ReadIMVU("imvu042")
		if err != nil || string(got) != body {
			t.Fatalf("read %q, %v; want %q", got, err, body)
		}
	}
	dir, _ := d.IMVU("imvu042")
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d files in %s, want only state.json (no temp files left)", len(ents), dir)
	}
	fi, _ := os.Stat(filepath.Join(dir, "state.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state.json mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenNeedsADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Open(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Open(file) = %v", err)
	}
	if _, err := Open(filepath.Join(f, "missing")); err == nil {
		t.Fatal("Open(missing) succeeded")
	}
}
