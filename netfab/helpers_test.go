package netfab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nexus-core/nexus/internal/testenv"
)

func requireNet(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (network namespaces)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		testenv.Missing(t, "network namespaces: %v", err)
	}
}

func requireBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name)
			}
		}
		testenv.Missing(t, "binary %s", name)
	}
	return p
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testEnv is a Plane with a random prefix plus the foreign namespaces a test
// made ("the internet", egress points); everything is removed at cleanup
// and the test fails if the plane left anything behind.
type testEnv struct {
	t      testing.TB
	plane  *Plane
	prefix string
	ext    map[string]string // foreign namespace paths by label
	drifts chan Drift
}

type envOpt func(*testEnv, *Options)

// withEgress makes a foreign namespace per name (the uplink is "uplink")
// holding 198.51.100.1/32 on its loopback: the same "internet host" behind
// every egress point, so which one answers shows the path taken.
func withEgress(names ...string) envOpt {
	return func(e *testEnv, o *Options) {
		for i, name := range names {
			path := e.foreignNS(name)
			ep := EgressPoint{Name: name, NetNS: path, Link: "nx" + e.prefix[:6],
				Local:  netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(4*i + 1)}), 30),
				Remote: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(4*i + 2)}), 30)}
			run(e.t, "ip", "-n", filepath.Base(path), "link", "set", "lo", "up")
			run(e.t, "ip", "-n", filepath.Base(path), "addr", "add", "198.51.100.1/32", "dev", "lo")
			if name == "uplink" {
				ep.Name = ""
				o.Uplink = &ep
			} else {
				o.Egress = append(o.Egress, ep)
			}
		}
	}
}

func newEnv(t testing.TB, opts ...envOpt) *testEnv {
	t.Helper()
	requireNet(t)
	e := &testEnv{t: t, prefix: "t" + randHex(4), ext: map[string]string{}, drifts: make(chan Drift, 1024)}
	o := Options{OnDrift: func(d Drift) {
		select {
		case e.drifts <- d:
		default:
		}
	}}
	o.Prefix = e.prefix
	for _, f := range opts {
		f(e, &o)
	}
	ctx := context.Background()
	p, err := New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.plane = p
	t.Cleanup(func() {
		if err := e.plane.Teardown(ctx); err != nil {
			t.Errorf("Teardown: %v", err)
		}
		left, _ := listOwned(namer{e.prefix})
		for _, n := range left {
			t.Errorf("namespace %s left behind", n)
			deleteNS(filepath.Join(runDir, n))
		}
		for label, path := range e.ext {
			out, _ := exec.Command("ip", "-n", filepath.Base(path), "-o", "link", "show").CombinedOutput()
			if strings.Contains(string(out), "nx"+e.prefix[:6]) {
				t.Errorf("egress link left behind in %s namespace: %s", label, out)
			}
		}
	})
	return e
}

// foreignNS makes a namespace the plane does not own, removed at cleanup.
func (e *testEnv) foreignNS(label string) string {
	name := "x" + e.prefix + "-" + label
	if err := ensureRunDir(); err != nil {
		e.t.Fatal(err)
	}
	if err := createNS(name, nil); err != nil {
		e.t.Fatalf("create namespace: %v", err)
	}
	path := filepath.Join(runDir, name)
	e.ext[label] = path
	e.t.Cleanup(func() { deleteNS(path) })
	return path
}

func (e *testEnv) inNS(path string, f func() error) {
	e.t.Helper()
	if err := doIn(path, f); err != nil {
		e.t.Fatalf("in %s: %v", path, err)
	}
}

func doIn(path string, f func() error) error {
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer fd.Close()
	return inNS(int(fd), f)
}

func (e *testEnv) apply(d Desired) {
	e.t.Helper()
	if err := e.plane.Sync(context.Background(), d); err != nil {
		e.t.Fatalf("Sync: %v", err)
	}
}

func (e *testEnv) wl(imvu, w string) string { return e.plane.WorkloadNS(imvu, w) }

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// server is a TCP (and UDP) server in a namespace. A TCP client first reads
// one line "<label> <client address>", then gets back whatever it sends.
// UDP datagrams are recorded with their source.
type server struct {
	ln    net.Listener
	pc    net.PacketConn
	mu    sync.Mutex
	udp   []string
	label string
}

func (e *testEnv) serve(path string, addr netip.AddrPort, label string) *server {
	e.t.Helper()
	s := &server{label: label}
	e.inNS(path, func() error {
		var err error
		if s.ln, err = net.Listen("tcp4", addr.String()); err != nil {
			return err
		}
		s.pc, err = net.ListenPacket("udp4", addr.String())
		return err
	})
	e.t.Cleanup(func() { s.ln.Close(); s.pc.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ra := c.RemoteAddr().(*net.TCPAddr)
				fmt.Fprintf(c, "%s %s\n", s.label, ra.IP)
				io.Copy(c, c)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := s.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.udp = append(s.udp, fmt.Sprintf("%s %s", from.(*net.UDPAddr).IP, buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *server) datagrams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.udp...)
}

// dial connects from a namespace and returns the server's greeting line.
func dial(path string, addr netip.AddrPort, timeout time.Duration) (net.Conn, string, error) {
	var c net.Conn
	err := doIn(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr.String(), timeout)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	c.SetReadDeadline(time.Time{})
	return c, strings.TrimSpace(line), nil
}

// reach reports whether a TCP connection from path to addr succeeds, with
// the greeting it got.
func reach(path string, addr netip.AddrPort) (string, bool) {
	c, line, err := dial(path, addr, 700*time.Millisecond)
	if err != nil {
		return err.Error(), false
	}
	c.Close()
	return line, true
}

// sendUDP sends a datagram from path with source address src, which the
// sending namespace need not own (IP_FREEBIND, IP_TRANSPARENT): a
// spoofing workload.
func sendUDP(path string, src netip.Addr, dst netip.AddrPort, payload string) error {
	return doIn(path, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1),
					unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1))
			})
			return errors.Join(err, serr)
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(src, 0).String())
		if err != nil {
			return err
		}
		defer pc.Close()
		_, err = pc.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(dst))
		return err
	})
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sink is a TCP server that reads and counts everything sent to it.
type sink struct {
	ln   net.Listener
	mu   sync.Mutex
	n    int64
	done chan struct{}
}

func (e *testEnv) sink(path string, addr netip.AddrPort) *sink {
	e.t.Helper()
	s := &sink{done: make(chan struct{}, 16)}
	e.inNS(path, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	e.t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					s.mu.Lock()
					s.n += int64(n)
					s.mu.Unlock()
					if err != nil {
						break
					}
				}
				select {
				case s.done <- struct{}{}:
				default:
				}
			}()
		}
	}()
	return s
}

// push sends n bytes over TCP from path to addr and waits until the sink
// has read them.
func (e *testEnv) push(path string, s *sink, addr netip.AddrPort, n int) {
	e.t.Helper()
	var c net.Conn
	e.inNS(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr.String(), 2*time.Second)
		return err
	})
	buf := make([]byte, 64<<10)
	for sent := 0; sent < n; {
		k := min(len(buf), n-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			e.t.Fatalf("push: %v", err)
		}
		sent += k
	}
	c.Close()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		e.t.Fatalf("push: sink did not finish")
	}
}

// execIn runs a command inside a named namespace, as an admin would.
func execIn(path string, name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", filepath.Base(path), name}, args...)...).CombinedOutput()
	return string(out), err
}
