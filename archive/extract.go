package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTooLarge is returned when an archive unpacks to more than the limit.
var ErrTooLarge = errors.New("archive: unpacks to more than the limit")

// Options bound an Extract.
type Options struct {
	// Limit is the most bytes of file content written; 0 means no limit.
	// Directories, links and other metadata are not counted.
	Limit int64
	// Owners restores the archive as it was packed, which needs root: its
	// numeric owners, set-id bits and overlayfs opaque markers. Otherwise
	// everything belongs to the extracting process, set-id bits are
	// dropped and opaque markers are not set.
	Owners bool
}

// Extract unpacks a gzip'd tar from r into dir, creating dir if needed. A
// non-empty dir is merged into: an entry replaces a file or symlink of the
// same name (it never writes through it), a directory entry merges into an
// existing directory, and files the archive does not name are kept. An
// entry that would replace a directory with a non-directory, reach through
// a symlink or out of dir, or is of a kind Write does not produce (a
// device other than a whiteout, an extended attribute other than
// trusted.overlay.opaque and user.*) fails the Extract with an error naming
// it; so does file content beyond o.Limit ([ErrTooLarge]). On error dir
// holds what was unpacked so far. Extract returns once what it wrote is on
// disk (syncfs of dir's filesystem).
func Extract(ctx context.Context, r io.Reader, dir string, o Options) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	x := &extractor{root: root, opts: o, dirAt: make(map[string]int)}
	x.parent.fd = -1
	defer x.close()

	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("extract into %s: not a gzip stream: %w", dir, err)
	}
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("extract into %s: %w", dir, err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("extract %q: %w", hdr.Name, err)
		}
	}
	if err := x.finishDirs(); err != nil {
		return err
	}
	if err := x.sync(); err != nil {
		return fmt.Errorf("extract into %s: sync: %w", dir, err)
	}
	return nil
}

// dirMeta is applied once all of a directory's entries exist: its mode may
// forbid writing into it and adding entries changes its mtime.
type dirMeta struct {
	name  string
	mode  uint32
	mtime time.Time
	hdr   *tar.Header // for its extended attributes
}

type extractor struct {
	root    int // O_PATH descriptor of the target
	opts    Options
	written int64 // bytes of file content
	dirs    []dirMeta
	dirAt   map[string]int // index in dirs, so a repeated entry replaces
	parent  struct {       // the last parent opened: tar lists a folder's entries together
		name string
		fd   int
	}
}

func (x *extractor) close() {
	if x.parent.fd >= 0 {
		unix.Close(x.parent.fd)
	}
	unix.Close(x.root)
}

// cleanName turns an entry name into a slash path relative to the target,
// or "." for the target itself.
func cleanName(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("empty name or NUL in name")
	}
	if path.IsAbs(name) {
		return "", errors.New("absolute path: want a relative one")
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", errors.New(`path has a ".." element: it could leave the target folder`)
		}
	}
	return path.Clean(name), nil
}

func (x *extractor) entry(hdr *tar.Header, body io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the target's own metadata belongs to whoever made it
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid >= math.MaxUint32 {
		return fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	for k := range hdr.PAXRecords {
		if a, ok := strings.CutPrefix(k, xattrPrefix); ok && !keepXattr(a) {
			return fmt.Errorf("extended attribute %s not allowed", a)
		}
	}
	dir, base := path.Split(name)
	pfd, err := x.openParent(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	perm := uint32(hdr.Mode) & 0o7777
	if !x.opts.Owners {
		// The caller would own a set-id program the archive chose.
		perm &^= unix.S_ISUID | unix.S_ISGID
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := mkdir(pfd, base); err != nil {
			return err
		}
		if err := x.owner(pfd, base, hdr); err != nil {
			return err
		}
		meta := dirMeta{name: name, mode: perm, mtime: hdr.ModTime, hdr: hdr}
		if i, ok := x.dirAt[name]; ok {
			x.dirs[i] = meta
		} else {
			x.dirAt[name] = len(x.dirs)
			x.dirs = append(x.dirs, meta)
		}
		return nil
	case tar.TypeReg:
		return x.file(pfd, base, perm, hdr, body)
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) >= unix.PathMax || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return errors.New("bad symlink target")
		}
		if err := replace(pfd, base); err != nil {
			return err
		}
		// Any target will do: nothing here ever follows it.
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
		if err := x.owner(pfd, base, hdr); err != nil {
			return err
		}
	case tar.TypeLink:
		return x.link(pfd, base, hdr)
	case tar.TypeChar, tar.TypeFifo:
		var mode uint32 = unix.S_IFIFO
		if hdr.Typeflag == tar.TypeChar {
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				return fmt.Errorf("device %d:%d refused: only overlay whiteouts (0:0)", hdr.Devmajor, hdr.Devminor)
			}
			mode = unix.S_IFCHR
		}
		if err := replace(pfd, base); err != nil {
			return err
		}
		if err := unix.Mknodat(pfd, base, mode|0o600, 0); err != nil {
			return err
		}
		if err := x.owner(pfd, base, hdr); err != nil {
			return err
		}
		// Just made by us, so following is safe; fchmodat cannot refuse to
		// follow on Linux.
		if err := unix.Fchmodat(pfd, base, perm, 0); err != nil {
			return err
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("entry type %q not allowed", hdr.Typeflag)
	}
	return unix.UtimesNanoAt(pfd, base, times(hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW)
}

// file writes a regular file in place of whatever non-directory had its
// name, so a hard link or symlink there is never written through.
func (x *extractor) file(pfd int, base string, perm uint32, hdr *tar.Header, body io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("size %d", hdr.Size)
	}
	if x.opts.Limit > 0 && hdr.Size > x.opts.Limit-x.written {
		return fmt.Errorf("%w (%d bytes)", ErrTooLarge, x.opts.Limit)
	}
	if err := replace(pfd, base); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	n, err := io.Copy(f, body)
	x.written += n
	if err != nil {
		return err
	}
	if x.opts.Owners {
		if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	// After chown, which clears set-id bits.
	if err := unix.Fchmod(fd, perm); err != nil {
		return err
	}
	if err := x.setXattrs(fd, hdr); err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(fd, "", times(hdr.ModTime), unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	return f.Close()
}

// link makes a hard link to an entry already in the target, reached
// without following symlinks. The inode's metadata came with its first
// name.
func (x *extractor) link(pfd int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err == nil && target == "." {
		err = errors.New("the target folder")
	}
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	tdir, tbase := path.Split(target)
	tfd, err := x.openBeneath(strings.TrimSuffix(tdir, "/"))
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	if err := replace(pfd, base); err != nil {
		return err
	}
	// No AT_SYMLINK_FOLLOW: a symlink is linked as itself.
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (x *extractor) owner(pfd int, base string, hdr *tar.Header) error {
	if !x.opts.Owners {
		return nil
	}
	return unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
}

// mkdir makes directory base, keeping one that exists and replacing a file
// or symlink of that name.
func mkdir(pfd int, base string) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if !errors.Is(err, unix.EEXIST) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	if err := unix.Unlinkat(pfd, base, 0); err != nil {
		return err
	}
	return unix.Mkdirat(pfd, base, 0o700)
}

// replace removes a non-directory at base so a new entry can take its place.
func replace(pfd int, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EISDIR):
		return errors.New("a non-directory would replace a directory")
	}
	return err
}

// openParent returns a descriptor of the directory dir (relative to the
// target, "" for the target), creating missing directories. The last one
// is kept open: tar streams list a directory's entries together.
func (x *extractor) openParent(dir string) (int, error) {
	if dir == "" {
		return x.root, nil
	}
	if x.parent.fd >= 0 && x.parent.name == dir {
		return x.parent.fd, nil
	}
	fd, err := x.openBeneath(dir)
	if errors.Is(err, unix.ENOENT) {
		fd, err = x.mkdirAll(dir)
	}
	if err != nil {
		return -1, err
	}
	if x.parent.fd >= 0 {
		unix.Close(x.parent.fd)
	}
	x.parent.name, x.parent.fd = dir, fd
	return fd, nil
}

// resolveBeneath refuses symlinks, "..", magic links and mount crossings
// anywhere in a path resolved from the target (openat2, Linux 5.6).
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openBeneath opens dir under the target as an O_PATH descriptor.
func (x *extractor) openBeneath(dir string) (int, error) {
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Openat2(x.root, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
	switch {
	case errors.Is(err, unix.ELOOP):
		return -1, fmt.Errorf("%s: a parent is a symlink", dir)
	case errors.Is(err, unix.ENOTDIR):
		return -1, fmt.Errorf("%s: a parent is not a directory", dir)
	case errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("%s: a parent is another filesystem's mount point", dir)
	}
	return fd, err
}

// mkdirAll creates the missing directories of dir one level at a time,
// each relative to its verified parent.
func (x *extractor) mkdirAll(dir string) (int, error) {
	cur := ""
	for _, elem := range strings.Split(dir, "/") {
		fd, err := x.openBeneath(cur)
		if err != nil {
			return -1, err
		}
		err = unix.Mkdirat(fd, elem, 0o755)
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		cur = path.Join(cur, elem)
	}
	return x.openBeneath(cur)
}

// setXattrs sets the entry's extended attributes (entry checked them
// against keepXattr); the opaque marker only with Options.Owners.
func (x *extractor) setXattrs(fd int, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || name == opaqueXattr && !x.opts.Owners {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

// finishDirs applies directory modes, extended attributes and times,
// deepest first so a parent's mtime is not disturbed afterwards.
func (x *extractor) finishDirs() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		fd, err := unix.Openat2(x.root, d.name, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: resolveBeneath,
		})
		if err == nil {
			err = unix.Fchmod(fd, d.mode)
			if err == nil {
				err = x.setXattrs(fd, d.hdr)
			}
			if err == nil {
				err = unix.UtimesNanoAt(fd, "", times(d.mtime), unix.AT_EMPTY_PATH)
			}
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("extract %q: %w", d.hdr.Name, err)
		}
	}
	return nil
}

// sync flushes the target's filesystem: one call instead of an fsync per
// file and folder.
func (x *extractor) sync() error {
	fd, err := unix.Openat(x.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

func times(t time.Time) []unix.Timespec {
	ts := unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	return []unix.Timespec{ts, ts}
}
