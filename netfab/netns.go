package netfab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// runDir is where named namespaces live, shared with iproute2's `ip netns`.
const runDir = "/run/netns"

// nsHandle is the plane's open view of one namespace: the namespace's fd
// and netlink and nftables sockets opened inside it.
type nsHandle struct {
	name string // "" for a foreign namespace
	path string
	fd   netns.NsHandle
	ino  uint64
	nl   *netlink.Handle
	nft  *nftables.Conn
}

func (h *nsHandle) close() {
	if h.nl != nil {
		h.nl.Close()
	}
	if h.nft != nil {
		_ = h.nft.CloseLasting()
	}
	_ = h.fd.Close()
}

// stale reports whether the namespace at h.path is no longer the one h has
// open (deleted, or deleted and made again by someone else).
func (h *nsHandle) stale() bool {
	var st unix.Stat_t
	if err := unix.Stat(h.path, &st); err != nil {
		return true
	}
	return st.Ino != h.ino
}

// nsSockets says which sockets openNS opens: an owned namespace needs
// rtnetlink and nftables, the router conntrack too, a foreign one rtnetlink
// only.
type nsSockets uint8

const (
	nsForeign nsSockets = iota
	nsOwned
	nsRouter
)

func openNS(name, path string, socks nsSockets) (*nsHandle, error) {
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", path, err)
	}
	h := &nsHandle{name: name, path: path, fd: fd}
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		h.close()
		return nil, fmt.Errorf("stat namespace %s: %w", path, err)
	}
	h.ino = st.Ino
	families := []int{unix.NETLINK_ROUTE}
	if socks == nsRouter {
		families = append(families, unix.NETLINK_NETFILTER)
	}
	if h.nl, err = netlink.NewHandleAt(fd, families...); err != nil {
		h.close()
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	if socks == nsForeign {
		return h, nil
	}
	if h.nft, err = nftables.New(nftables.WithNetNSFd(int(fd)), nftables.AsLasting()); err != nil {
		h.close()
		return nil, fmt.Errorf("nftables in %s: %w", path, err)
	}
	return h, nil
}

// inNS runs f on a thread inside the namespace fd. The thread stays locked
// and dies with its goroutine, so no other goroutine ever runs in it.
func inNS(fd int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// ensureRunDir makes /run/netns a shared mount point as iproute2 does, so
// namespaces named here and by `ip netns` see each other.
func ensureRunDir() error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", runDir, err)
	}
	err := unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(runDir, runDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", runDir, err)
		}
		err = unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("share %s: %w", runDir, err)
	}
	return nil
}

// createNS makes a named network namespace and applies the sysctls before
// any link exists in it (so IPv6 is off on every link).
func createNS(name string, sysctls []sysctl) error {
	path := filepath.Join(runDir, name)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies in the new namespace
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
			if err != nil {
				return err
			}
			f.Close()
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
				os.Remove(path)
				return fmt.Errorf("bind mount: %w", err)
			}
			_, err = applySysctls(sysctls)
			return err
		}()
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

func deleteNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// listOwned returns the names in /run/netns that carry the plane's prefix.
func listOwned(n namer) ([]string, error) {
	ents, err := os.ReadDir(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", runDir, err)
	}
	var out []string
	for _, e := range ents {
		if n.owns(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

type sysctl struct{ key, value string }

func sysctlsFor(r role) []sysctl {
	s := []sysctl{
		{"net/ipv6/conf/default/disable_ipv6", "1"},
		{"net/ipv6/conf/all/disable_ipv6", "1"},
	}
	if r == roleRouter {
		s = append(s,
			sysctl{"net/ipv4/conf/default/rp_filter", "1"},
			sysctl{"net/ipv4/conf/all/rp_filter", "1"},
			sysctl{"net/ipv4/ip_forward", "1"})
	}
	return s
}

// applySysctls sets what differs, on the calling thread's namespace, and
// returns what it had to change.
func applySysctls(want []sysctl) ([]string, error) {
	var changed []string
	for _, s := range want {
		p := "/proc/sys/" + s.key
		b, err := os.ReadFile(p)
		if err != nil {
			return changed, fmt.Errorf("read sysctl %s: %w", s.key, err)
		}
		if got := strings.TrimSpace(string(b)); got != s.value {
			if err := os.WriteFile(p, []byte(s.value), 0o644); err != nil {
				return changed, fmt.Errorf("set sysctl %s: %w", s.key, err)
			}
			changed = append(changed, fmt.Sprintf("sysctl %s was %s", s.key, got))
		}
	}
	return changed, nil
}
