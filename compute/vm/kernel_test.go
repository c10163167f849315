package vm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-core/nexus/internal/testenv"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.1.0-10-cloud-amd64", -1},
		{"vmlinuz-6.10.0-1-cloud-amd64", "vmlinuz-6.9.0-30-cloud-amd64", 1},
		{"vmlinuz-6.1.0-56-cloud-amd64", "vmlinuz-6.1.0-56-cloud-amd64", 0},
		{"vmlinuz", "vmlinuz-6.1.0-1-amd64", -1},
		{"vmlinuz-6.1.0-1-amd64", "vmlinuz-6.1.0-1-cloud-amd64", -1},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if sign(got) != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
		if back := compareVersions(tt.b, tt.a); sign(back) != -tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tt.b, tt.a, back, -tt.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestFindKernelIn(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string // "" for an error
	}{
		{"newest cloud", []string{"vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.1.0-10-cloud-amd64", "vmlinuz-6.5.0-1-amd64", "config-6.1.0-10-cloud-amd64"}, "vmlinuz-6.1.0-10-cloud-amd64"},
		{"any flavour", []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-12-amd64", "initrd.img-6.1.0-12-amd64"}, "vmlinuz-6.1.0-12-amd64"},
		{"plain", []string{"vmlinuz"}, "vmlinuz"},
		{"none", []string{"config-6.1.0-10-cloud-amd64"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := findKernel(dir)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("findKernel = %s, want an error", got)
				}
				return
			}
			if err != nil || got != filepath.Join(dir, tt.want) {
				t.Fatalf("findKernel = %q, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestDecodeLZ4Block(t *testing.T) {
	tests := []struct {
		name  string
		block []byte
		limit int
		want  []byte // nil: corrupt
	}{
		{"literals", append([]byte{0x50}, "hello"...), 64, []byte("hello")},
		{"overlapping match", []byte{0x22, 'a', 'b', 2, 0, 0x10, 'x'}, 64, []byte("ababababx")},
		{"long literal run", append([]byte{0xf0, 5}, bytes.Repeat([]byte("z"), 20)...), 64, bytes.Repeat([]byte("z"), 20)},
		{"long match", []byte{0x1f, 'a', 1, 0, 255, 1, 0x00}, 512, bytes.Repeat([]byte("a"), 276)},
		{"zero offset", []byte{0x10, 'a', 0, 0, 0x00}, 64, nil},
		{"offset before start", []byte{0x10, 'a', 2, 0, 0x00}, 64, nil},
		{"literals past the end", append([]byte{0x50}, "hell"...), 64, nil},
		{"output over the limit", []byte{0x1f, 'a', 1, 0, 255, 1, 0x00}, 100, nil},
		{"truncated offset", []byte{0x10, 'a', 1}, 64, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeLZ4Block(make([]byte, 0, tt.limit), tt.block)
			if tt.want == nil {
				if !errors.Is(err, errLZ4Corrupt) {
					t.Fatalf("got %q, %v; want errLZ4Corrupt", got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDecodeLZ4LegacyFrame(t *testing.T) {
	frame := binary.LittleEndian.AppendUint32(nil, lz4LegacyMagic)
	for _, block := range [][]byte{append([]byte{0x50}, "hello"...), {0x22, 'a', 'b', 2, 0, 0x10, 'x'}} {
		frame = binary.LittleEndian.AppendUint32(frame, uint32(len(block)))
		frame = append(frame, block...)
	}
	frame = binary.LittleEndian.AppendUint32(frame, 14) // the kernel's size trailer
	var out bytes.Buffer
	n, err := decodeLZ4Legacy(context.Background(), &out, frame)
	if err != nil || n != 14 || out.String() != "helloababababx" {
		t.Fatalf("decode = %q (%d), %v", out.String(), n, err)
	}
	if _, err := decodeLZ4Legacy(context.Background(), &out, []byte("not lz4")); err == nil {
		t.Fatal("decoded a frame without the magic")
	}
}

// TestDecodeLZ4AgainstCLI decodes what the lz4 tool writes with -l (the
// format the kernel build uses), across several 8 MiB blocks.
func TestDecodeLZ4AgainstCLI(t *testing.T) {
	lz4 := needBinary(t, "lz4", "lz4")
	r := rand.New(rand.NewPCG(1, 2))
	var data []byte
	for len(data) < 20<<20 {
		if r.IntN(2) == 0 {
			chunk := make([]byte, r.IntN(4096))
			for i := range chunk {
				chunk[i] = byte(r.Uint32())
			}
			data = append(data, chunk...)
		} else {
			data = append(data, bytes.Repeat([]byte{byte(r.Uint32()), byte(r.Uint32()), 'k'}, r.IntN(3000))...)
		}
	}
	cmd := exec.Command(lz4, "-l", "-c", "-9")
	cmd.Stdin = bytes.NewReader(data)
	compressed, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := decodeLZ4Legacy(context.Background(), &out, compressed)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("round trip through lz4 -l: got %d bytes, want %d", n, len(data))
	}
}

func TestTSCKHz(t *testing.T) {
	tests := []struct {
		cpuinfo string
		want    uint64 // 0: error
	}{
		{"processor\t: 0\ncpu MHz\t\t: 2596.122\ncache size\t: 1 KB\ncpu MHz\t\t: 1.0\n", 2596122},
		{"cpu MHz : 3000\n", 3000000},
		{"cpu MHz : 1999.5\n", 1999500},
		{"cpu MHz : 1999.98765\n", 1999987},
		{"processor : 0\n", 0},
		{"cpu MHz : fast\n", 0},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "cpuinfo")
		if err := os.WriteFile(p, []byte(tt.cpuinfo), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := tscKHz(p)
		if (err != nil) != (tt.want == 0) || got != tt.want {
			t.Errorf("tscKHz(%q) = %d, %v; want %d", tt.cpuinfo, got, err, tt.want)
		}
	}
}

func TestPrepareKernel(t *testing.T) {
	kernel, err := FindKernel()
	needIf(t, err == nil, "no kernel in /boot (Debian package linux-image-cloud-amd64): %v", err)
	ctx := context.Background()
	cache := t.TempDir()

	start := time.Now()
	out, err := PrepareKernel(ctx, kernel, cache)
	if err != nil {
		t.Fatal(err)
	}
	unpack := time.Since(start)
	data, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := bzImagePayload(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}) && !bytes.HasPrefix(payload, []byte{0x1f, 0x8b}) {
		if out != kernel {
			t.Fatalf("a kernel in a compression this package does not unpack became %s", out)
		}
		testenv.Missing(t, "%s is compressed with something other than LZ4 or gzip; nothing to unpack", kernel)
	}
	if out == kernel || filepath.Dir(out) != cache {
		t.Fatalf("PrepareKernel = %s, want a vmlinux in %s", out, cache)
	}
	if m, err := kernelMachine(out); err != nil || m != machineMicrovm {
		t.Fatalf("kernelMachine(%s) = %s, %v; want microvm", out, m, err)
	}
	if m, err := kernelMachine(kernel); err != nil || m != machinePC {
		t.Fatalf("kernelMachine(%s) = %s, %v; want pc", kernel, m, err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := binary.LittleEndian.Uint32(payload[len(payload)-4:]); uint32(fi.Size()) != want {
		t.Fatalf("vmlinux is %d bytes, the bzImage says %d", fi.Size(), want)
	}

	start = time.Now()
	again, err := PrepareKernel(ctx, kernel, cache)
	if err != nil || again != out {
		t.Fatalf("second PrepareKernel = %s, %v; want the cached %s", again, err, out)
	}
	t.Logf("%s: unpacked %d MiB in %v, cache hit in %v", filepath.Base(kernel), fi.Size()>>20, unpack, time.Since(start))

	if same, err := PrepareKernel(ctx, out, cache); err != nil || same != out {
		t.Fatalf("PrepareKernel of an ELF kernel = %s, %v; want it unchanged", same, err)
	}
	bogus := filepath.Join(t.TempDir(), "vmlinuz-bogus")
	if err := os.WriteFile(bogus, bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareKernel(ctx, bogus, cache); err == nil || !strings.Contains(err.Error(), "not a bzImage") {
		t.Fatalf("PrepareKernel of junk: %v, want not a bzImage", err)
	}
}

// TestPrepareKernelMatchesLZ4 compares the unpacked kernel with what the
// lz4 tool makes of the same payload.
func TestPrepareKernelMatchesLZ4(t *testing.T) {
	lz4 := needBinary(t, "lz4", "lz4")
	kernel, err := FindKernel()
	needIf(t, err == nil, "no kernel in /boot (Debian package linux-image-cloud-amd64): %v", err)
	data, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := bzImagePayload(data)
	if err != nil {
		t.Fatal(err)
	}
	needIf(t, bytes.HasPrefix(payload, []byte{0x02, 0x21, 0x4c, 0x18}), "%s is not LZ4-compressed", kernel)
	out, err := PrepareKernel(context.Background(), kernel, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lz4, "-d", "-c")
	cmd.Stdin = bytes.NewReader(payload[:len(payload)-4]) // without the size trailer
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("lz4 -d: %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the vmlinux differs from what lz4 -d unpacks")
	}
}
