package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/archive"
)

func Example() {
	ctx := context.Background()
	src, _ := os.MkdirTemp("", "src")
	dst, _ := os.MkdirTemp("", "dst")
	defer os.RemoveAll(src)
	defer os.RemoveAll(dst)
	os.WriteFile(filepath.Join(src, "note"), []byte("kept"), 0o600)

	var buf bytes.Buffer
	if err := archive.Write(ctx, src, &buf); err != nil {
		fmt.Println(err)
		return
	}
	if err := archive.Extract(ctx, bytes.NewReader(buf.Bytes()), dst, archive.Options{Limit: 1 << 20}); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(dst, "note"))
	fmt.Println(string(b))

	// A limit below the archive's content refuses it.
	err := archive.Extract(ctx, bytes.NewReader(buf.Bytes()), dst, archive.Options{Limit: 2})
	fmt.Println(errors.Is(err, archive.ErrTooLarge))
	// Output:
	// kept
	// true
}

func ExampleWriteSkip() {
	ctx := context.Background()
	src, _ := os.MkdirTemp("", "src")
	dst, _ := os.MkdirTemp("", "dst")
	defer os.RemoveAll(src)
	defer os.RemoveAll(dst)
	os.MkdirAll(filepath.Join(src, "cache", "big"), 0o700)
	os.WriteFile(filepath.Join(src, "cache", "big", "blob"), []byte("rebuilt later"), 0o600)
	os.WriteFile(filepath.Join(src, "conf"), []byte("new"), 0o600)
	// The target already holds files: the archive's replace theirs, the
	// others stay.
	os.WriteFile(filepath.Join(dst, "conf"), []byte("old"), 0o600)
	os.WriteFile(filepath.Join(dst, "local"), []byte("mine"), 0o600)

	var buf bytes.Buffer
	skip := func(rel string) bool { return rel == "cache" } // and all under it
	if err := archive.WriteSkip(ctx, src, &buf, skip); err != nil {
		fmt.Println(err)
		return
	}
	if err := archive.Extract(ctx, &buf, dst, archive.Options{}); err != nil {
		fmt.Println(err)
		return
	}
	entries, _ := os.ReadDir(dst)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dst, e.Name()))
		fmt.Printf("%s: %s\n", e.Name(), b)
	}
	// Output:
	// conf: new
	// local: mine
}
