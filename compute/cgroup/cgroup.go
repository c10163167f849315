package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where Linux hosts mount their cgroup filesystems.
const DefaultRoot = "/sys/fs/cgroup"

var (
	// ErrBelowUsage is returned when a memory limit is lowered below what the
	// cgroup uses and the kernel cannot reclaim the difference.
	ErrBelowUsage = errors.New("memory limit below current usage")
	// ErrPopulated is returned by [Host.Remove] when processes remain.
	ErrPopulated = errors.New("cgroup still has processes")
)

// v1Controllers are the v1 hierarchies a Nexus cgroup is created in. cpuset
// is only there because runc and Join need it initialised; freezer makes
// Kill race-free.
func v1Controllers() []string {
	return []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer"}
}

// v1Required are the controllers without which limits cannot be enforced.
func v1Required() []string { return []string{"cpu", "cpuacct", "memory", "pids"} }

// v2Controllers are the controllers enabled in ancestors' subtree_control.
func v2Controllers() []string { return []string{"cpu", "io", "memory", "pids"} }

// A Host is one machine's cgroup mount. The zero value is not usable; get
// one from [Detect] or [Open].
type Host struct {
	root    string
	version int

	// v1: the directory of each controller's hierarchy.
	ctrl map[string]string
	// v1: the distinct hierarchies Nexus cgroups are created in (co-mounted
	// controllers such as "cpu,cpuacct" appear once).
	own []string
	// v1: every hierarchy under root, including ones Nexus does not use
	// (devices, name=systemd, a hybrid host's unified/) but runc creates
	// container cgroups in, so that Remove and Kill see them too.
	all []string

	// v2: controllers listed in the root's cgroup.controllers.
	avail map[string]bool

	// plain is true when root is an ordinary directory tree (tests): control
	// files are then created on first write instead of having to exist.
	plain bool
}

// Detect opens the host's cgroup mount at [DefaultRoot], choosing v2 when it
// is a cgroup2 mount and v1 otherwise (including hybrid hosts, whose empty
// cgroup2 mount at unified/ is ignored).
func Detect() (*Host, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultRoot, &st); err != nil {
		return nil, fmt.Errorf("detect cgroup version: statfs %s: %w", DefaultRoot, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return Open(DefaultRoot, 2)
	}
	return Open(DefaultRoot, 1)
}

// Open opens the cgroup tree at root as the given version (1 or 2). For v1,
// root holds one directory per controller (root/cpu, root/memory, ...); for
// v2 it is the unified mount and must list its controllers in
// cgroup.controllers. root may be an ordinary directory laid out the same
// way, which lets tests check the files written without a kernel.
func Open(root string, version int) (*Host, error) {
	h := &Host{root: filepath.Clean(root), version: version}
	switch version {
	case 1:
		if err := h.openV1(); err != nil {
			return nil, fmt.Errorf("open cgroup v1 at %s: %w", root, err)
		}
	case 2:
		if err := h.openV2(); err != nil {
			return nil, fmt.Errorf("open cgroup v2 at %s: %w", root, err)
		}
	default:
		return nil, fmt.Errorf("open cgroup at %s: unknown version %d", root, version)
	}
	return h, nil
}

func (h *Host) openV1() error {
	h.ctrl = make(map[string]string)
	seen := make(map[string]bool)
	for _, c := range v1Controllers() {
		dir := filepath.Join(h.root, c)
		real, err := filepath.EvalSymlinks(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		h.ctrl[c] = dir
		if !seen[real] {
			seen[real] = true
			h.own = append(h.own, dir)
		}
	}
	var missing []string
	for _, c := range v1Required() {
		if h.ctrl[c] == "" {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("controllers not mounted: %s", strings.Join(missing, ", "))
	}
	h.plain = !isCgroupFS(h.ctrl["memory"])

	entries, err := os.ReadDir(h.root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		dir := filepath.Join(h.root, e.Name())
		real, err := filepath.EvalSymlinks(dir)
		if err != nil || seen[real] {
			continue
		}
		fi, err := os.Stat(real)
		if err != nil || !fi.IsDir() {
			continue
		}
		// Includes the cgroup2 mount of hybrid hosts (unified/): runc
		// creates container cgroups there too.
		if h.plain || isCgroupFS(real) {
			seen[real] = true
			h.all = append(h.all, dir)
		}
	}
	h.all = append(append([]string(nil), h.own...), h.all...)
	return nil
}

func (h *Host) openV2() error {
	b, err := os.ReadFile(filepath.Join(h.root, "cgroup.controllers"))
	if err != nil {
		return err
	}
	h.avail = make(map[string]bool)
	for _, c := range strings.Fields(string(b)) {
		h.avail[c] = true
	}
	var missing []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		if !h.avail[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("controllers not available: %s", strings.Join(missing, ", "))
	}
	h.plain = !isCgroupFS(h.root)
	return nil
}

func statfsType(dir string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return st.Type
}

func isCgroupFS(dir string) bool {
	t := statfsType(dir)
	return t == unix.CGROUP_SUPER_MAGIC || t == unix.CGROUP2_SUPER_MAGIC
}

// Version reports 1 or 2.
func (h *Host) Version() int { return h.version }

// RuntimePath is what to put in an OCI config's linux.cgroupsPath so that
// runc's cgroupfs driver places a container at path. It is absolute, because
// runc resolves relative paths against its own cgroup.
func (h *Host) RuntimePath(path string) string { return "/" + path }

// ProcsFiles lists the cgroup.procs files a process writes its own pid into
// to join path, one per hierarchy. A launcher does that before exec, so that
// all memory the workload ever uses is charged to path. It returns nil for an
// invalid path.
func (h *Host) ProcsFiles(path string) []string {
	if checkPath(path) != nil {
		return nil
	}
	var files []string
	for _, d := range h.dirs(path) {
		files = append(files, filepath.Join(d, "cgroup.procs"))
	}
	return files
}

// dirs returns path's directory in every hierarchy it is created in.
func (h *Host) dirs(path string) []string {
	if h.version == 2 {
		return []string{filepath.Join(h.root, path)}
	}
	dirs := make([]string, 0, len(h.own))
	for _, hier := range h.own {
		dirs = append(dirs, filepath.Join(hier, path))
	}
	return dirs
}

// allDirs is like dirs but includes v1 hierarchies Nexus does not manage.
func (h *Host) allDirs(path string) []string {
	if h.version == 2 {
		return h.dirs(path)
	}
	dirs := make([]string, 0, len(h.all))
	for _, hier := range h.all {
		dirs = append(dirs, filepath.Join(hier, path))
	}
	return dirs
}

// file returns the control file name of controller c at path.
func (h *Host) file(c, path, name string) string {
	if h.version == 2 {
		return filepath.Join(h.root, path, name)
	}
	return filepath.Join(h.ctrl[c], path, name)
}

// checkPath rejects paths that could leave the cgroup tree or name a
// control file.
func checkPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("invalid cgroup path %q: want a clean relative path like nexus/imvu042", p)
	}
	for _, elem := range strings.Split(p, "/") {
		if !validElem(elem) {
			return fmt.Errorf("invalid cgroup path %q: element %q must be letters, digits, '_', '-' or '.', not starting with '.' or '-'", p, elem)
		}
	}
	return nil
}

func validElem(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// writeFile writes one value to a control file. Control files must exist on
// a real cgroup filesystem: a missing one means the controller is absent,
// which is reported rather than papered over.
func (h *Host) writeFile(file, value string) error {
	flag := os.O_WRONLY | os.O_TRUNC
	if h.plain {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(file, flag, 0o644)
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, file, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The path is already in the message; keep just the errno.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("write %q to %s: %w", value, file, err)
	}
	return nil
}

func readString(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// mkdir creates one cgroup directory; it reports whether it was new.
func mkdir(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	return true, nil
}

// prefixes returns "a", "a/b", "a/b/c" for "a/b/c".
func prefixes(p string) []string {
	parts := strings.Split(p, "/")
	out := make([]string, len(parts))
	for i := range parts {
		out[i] = strings.Join(parts[:i+1], "/")
	}
	return out
}

// subtree returns dir and every cgroup directory below it, deepest first.
func subtree(dir string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			// A child removed while walking is not an error.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs, err
}
