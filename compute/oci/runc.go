package oci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// ErrNotExist is returned for a container runc does not know.
	ErrNotExist = errors.New("container does not exist")
	// ErrNoCRIU is returned by [Runc.Checkpoint] on hosts without criu.
	ErrNoCRIU = errors.New("checkpoint needs criu, which is not installed")
)

// Files Run keeps. runc's log goes to the bundle, where it outlives the
// container for post-mortems; the rest goes into runc's own state directory
// for the container (Root/<id>), which runc ignores apart from its own
// files and removes on delete, so Delete needs a single runc call.
const (
	runcLogFile = "runc.log"          // in the bundle: runc's own log, JSON lines
	initPidFile = "nexus-init.pid"    // the container's init, host pid
	shimPidFile = "nexus-shim.pid"    // the shell waiting for runc
	exitFile    = "nexus-exit-status" // runc's exit status, written by the shim
)

// shimName is the shim's argv[0], so a restarted daemon can tell its shim
// from an unrelated process that reused the pid.
const shimName = "nexus-runc-shim"

// shimScript runs runc in the foreground and records its exit status, which
// is the container's (128+n when a signal killed it), where a daemon
// started later can read it (unless a forced Delete removed the directory
// first, which is why errors are discarded).
const shimScript = `"$1" --root "$2" --log "$3" --log-format json run --keep --bundle "$4" --pid-file "$5" "$6"
s=$?
{ echo "$s" > "$7"; } 2>/dev/null
exit "$s"`

// Runc drives the runc binary. The zero value uses "runc" from PATH and
// runc's default state directory; containers are identified by ID within
// Root.
type Runc struct {
	Binary string // path of runc; default "runc" looked up in PATH
	Root   string // runc --root: its state directory, e.g. DATA/run/runc; default /run/runc
}

func (r *Runc) binary() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

func (r *Runc) root() string {
	if r.Root == "" {
		return "/run/runc"
	}
	return r.Root
}

// stateDir is runc's state directory for container id.
func (r *Runc) stateDir(id string) string { return filepath.Join(r.root(), id) }

// Status is a container's lifecycle state as runc reports it.
type Status string

// The statuses runc reports.
const (
	StatusCreating Status = "creating"
	StatusCreated  Status = "created"
	StatusRunning  Status = "running"
	StatusPaused   Status = "paused"
	StatusStopped  Status = "stopped"
)

// State describes one container.
type State struct {
	ID      string
	Status  Status
	Pid     int // init's pid on the host; 0 once stopped
	Bundle  string
	Created time.Time
	// ExitCode is the exit status of a stopped container started by Run,
	// 128+n if signal n killed it; -1 while running or if not recorded.
	ExitCode int
}

// A Process is a container started by [Runc.Run] or found by
// [Runc.Process].
type Process struct {
	id   string
	pid  int
	done chan struct{}
	code int
	err  error
}

// ID returns the container ID.
func (p *Process) ID() string { return p.id }

// Pid returns the host pid of the container's init process.
func (p *Process) Pid() int { return p.pid }

// Wait waits for the container to exit and returns its exit status, 128+n
// if signal n killed it. It may be called from several goroutines.
func (p *Process) Wait() (int, error) {
	<-p.done
	return p.code, p.err
}

// Run starts the container id from the OCI bundle directory bundle (see
// [WriteBundle]) and returns once its process runs. The container's stdout
// and stderr go to the given files (nil discards); its stdin is empty.
// The container is independent of the caller: it keeps running when ctx
// ends after Run returns and when the calling process exits, and it stays
// known to runc, as stopped, after it exits, until [Runc.Delete]. If ctx
// ends before it runs, the container is deleted.
func (r *Runc) Run(ctx context.Context, id, bundle string, stdout, stderr *os.File) (*Process, error) {
	p, err := r.start(ctx, id, bundle, stdout, stderr)
	if err != nil {
		return nil, fmt.Errorf("run container %s: %w", id, err)
	}
	return p, nil
}

func (r *Runc) start(ctx context.Context, id, bundle string, stdout, stderr *os.File) (*Process, error) {
	if !validID(id) {
		return nil, fmt.Errorf("invalid ID %q", id)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		return nil, err
	}
	// runc would refuse too, but its failure path below deletes the
	// container, which must never hit an existing one.
	stateDir := r.stateDir(id)
	if _, err := os.Lstat(stateDir); err == nil {
		return nil, errors.New("a container with this ID exists")
	}
	logFile := filepath.Join(bundle, runcLogFile)
	if err := os.Remove(logFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	pidFile := filepath.Join(stateDir, initPidFile)
	cmd := exec.Command("/bin/sh", "-c", shimScript, shimName,
		r.binary(), r.root(), logFile, bundle, pidFile, id, filepath.Join(stateDir, exitFile))
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	// Its own session: no signal aimed at the daemon's process group or
	// terminal reaches the container.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	p := &Process{id: id, done: make(chan struct{}), code: -1}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if p.code < 0 {
			// The shim itself was killed: fall back to what it recorded.
			p.code, p.err = readExit(stateDir)
			if p.err != nil {
				p.err = fmt.Errorf("container %s: shim %v and %w", id, err, p.err)
			}
		}
		close(p.done)
	}()
	// runc writes the pid file, by rename, once the process runs; its
	// state directory exists from then until Delete.
	started := func(pid int) (*Process, error) {
		p.pid = pid
		shim := []byte(strconv.Itoa(cmd.Process.Pid) + "\n")
		if err := os.WriteFile(filepath.Join(stateDir, shimPidFile), shim, 0o644); err != nil {
			return nil, err
		}
		return p, nil
	}
	for delay := 200 * time.Microsecond; ; delay = min(2*delay, 500*time.Microsecond) {
		if pid, err := readPid(pidFile); err == nil {
			return started(pid)
		}
		select {
		case <-p.done:
			if pid, err := readPid(pidFile); err == nil {
				return started(pid) // ran and exited already
			}
			msg := lastError(logFile)
			// --keep keeps even a container that never started.
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.Delete(dctx, id, true); err != nil {
				return nil, fmt.Errorf("runc exited with status %d: %s (and %w)", p.code, msg, err)
			}
			return nil, fmt.Errorf("runc exited with status %d: %s", p.code, msg)
		case <-ctx.Done():
			r.abandon(p, id, pidFile)
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// abandon undoes a start the caller gave up on. runc cannot be interrupted
// safely halfway, so it lets the start finish (it takes tens of
// milliseconds), then deletes the container and waits for the shim.
func (r *Runc) abandon(p *Process, id, pidFile string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := readPid(pidFile); err == nil {
			break
		}
		select {
		case <-p.done:
			return // it failed on its own
		case <-ctx.Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
	_ = r.Delete(ctx, id, true)
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

// Process returns a handle on container id started by Run, possibly by an
// earlier daemon. Its Wait returns the exit status the shim records.
func (r *Runc) Process(ctx context.Context, id string) (*Process, error) {
	st, err := r.State(ctx, id)
	if err != nil {
		return nil, err
	}
	stateDir := r.stateDir(id)
	p := &Process{id: id, pid: st.Pid, done: make(chan struct{}), code: -1}
	if st.Status == StatusStopped {
		p.code, p.err = readExit(stateDir)
		close(p.done)
		return p, nil
	}
	// Wait for the shim if it is still ours, else for the container's init.
	watch := st.Pid
	if b, err := os.ReadFile(filepath.Join(stateDir, shimPidFile)); err == nil {
		if shim, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isShim(shim, id) {
			watch = shim
		}
	}
	fd, err := unix.PidfdOpen(watch, 0)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("find container %s: watch pid %d: %w", id, watch, err)
	}
	go func() {
		if err == nil {
			waitPidfd(fd)
			unix.Close(fd)
		}
		// The shim writes the status just before it exits; init's exit
		// precedes it by runc's teardown.
		for i := 0; i < 100; i++ {
			if p.code, p.err = readExit(stateDir); p.err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if p.err != nil {
			p.err = fmt.Errorf("container %s: %w", id, p.err)
		}
		close(p.done)
	}()
	return p, nil
}

// isShim reports whether pid is the shim of container id.
func isShim(pid int, id string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 9 && args[3] == shimName && args[9] == id
}

func waitPidfd(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, -1)
		if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

func readPid(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// readExit reads the exit status the shim recorded in stateDir.
func readExit(stateDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, exitFile))
	if err != nil {
		return -1, fmt.Errorf("exit status not recorded: %w", err)
	}
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		return -1, errors.New("exit status not recorded: partial write")
	}
	code, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1, fmt.Errorf("exit status not recorded: %w", err)
	}
	return code, nil
}

// lastError returns the last error runc logged in JSON to file.
func lastError(file string) string {
	b, _ := os.ReadFile(file)
	if msg := logError(b); msg != "" {
		return msg
	}
	return "no error logged"
}

// logError finds the last error-level message in runc's JSON log output,
// or "" if none.
func logError(b []byte) string {
	var msg string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return msg
}

// runc runs one runc command to completion, returning its stdout.
func (r *Runc) runc(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--root", r.root(), "--log-format", "json"}, args...)
	cmd := exec.CommandContext(ctx, r.binary(), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := logError(stderr.Bytes())
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		if strings.Contains(msg, "container does not exist") {
			return nil, ErrNotExist
		}
		return nil, fmt.Errorf("runc %s: %w: %s", args[0], err, msg)
	}
	return stdout.Bytes(), nil
}

// runcState is what `runc state` and `runc list --format json` print.
type runcState struct {
	ID      string    `json:"id"`
	Pid     int       `json:"pid"`
	Status  string    `json:"status"`
	Bundle  string    `json:"bundle"`
	Created time.Time `json:"created"`
}

func (r *Runc) state(s runcState) State {
	st := State{ID: s.ID, Status: Status(s.Status), Pid: s.Pid, Bundle: s.Bundle, Created: s.Created, ExitCode: -1}
	if st.Status == StatusStopped {
		st.Pid = 0
		if code, err := readExit(r.stateDir(s.ID)); err == nil {
			st.ExitCode = code
		}
	}
	return st
}

// State returns the state of container id, or [ErrNotExist].
func (r *Runc) State(ctx context.Context, id string) (State, error) {
	if !validID(id) {
		return State{}, fmt.Errorf("state of container %q: invalid ID", id)
	}
	out, err := r.runc(ctx, "state", id)
	if err != nil {
		return State{}, fmt.Errorf("state of container %s: %w", id, err)
	}
	var s runcState
	if err := json.Unmarshal(out, &s); err != nil {
		return State{}, fmt.Errorf("state of container %s: %w", id, err)
	}
	return r.state(s), nil
}

// List returns the state of every container in Root.
func (r *Runc) List(ctx context.Context) ([]State, error) {
	out, err := r.runc(ctx, "list", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var list []runcState
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	states := make([]State, len(list))
	for i, s := range list {
		states[i] = r.state(s)
	}
	return states, nil
}

// Kill sends sig to the container's init process. With the container's own
// pid namespace, SIGKILL ends every process in it.
func (r *Runc) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	if !validID(id) {
		return fmt.Errorf("kill container %q: invalid ID", id)
	}
	if _, err := r.runc(ctx, "kill", id, strconv.Itoa(int(sig))); err != nil {
		return fmt.Errorf("kill container %s with %s: %w", id, unix.SignalName(sig), err)
	}
	return nil
}

// Delete removes a stopped container, or with force a running one (its
// processes get SIGKILL), along with its cgroup and runc's state, which
// holds the exit status. The bundle's runc.log stays until the next Run.
// Deleting a container that does not exist is not an error.
func (r *Runc) Delete(ctx context.Context, id string, force bool) error {
	if !validID(id) {
		return fmt.Errorf("delete container %q: invalid ID", id)
	}
	args := []string{"delete", id}
	if force {
		args = []string{"delete", "--force", id}
	}
	if _, err := r.runc(ctx, args...); err != nil && !errors.Is(err, ErrNotExist) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// Exec runs args inside the running container id and returns the exit
// status. stdin may be nil. An error means the process did not run (or its
// status is unknown); a non-zero status is not an error. Cancelling ctx
// kills runc, not necessarily the process it started.
func (r *Runc) Exec(ctx context.Context, id string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if !validID(id) {
		return -1, fmt.Errorf("exec in container %q: invalid ID", id)
	}
	if len(args) == 0 || args[0] == "" {
		return -1, fmt.Errorf("exec in container %s: empty command", id)
	}
	// runc exits 255 both for its own failures and when the process does:
	// only its log tells them apart. It goes into the container's state
	// directory, whose absence also means there is no container.
	log, err := os.CreateTemp(r.stateDir(id), "nexus-exec-*.log")
	if errors.Is(err, fs.ErrNotExist) {
		return -1, fmt.Errorf("exec in container %s: %w", id, ErrNotExist)
	}
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	log.Close()
	defer os.Remove(log.Name())
	full := append([]string{"--root", r.root(), "--log", log.Name(), "--log-format", "json", "exec", id}, args...)
	cmd := exec.CommandContext(ctx, r.binary(), full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	b, _ := os.ReadFile(log.Name())
	if msg := logError(b); msg != "" {
		if strings.Contains(msg, "container does not exist") {
			return -1, fmt.Errorf("exec in container %s: %w", id, ErrNotExist)
		}
		return -1, fmt.Errorf("exec in container %s: %s", id, msg)
	}
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return cmd.ProcessState.ExitCode(), nil
}

// Pause freezes every process of the container.
func (r *Runc) Pause(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("pause container %q: invalid ID", id)
	}
	if _, err := r.runc(ctx, "pause", id); err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (r *Runc) Resume(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("resume container %q: invalid ID", id)
	}
	if _, err := r.runc(ctx, "resume", id); err != nil {
		return fmt.Errorf("resume container %s: %w", id, err)
	}
	return nil
}

// Checkpoint saves the container's process tree to imageDir with CRIU and
// stops it (runc's default). It returns [ErrNoCRIU] when criu is not
// installed.
func (r *Runc) Checkpoint(ctx context.Context, id, imageDir string) error {
	if _, err := exec.LookPath("criu"); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", id, ErrNoCRIU)
	}
	if !validID(id) {
		return fmt.Errorf("checkpoint container %q: invalid ID", id)
	}
	if _, err := r.runc(ctx, "checkpoint", "--image-path", imageDir, id); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", id, err)
	}
	return nil
}
