package ledger_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexus-core/nexus/ledger"

	"github.com/nexus-core/nexus/internal/testenv"
)

// crashChildEnv carries the database path to the child process of
// TestCrashDurability.
const crashChildEnv = "LEDGER_CRASH_CHILD_DB"

// TestCrashChild is the child side of TestCrashDurability: it appends from 16
// goroutines until it is killed, printing "ACK <index> <data>" for every
// acknowledged append.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		return // only a helper process for TestCrashDurability: nothing to do in the parent
	}
	l, err := ledger.Open(context.Background(), path, testOptions(t))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	for g := range 16 {
		go func() {
			for s := 0; ; s++ {
				d := fmt.Sprintf("g%02d-s%06d", g, s)
				e, err := l.Append(context.Background(), []byte(d))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				line := fmt.Sprintf("ACK %d %s\n", e.Index, d)
				mu.Lock()
				os.Stdout.WriteString(line) // unbuffered: an ACK printed is an ACK the parent may see
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Minute) // the parent kills us long before this
	os.Exit(4)
}

func TestCrashDurability(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		return // the child runs only TestCrashChild
	}
	if testing.Short() {
		testenv.Missing(t, "%s", "spawns a child process")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := make(map[uint64]string)
	firstAck := make(chan struct{})
	readDone := make(chan error)
	go func() {
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ACK" {
				continue // a torn last line or test framework output
			}
			i, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				continue
			}
			if prev, dup := acks[i]; dup {
				readDone <- fmt.Errorf("index %d acknowledged twice (%s, %s)", i, prev, f[2])
				return
			}
			acks[i] = f[2]
			if first {
				close(firstAck)
				first = false
			}
		}
		readDone <- sc.Err()
	}()
	select {
	case <-firstAck:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child acknowledged nothing within 30s")
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
		t.Fatal(err)
	}
	// Drain the pipe to EOF (the child is dead, so its end is closed)
	// before Wait, which closes our end.
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acks) < 10 {
		t.Fatalf("only %d acknowledged appends before the kill; the test proves little", len(acks))
	}

	// Offline verification first, against the file exactly as the crash
	// left it (WAL included), then a normal reopen.
	rep, err := ledger.Verify(ctx, path, testVerifier(t), nil)
	if err != nil {
		t.Fatalf("Verify after crash: %v", err)
	}
	l := openPath(t, path)
	if l.Size() != rep.Entries {
		t.Fatalf("reopened Size %d, Verify saw %d entries", l.Size(), rep.Entries)
	}
	for i, want := range acks {
		got, err := l.Read(ctx, i)
		if err != nil {
			t.Fatalf("acknowledged index %d lost: %v", i, err)
		}
		if string(got) != want {
			t.Fatalf("index %d = %q, acknowledged as %q", i, got, want)
		}
	}
	t.Logf("%d appends acknowledged before SIGKILL, %d entries on disk", len(acks), l.Size())
	// The log keeps working after recovery.
	if _, err := l.Append(ctx, []byte("after crash")); err != nil {
		t.Fatal(err)
	}
}
