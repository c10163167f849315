//go:build linux

package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// qmpConn is one QMP session. qemu serves one session at a time, so
// sessions are short: dial, a few commands, close.
type qmpConn struct {
	conn *net.UnixConn
	dec  *json.Decoder
	stop func() bool
	ctx  context.Context
}

func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmpConn{conn: c.(*net.UnixConn), dec: json.NewDecoder(c), ctx: ctx}
	// Unblock reads and writes when ctx ends.
	q.stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := q.dec.Decode(&greeting); err != nil {
		q.Close()
		return nil, q.wrap(fmt.Errorf("read QMP greeting: %w", err))
	}
	if greeting.QMP == nil {
		q.Close()
		return nil, errors.New("not a QMP socket")
	}
	if err := q.execute("qmp_capabilities", nil, nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error {
	q.stop()
	return q.conn.Close()
}

// wrap prefers the context's error to the deadline error it caused.
func (q *qmpConn) wrap(err error) error {
	if cerr := q.ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// execute runs one command and decodes its return value into out (if not
// nil), skipping asynchronous events.
func (q *qmpConn) execute(command string, args, out any) error {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.conn).Encode(req); err != nil {
		return q.wrap(fmt.Errorf("qmp %s: %w", command, err))
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.dec.Decode(&resp); err != nil {
			return q.wrap(fmt.Errorf("qmp %s: %w", command, err))
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return fmt.Errorf("qmp %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
		case out != nil:
			if err := json.Unmarshal(resp.Return, out); err != nil {
				return fmt.Errorf("qmp %s: %w", command, err)
			}
		}
		return nil
	}
}

// hmp runs a human monitor command. Those commands report failure only as
// text, and the ones used here print nothing when they succeed.
func (q *qmpConn) hmp(cmdline string) error {
	var out string
	if err := q.execute("human-monitor-command", map[string]string{"command-line": cmdline}, &out); err != nil {
		return err
	}
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("%s: %s", cmdline, out)
	}
	return nil
}

// peerPid returns the pid of the qemu on the other end.
func (q *qmpConn) peerPid() (int, error) {
	rc, err := q.conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return int(cred.Pid), nil
}
