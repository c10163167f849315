package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// xattrPrefix is how PAX headers carry extended attributes (GNU tar and
// archive/tar agree on it).
const xattrPrefix = "SCHILY.xattr."

// opaqueXattr marks an overlay upper directory that hides the lower layer's
// directory of the same name: without it a deleted-and-recreated directory
// would show the lower layer's files again.
const opaqueXattr = "trusted.overlay.opaque"

// keepXattr reports whether an extended attribute travels in an archive:
// overlayfs's opaque marker and the user namespace. Everything else
// (security.*, other trusted.*) could grant privileges or steer overlayfs,
// so it is neither packed nor unpacked.
func keepXattr(name string) bool {
	return name == opaqueXattr || strings.HasPrefix(name, "user.")
}

// Write packs dir into w as a gzip'd tar: directories, regular files, hard
// links, symlinks (as links), FIFOs and overlayfs whiteouts (0:0 character
// devices), with numeric owners, modes, modification times and the extended
// attributes the package keeps. Sockets and devices other than whiteouts
// are left out. A file that changes size while it is read fails the Write:
// pack a workload's files while it is paused or stopped.
func Write(ctx context.Context, dir string, w io.Writer) error {
	return WriteSkip(ctx, dir, w, nil)
}

// WriteSkip is Write leaving out every path (slash-separated, relative to
// dir) for which skip reports true; a skipped folder is left out whole.
func WriteSkip(ctx context.Context, dir string, w io.Writer, skip func(rel string) bool) error {
	if err := write(ctx, dir, w, skip); err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	return nil
}

func write(ctx context.Context, dir string, w io.Writer, skip func(rel string) bool) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	type inode struct{ dev, ino uint64 }
	links := make(map[inode]string) // first name packed of each multiply linked file
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == dir {
			return nil // the folder's own metadata belongs to whoever unpacks
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", rel)
		}
		var target string
		switch m := fi.Mode(); {
		case m&fs.ModeSymlink != 0:
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		case m&fs.ModeCharDevice != 0:
			if st.Rdev != 0 {
				return nil // a real device: Extract would refuse it
			}
		case m&(fs.ModeSocket|fs.ModeDevice|fs.ModeIrregular) != 0:
			return nil // nothing to restore
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		// Names would come from this host's passwd, not the tree's owner's.
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if hdr.Typeflag == tar.TypeReg && st.Nlink > 1 {
			k := inode{st.Dev, st.Ino}
			if first, ok := links[k]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[k] = hdr.Name
			}
		}
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir {
			if err := readXattrs(p, hdr); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w (did it change while being read?)", rel, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// readXattrs adds the extended attributes keepXattr allows to hdr.
func readXattrs(p string, hdr *tar.Header) error {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || err == nil && size == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if !keepXattr(name) {
			continue
		}
		vsize, err := unix.Lgetxattr(p, name, nil)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since the listing
		}
		if err != nil {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(p, name, val); err != nil {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords[xattrPrefix+name] = string(val[:vsize])
	}
	return nil
}
