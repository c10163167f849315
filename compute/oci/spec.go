package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ociVersion is written into config.json: runc 1.1 and crun 1.8 both accept
// it, while crun rejects 1.2.0 and later.
const ociVersion = "1.0.2"

// cpuPeriod is the CFS period CPU quotas are expressed over, in µs, the
// same as compute/cgroup uses.
const cpuPeriod = 100000

// defaultPath is the PATH a workload gets unless its Env sets one.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec is what Nexus decides about one container. [Spec.Config] turns it
// into an OCI runtime config.
type Spec struct {
	ID       string   // container ID: letters, digits, '_', '-', '.'; 1-128 chars
	Args     []string // command and arguments; required
	Env      []string // "KEY=value"; PATH defaults to the usual one
	Cwd      string   // absolute; default "/"
	Hostname string   // default: derived from ID

	// CgroupsPath is linux.cgroupsPath for runc's cgroupfs driver, usually
	// compute/cgroup's Host.RuntimePath of the workload's cgroup. Empty
	// lets runc choose.
	CgroupsPath string

	// Limits of the container's own cgroup, which its IMVU's envelope caps
	// again from above. Zero means no limit of its own.
	CPUMilli, MemoryBytes, Pids uint64

	// NetNSPath is a network namespace to join, such as /run/netns/imvu042;
	// empty gives the container a new one with only loopback.
	NetNSPath string

	ReadonlyRootfs bool
}

// Validate reports the first invalid field, by name.
func (s Spec) Validate() error {
	if !validID(s.ID) {
		return fmt.Errorf("Spec.ID %q: want 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit", s.ID)
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return errors.New("Spec.Args: empty command")
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("Spec.Args[%d]: contains NUL", i)
		}
	}
	for i, e := range s.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("Spec.Env[%d] %q: want KEY=value", i, e)
		}
	}
	if s.Cwd != "" && (!path.IsAbs(s.Cwd) || path.Clean(s.Cwd) != s.Cwd) {
		return fmt.Errorf("Spec.Cwd %q: want a clean absolute path", s.Cwd)
	}
	if s.Hostname != "" && !validHostname(s.Hostname) {
		return fmt.Errorf("Spec.Hostname %q: want up to 64 letters, digits, '-' and '.'", s.Hostname)
	}
	if s.CgroupsPath != "" && (!path.IsAbs(s.CgroupsPath) || path.Clean(s.CgroupsPath) != s.CgroupsPath || s.CgroupsPath == "/") {
		return fmt.Errorf("Spec.CgroupsPath %q: want a clean absolute path below the cgroup root", s.CgroupsPath)
	}
	if s.CPUMilli != 0 && s.CPUMilli < 10 || s.CPUMilli > 1<<30 {
		return fmt.Errorf("Spec.CPUMilli %d: want 0 (no limit) or 10 to 2^30", s.CPUMilli)
	}
	if s.MemoryBytes > math.MaxInt64 {
		return fmt.Errorf("Spec.MemoryBytes %d: too large", s.MemoryBytes)
	}
	if s.Pids > math.MaxInt64 {
		return fmt.Errorf("Spec.Pids %d: too large", s.Pids)
	}
	if s.NetNSPath != "" && !filepath.IsAbs(s.NetNSPath) {
		return fmt.Errorf("Spec.NetNSPath %q: want an absolute path", s.NetNSPath)
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > 128 || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func validHostname(h string) bool {
	if h == "" || len(h) > 64 || h[0] == '-' || h[0] == '.' {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !isAlnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// hostname derives a hostname from a container ID.
func hostname(id string) string {
	h := strings.Map(func(r rune) rune {
		if r < 128 && isAlnum(byte(r)) || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, id)
	return h[:min(len(h), 64)]
}

// capabilities is runc's classic default set (the libcontainer template
// Docker also starts from) minus two:
//
//   - CAP_NET_RAW would let a workload forge packets (ARP and IP spoofing on
//     its IMVU's network) and sniff; ICMP echo still works through
//     unprivileged ping sockets (net.ipv4.ping_group_range below).
//   - CAP_MKNOD would let it create device nodes; the device cgroup already
//     denies opening them, and without the capability an upper layer, and
//     so a snapshot, can hold no device but overlayfs's whiteouts.
func capabilities() []string {
	return []string{
		"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
		"CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETFCAP",
		"CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
	}
}

// Config builds the OCI runtime config for s: root "rootfs" in the bundle;
// new pid, mount, uts, ipc and (when the kernel has it) cgroup namespaces;
// a new network namespace unless NetNSPath is set; capabilities as listed
// above, bounding, effective and permitted only (never inheritable or
// ambient); no new privileges; RLIMIT_NOFILE as nofile explains; the
// mounts, masked and read-only paths of `runc spec`; no devices beyond
// runc's default set; the limits in linux.resources.
func (s Spec) Config() (*specs.Spec, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	env := append([]string(nil), s.Env...)
	hasPath := false
	for _, e := range env {
		hasPath = hasPath || strings.HasPrefix(e, "PATH=")
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	cwd := s.Cwd
	if cwd == "" {
		cwd = "/"
	}
	host := s.Hostname
	if host == "" {
		host = hostname(s.ID)
	}
	caps := capabilities()

	resources := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if s.CPUMilli != 0 {
		quota := int64(s.CPUMilli * cpuPeriod / 1000)
		period := uint64(cpuPeriod)
		resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if s.MemoryBytes != 0 {
		limit := int64(s.MemoryBytes)
		swap := limit // memory+swap equal to memory: no swap
		resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if s.Pids != 0 {
		resources.Pids = &specs.LinuxPids{Limit: int64(s.Pids)}
	}

	namespaces := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.NetworkNamespace, Path: s.NetNSPath},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
	}
	if _, err := os.Stat("/proc/self/ns/cgroup"); err == nil {
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	var sysctl map[string]string
	if s.NetNSPath == "" {
		// Ping without CAP_NET_RAW; the namespace is the container's own.
		// A joined namespace is configured by whoever made it.
		sysctl = map[string]string{"net.ipv4.ping_group_range": "0 2147483647"}
	}

	return &specs.Spec{
		Version: ociVersion,
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: append([]string(nil), s.Args...),
			Env:  env,
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{nofile()},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: s.ReadonlyRootfs},
		Hostname: host,
		Mounts:   defaultMounts(),
		Linux: &specs.Linux{
			Resources:   resources,
			CgroupsPath: s.CgroupsPath,
			Namespaces:  namespaces,
			Sysctl:      sysctl,
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
				"/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}, nil
}

// nofile is RLIMIT_NOFILE: soft 1024 keeps select(2)-based programs safe
// and servers raise it up to the hard limit themselves. The hard limit is
// 65536, or the daemon's own if lower: raising it takes CAP_SYS_RESOURCE,
// which a daemon in a sandbox may lack, and runc fails the start then.
func nofile() specs.POSIXRlimit {
	limit := specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 65536}
	var own unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &own) == nil && own.Max < limit.Hard {
		limit.Hard = own.Max
		limit.Soft = min(limit.Soft, own.Max)
	}
	return limit
}

// defaultMounts are the mounts `runc spec` writes.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// WriteBundle writes dir/config.json for s (mode 0600: the environment may
// hold secrets) and creates dir/rootfs, where the caller mounts the
// workload's overlay before [Runc.Run]. The file is replaced atomically.
func WriteBundle(dir string, s Spec) error {
	cfg, err := s.Config()
	if err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := writeBundle(dir, cfg); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	return nil
}

func writeBundle(dir string, cfg *specs.Spec) error {
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	return writeIfChanged(filepath.Join(dir, "config.json"), append(b, '\n'), 0o600)
}
