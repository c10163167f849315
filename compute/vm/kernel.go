package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// FindKernel returns the newest Debian cloud kernel in /boot
// (vmlinuz-*-cloud-amd64), or failing that the newest vmlinuz of any
// flavour.
func FindKernel() (string, error) {
	return findKernel("/boot")
}

func findKernel(dir string) (string, error) {
	for _, pattern := range []string{"vmlinuz-*-cloud-amd64", "vmlinuz*"} {
		matches, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return "", fmt.Errorf("find kernel: %w", err)
		}
		matches = slices.DeleteFunc(matches, func(p string) bool {
			fi, err := os.Stat(p)
			return err != nil || !fi.Mode().IsRegular()
		})
		if len(matches) == 0 {
			continue
		}
		slices.SortFunc(matches, func(a, b string) int {
			return compareVersions(filepath.Base(a), filepath.Base(b))
		})
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("find kernel: no vmlinuz in %s", dir)
}

// compareVersions orders strings as version numbers: runs of digits compare
// by value ("6.1.0-10" after "6.1.0-9"), everything else byte by byte.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		ra, restA := versionRun(a)
		rb, restB := versionRun(b)
		if isDigit(ra[0]) && isDigit(rb[0]) {
			na, _ := strconv.ParseUint(ra, 10, 64)
			nb, _ := strconv.ParseUint(rb, 10, 64)
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
		} else if ra != rb {
			if ra < rb {
				return -1
			}
			return 1
		}
		a, b = restA, restB
	}
	return len(a) - len(b)
}

func versionRun(s string) (run, rest string) {
	digit := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == digit {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// PrepareKernel returns the kernel qemu should boot for vmlinuz. A bzImage
// with an LZ4 or gzip payload is unpacked to its ELF vmlinux, which boots
// on the faster microvm machine, and kept in cacheDir under a name derived
// from the SHA-256 of vmlinuz, so later calls cost one hash. A kernel that
// is already ELF, uses another compression, or has no PVH entry point is
// returned unchanged (Start boots it on the pc machine). A kernel without
// a PVH entry is unpacked again on every call.
func PrepareKernel(ctx context.Context, vmlinuz, cacheDir string) (string, error) {
	data, err := os.ReadFile(vmlinuz)
	if err != nil {
		return "", fmt.Errorf("prepare kernel: %w", err)
	}
	if bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return vmlinuz, nil
	}
	sum := sha256.Sum256(data)
	out := filepath.Join(cacheDir, "vmlinux-"+hex.EncodeToString(sum[:16]))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	payload, err := bzImagePayload(data)
	if err != nil {
		return "", fmt.Errorf("prepare kernel %s: %w", vmlinuz, err)
	}
	var unpack func(io.Writer) (int64, error)
	switch {
	case bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}):
		unpack = func(w io.Writer) (int64, error) { return decodeLZ4Legacy(ctx, w, payload) }
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		unpack = func(w io.Writer) (int64, error) {
			zr, err := gzip.NewReader(bytes.NewReader(payload))
			if err != nil {
				return 0, err
			}
			zr.Multistream(false)
			return io.Copy(w, zr)
		}
	default:
		return vmlinuz, nil // zstd, xz, ...: qemu's pc machine unpacks these itself
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("prepare kernel: %w", err)
	}
	tmp, err := os.CreateTemp(cacheDir, ".vmlinux-*")
	if err != nil {
		return "", fmt.Errorf("prepare kernel: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	n, err := unpack(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return "", fmt.Errorf("unpack kernel %s: %w", vmlinuz, err)
	}
	// Every compressed kernel ends with its uncompressed size (gzip's own
	// trailer, or four bytes the kernel build appends).
	if want := binary.LittleEndian.Uint32(payload[len(payload)-4:]); uint32(n) != want {
		return "", fmt.Errorf("unpack kernel %s: got %d bytes, the image says %d", vmlinuz, n, want)
	}
	if m, err := kernelMachine(tmp.Name()); err != nil {
		return "", fmt.Errorf("unpack kernel %s: %w", vmlinuz, err)
	} else if m != machineMicrovm {
		return vmlinuz, nil
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("prepare kernel: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("prepare kernel: %w", err)
	}
	return out, nil
}

// bzImagePayload returns the compressed kernel inside a bzImage, as
// described by its setup header (boot protocol 2.08 and later).
func bzImagePayload(data []byte) ([]byte, error) {
	if len(data) < 0x250 || string(data[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage")
	}
	if v := binary.LittleEndian.Uint16(data[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setup := int(data[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := uint64(setup+1)*512 + uint64(binary.LittleEndian.Uint32(data[0x248:]))
	end := start + uint64(binary.LittleEndian.Uint32(data[0x24c:]))
	if end > uint64(len(data)) || end-start < 8 {
		return nil, errors.New("payload outside the image")
	}
	return data[start:end], nil
}

const (
	machineMicrovm = "microvm"
	machinePC      = "pc"
)

// kernelMachine says which qemu machine boots the kernel at path: microvm
// for an ELF kernel with a PVH entry point, pc for everything else.
func kernelMachine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != elf.ELFMAG {
		return machinePC, nil
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", fmt.Errorf("read kernel %s: %w", path, err)
	}
	if hasPVHEntry(ef) {
		return machineMicrovm, nil
	}
	return machinePC, nil
}

// hasPVHEntry reports whether the ELF kernel carries the Xen
// XEN_ELFNOTE_PHYS32_ENTRY note qemu needs to boot it directly.
func hasPVHEntry(f *elf.File) bool {
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err != nil {
			continue
		}
		for len(notes) >= 12 {
			namesz := uint64(binary.LittleEndian.Uint32(notes[0:]))
			descsz := uint64(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + (namesz+3)&^3
			end := nameEnd + (descsz+3)&^3
			if end > uint64(len(notes)) {
				break
			}
			if typ == xenElfnotePhys32Entry && string(notes[12:12+namesz]) == "Xen\x00" {
				return true
			}
			notes = notes[end:]
		}
	}
	return false
}

// tscKHz reads the host's TSC frequency in kHz from the first "cpu MHz"
// line of cpuinfo. The guest's TSC ticks at the host's rate under tcg.
func tscKHz(cpuinfo string) (uint64, error) {
	f, err := os.Open(cpuinfo)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		whole, frac, _ := strings.Cut(strings.TrimSpace(v), ".")
		frac = (frac + "000")[:3]
		mhz, err1 := strconv.ParseUint(whole, 10, 32)
		khz, err2 := strconv.ParseUint(frac, 10, 32)
		if err1 != nil || err2 != nil || mhz == 0 {
			return 0, fmt.Errorf("bad cpu MHz line %q", s.Text())
		}
		return mhz*1000 + khz, nil
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no cpu MHz in " + cpuinfo)
}
