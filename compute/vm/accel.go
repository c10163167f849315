package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Accelerator is the qemu accelerator chosen for this host, and why.
type Accelerator struct {
	Name   string // "kvm" or "tcg", as given to qemu's -accel
	Reason string // one line for logs and status pages
}

// Accel chooses the accelerator for VMs on this host: kvm when /dev/kvm is
// usable real KVM, tcg (software emulation) otherwise. It errors only when
// the host cannot be inspected.
func Accel() (Accelerator, error) {
	return detectAccel("/")
}

// detectAccel is Accel with the file system rooted at root, for tests.
func detectAccel(root string) (Accelerator, error) {
	// kvm_pvm opens and answers like KVM, but stock guest kernels hang or
	// die of emulation failures under it (see doc.go), and qemu's
	// "kvm:tcg" fallback does not trigger, so it must be ruled out here.
	pvm := filepath.Join(root, "sys/module/kvm_pvm")
	switch _, err := os.Stat(pvm); {
	case err == nil:
		return Accelerator{"tcg", "/dev/kvm is nested PVM (kvm_pvm loaded), which stock kernels do not boot under"}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Accelerator{}, fmt.Errorf("detect accelerator: %w", err)
	}
	dev := filepath.Join(root, "dev/kvm")
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	switch {
	case err == nil:
		f.Close()
		return Accelerator{"kvm", "/dev/kvm is usable"}, nil
	case errors.Is(err, fs.ErrNotExist):
		return Accelerator{"tcg", "no /dev/kvm"}, nil
	case errors.Is(err, fs.ErrPermission):
		return Accelerator{"tcg", "no permission to open /dev/kvm"}, nil
	default:
		return Accelerator{"tcg", fmt.Sprintf("cannot open /dev/kvm: %v", err)}, nil
	}
}
