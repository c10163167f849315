package vm

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as an
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst):
// per entry a 110-byte ASCII header, the NUL-terminated name and the data,
// each padded to four bytes; the archive ends with "TRAILER!!!". Times are
// zero and inodes sequential, so equal input gives equal bytes.
type cpioWriter struct {
	w     io.Writer
	ino   uint32
	off   int64
	names map[string]bool
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, names: map[string]bool{}}
}

// Mode bits of the cpio header (the same as Linux st_mode).
const (
	cpioDir     = 0o040000
	cpioReg     = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
)

func (c *cpioWriter) Dir(name string, perm fs.FileMode) error {
	return c.entry(name, cpioDir|uint32(perm.Perm()), 2, 0, 0, nil)
}

func (c *cpioWriter) File(name string, perm fs.FileMode, data []byte) error {
	return c.entry(name, cpioReg|uint32(perm.Perm()), 1, 0, 0, data)
}

func (c *cpioWriter) Symlink(name, target string) error {
	return c.entry(name, cpioSymlink|0o777, 1, 0, 0, []byte(target))
}

func (c *cpioWriter) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return c.entry(name, cpioChar|uint32(perm.Perm()), 1, major, minor, nil)
}

// Close writes the trailer; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.ino = 0
	return c.record("TRAILER!!!", 0, 1, 0, 0, nil)
}

// Has reports whether name was written already.
func (c *cpioWriter) Has(name string) bool { return c.names[name] }

func (c *cpioWriter) entry(name string, mode, nlink, major, minor uint32, data []byte) error {
	if name == "" || strings.HasPrefix(name, "/") || name == "TRAILER!!!" {
		return fmt.Errorf("cpio: bad name %q", name)
	}
	if c.names[name] {
		return fmt.Errorf("cpio: %s written twice", name)
	}
	c.names[name] = true
	c.ino++
	return c.record(name, mode, nlink, major, minor, data)
}

func (c *cpioWriter) record(name string, mode, nlink, major, minor uint32, data []byte) error {
	if uint64(len(data)) > 0xffffffff {
		return fmt.Errorf("cpio: %s is larger than 4 GiB", name)
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return nil
}

func (c *cpioWriter) pad() error {
	var zero [3]byte
	return c.write(zero[:(4-c.off%4)%4])
}
