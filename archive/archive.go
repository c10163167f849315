// Package archive packs a folder tree into a gzip'd tar and unpacks one into a
// folder: the form in which an IMVU's files (a mailbox's Maildir, a
// workload's writable layer) travel in exit bundles and snapshots.
//
// Extract treats its input as hostile: no entry can write outside the target
// folder, through ".." or through a symlink, and the bytes written are
// bounded. The package never follows a symlink when packing and never keeps
// state between calls.
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
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrTooLarge is returned when an archive unpacks to more than the limit.
var ErrTooLarge = errors.New("archive: unpacks to more than the limit")

// Write packs dir into w as a gzip'd tar: directories, regular files,
// symlinks (as links) and overlayfs whiteouts (character devices 0:0), with
// their modes, owners and modification times. Other file types are skipped.
func Write(ctx context.Context, dir string, w io.Writer) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode()&fs.ModeCharDevice != 0:
			if !isWhiteout(info) {
				return nil
			}
		case !info.Mode().IsRegular() && !info.IsDir():
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("archive %s: %w", rel, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archive %s: %w", rel, err)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("archive %s: %w", rel, err)
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

func isWhiteout(info fs.FileInfo) bool {
	st, ok := info.Sys().(*unix.Stat_t)
	if !ok {
		st2, ok2 := info.Sys().(interface{ Rdev() uint64 })
		return ok2 && st2.Rdev() == 0
	}
	return st.Rdev == 0
}

// Options bound an Extract.
type Options struct {
	// Limit is the most bytes of file content written; 0 means no limit.
	Limit int64
	// Owners keeps the archive's uid and gid (as root); otherwise files
	// belong to the extracting process.
	Owners bool
}

// Extract unpacks a gzip'd tar from r into dir, creating dir if needed.
// Entries that would land outside dir, absolute or ".." paths, and writes
// through symlinks are refused with an error naming the entry.
func Extract(ctx context.Context, r io.Reader, dir string, o Options) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	defer root.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("extract: not a gzip stream: %w", err)
	}
	tr := tar.NewReader(zr)
	var written int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		name, err := clean(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		mode := fs.FileMode(hdr.Mode) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
		case tar.TypeReg:
			if o.Limit > 0 && written+hdr.Size > o.Limit {
				return fmt.Errorf("extract %s: %w (%d bytes)", hdr.Name, ErrTooLarge, o.Limit)
			}
			root.Remove(name) // replace, never write through an existing link
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
			n, err := io.Copy(f, io.LimitReader(tr, hdr.Size))
			written += n
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			root.Remove(name)
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
			continue // modes and owners of a link are not its target's
		case tar.TypeChar:
			if hdr.Devmajor != 0 || hdr.Devminor != 0 {
				return fmt.Errorf("extract %s: device %d:%d refused (only overlay whiteouts, 0:0)", hdr.Name, hdr.Devmajor, hdr.Devminor)
			}
			if err := whiteout(dir, name); err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
			continue
		default:
			return fmt.Errorf("extract %s: entry type %q refused", hdr.Name, hdr.Typeflag)
		}
		if err := root.Chmod(name, mode); err != nil {
			return fmt.Errorf("extract %s: %w", hdr.Name, err)
		}
		if o.Owners {
			if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
		}
		if err := root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
			return fmt.Errorf("extract %s: %w", hdr.Name, err)
		}
	}
}

// clean turns an entry name into a slash path inside the root, or refuses it.
func clean(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("extract: entry %q: want a relative path", name)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("extract: entry %q leaves the target folder", name)
	}
	return c, nil
}

// whiteout makes an overlayfs whiteout (a 0:0 character device). os.Root has
// no mknod, so the parent is first resolved and checked to be the plain path
// under dir: no symlink on the way.
func whiteout(dir, name string) error {
	parent := filepath.Join(dir, filepath.FromSlash(path.Dir(name)))
	real, err := filepath.EvalSymlinks(parent)
	if err != nil {
		return err
	}
	base, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	want := filepath.Join(base, filepath.FromSlash(path.Dir(name)))
	if real != want {
		return errors.New("its folder is reached through a symlink")
	}
	target := filepath.Join(real, path.Base(name))
	os.Remove(target)
	return unix.Mknod(target, unix.S_IFCHR, 0)
}
