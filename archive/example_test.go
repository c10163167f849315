package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/archive"
)

func Example() {
	src, _ := os.MkdirTemp("", "src")
	dst, _ := os.MkdirTemp("", "dst")
	defer os.RemoveAll(src)
	defer os.RemoveAll(dst)
	os.WriteFile(filepath.Join(src, "note"), []byte("kept"), 0o600)

	var buf bytes.Buffer
	if err := archive.Write(context.Background(), src, &buf); err != nil {
		fmt.Println(err)
		return
	}
	if err := archive.Extract(context.Background(), &buf, dst, archive.Options{Limit: 1 << 20}); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(dst, "note"))
	fmt.Println(string(b))
	// Output: kept
}
