package cgroup

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/internal/testenv"
)

// realHost opens this machine's cgroups, which needs root.
func realHost(t *testing.T) *Host {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "cgroup tests need root")
	}
	h, err := Detect()
	if err != nil {
		testenv.Missing(t, "no usable cgroup mount: %v", err)
	}
	return h
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testParent returns a unique top-level cgroup path that is killed and
// removed when the test ends, whatever happened.
func testParent(t *testing.T, h *Host) string {
	t.Helper()
	p := "nexus-cgtest-" + randomSuffix(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Kill(ctx, p); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := h.Remove(p); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

func mustCreate(t *testing.T, h *Host, path string, l Limits) {
	t.Helper()
	if err := h.Create(path, l); err != nil {
		t.Fatal(err)
	}
}

// proc is a shell started outside any test cgroup that runs script only
// after it has been moved into one, so all it does is charged there.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	done   chan struct{}
	waitFn func() error
}

// startIn runs script with /bin/sh inside cgroup path.
func startIn(t *testing.T, h *Host, path, script string) *proc {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read go; "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// An os.Pipe rather than StdoutPipe: Wait must not close it under a
	// reader.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, out: bufio.NewReader(pr), done: make(chan struct{})}
	var waitErr error
	p.waitFn = func() error { <-p.done; return waitErr }
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = p.waitFn()
	})
	if err := h.Join(path, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		waitErr = cmd.Wait()
		close(p.done)
	}()
	return p
}

// wait waits for the shell with a timeout and returns its exit error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.waitFn()
	case <-time.After(timeout):
		t.Fatalf("process %d still running after %v", p.cmd.Process.Pid, timeout)
		return nil
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cgroupDirs lists where path exists on disk, in any hierarchy.
func cgroupDirs(h *Host, path string) []string {
	var found []string
	for _, d := range h.allDirs(path) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			found = append(found, d)
		}
	}
	return found
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
