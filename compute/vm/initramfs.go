package vm

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// InitramfsOptions describe the guest BuildInitramfs makes.
type InitramfsOptions struct {
	// Name is the guest's hostname and part of the default Marker.
	Name string
	// Marker is the line /init prints on the console once proc, sys and
	// devtmpfs are mounted; "NEXUS-VM-UP <Name>" if empty.
	Marker string
	// Command is a shell script run by /bin/sh once the marker is printed,
	// with the console as its output. When it ends, /init prints
	// "NEXUS-VM-EXIT <status>" and powers the VM off (qemu then exits 0).
	// Empty: the guest idles until it is shut down.
	Command string
	// Files are extra files (mode 0755), by absolute path in the guest;
	// their directories are created.
	Files map[string][]byte
	// Modules are kernel modules (host paths of .ko files, uncompressed,
	// built for the guest kernel) that /init loads with insmod, in this
	// order, before printing the marker: dependencies first. A virtio disk
	// on Debian's cloud kernel needs virtio_ring, virtio, virtio_mmio (on
	// microvm) or virtio_pci (on pc), then virtio_blk. With evdev and
	// button on the pc machine, the guest honours the ACPI power button
	// (Machine.Shutdown): busybox acpid sends SIGTERM to every process
	// (a Command that exits on it powers the guest off at once), then
	// syncs and powers off a second later regardless.
	Modules []string
	// Busybox is the statically linked busybox to include; /bin/busybox if
	// empty.
	Busybox string
}

var moduleName = regexp.MustCompile(`^[A-Za-z0-9_.-]+\.ko$`)

// ExitPrefix starts the line /init prints when Command ends, followed by
// the command's exit status.
const ExitPrefix = "NEXUS-VM-EXIT "

// BuildInitramfs writes a gzip-compressed newc cpio archive to w that boots
// into busybox: /bin/busybox with a symlink per applet, /dev/console, the
// options' files and modules, and an /init script as InitramfsOptions
// describes. Equal options give equal bytes.
func BuildInitramfs(w io.Writer, opts InitramfsOptions) error {
	if err := opts.validate(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	bb := opts.Busybox
	if bb == "" {
		bb = "/bin/busybox"
	}
	busybox, err := os.ReadFile(bb)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if err := checkStatic(busybox); err != nil {
		return fmt.Errorf("build initramfs: busybox %s: %w", bb, err)
	}
	applets, err := busyboxApplets(bb)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	c := newCPIOWriter(zw)
	mkdirs := func(name string) error {
		var parents []string
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for _, d := range slices.Backward(parents) {
			if !c.Has(d) {
				if err := c.Dir(d, 0o755); err != nil {
					return err
				}
			}
		}
		return nil
	}
	add := func(name string, data []byte) error {
		if err := mkdirs(name); err != nil {
			return err
		}
		return c.File(name, 0o755, data)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "etc", "proc", "sys", "tmp", "run", "root", "lib/modules"} {
		if err := mkdirs(d + "/x"); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	// The kernel opens /dev/console from the archive as init's stdio,
	// before devtmpfs is mounted.
	if err := c.CharDevice("dev/console", 0o600, 5, 1); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if err := add("bin/busybox", busybox); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	var modules []string
	for _, m := range opts.Modules {
		data, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		name := "lib/modules/" + filepath.Base(m)
		if err := add(name, data); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		modules = append(modules, "/"+name)
	}
	if opts.Command != "" {
		if err := add("etc/nexus/command", []byte(opts.Command)); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if err := add("etc/acpi/PWRF/00000080", []byte(powerButtonScript)); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Files)) {
		if err := add(strings.TrimPrefix(name, "/"), opts.Files[name]); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if err := add("init", initScript(opts, modules)); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	for _, a := range applets {
		if c.Has(a) {
			continue // a file of the caller's, or busybox itself
		}
		if err := mkdirs(a); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		if err := c.Symlink(a, "/bin/busybox"); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	return nil
}

func (o InitramfsOptions) marker() string {
	if o.Marker != "" {
		return o.Marker
	}
	return strings.TrimSpace("NEXUS-VM-UP " + o.Name)
}

func (o InitramfsOptions) validate() error {
	if strings.ContainsAny(o.Name, "\x00\n\r/ ") {
		return fmt.Errorf("bad name %q", o.Name)
	}
	if strings.ContainsAny(o.Marker, "\x00\n\r") {
		return errors.New("marker must be one line")
	}
	if strings.Contains(o.Command, "\x00") {
		return errors.New("command contains NUL")
	}
	seen := map[string]bool{}
	for _, m := range o.Modules {
		base := filepath.Base(m)
		if !moduleName.MatchString(base) || seen[base] {
			return fmt.Errorf("bad or repeated module %q", m)
		}
		seen[base] = true
	}
	for name := range o.Files {
		clean := path.Clean("/" + name)
		if clean != name || clean == "/" || clean == "/init" || strings.HasPrefix(clean, "/etc/nexus/") {
			return fmt.Errorf("bad file name %q: must be absolute, clean, and not /init or under /etc/nexus", name)
		}
	}
	return nil
}

// initScript is /init: pid 1 of the guest.
func initScript(o InitramfsOptions, modules []string) []byte {
	var b bytes.Buffer
	b.WriteString(`#!/bin/sh
# /init of a nexus VM (compute/vm.BuildInitramfs)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
`)
	if o.Name != "" {
		fmt.Fprintf(&b, "hostname %s\n", shellQuote(o.Name))
	}
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod %s || echo 'nexus-init: insmod %s failed'\n", m, m)
	}
	// acpid needs an input device for the power button (evdev and button
	// modules); without one there is nothing to listen to. Its default
	// log file is under /var/log, which does not exist. A press before it
	// has opened the devices is lost, so the marker waits for that (up to
	// a second).
	b.WriteString(`if [ -e /dev/input/event0 ]; then
	acpid -f -c /etc/acpi -l /dev/null &
	i=0
	until ls -l /proc/$!/fd 2>/dev/null | grep -q /dev/input || [ $i -ge 100 ]; do sleep 0.01; i=$((i+1)); done
fi
`)
	fmt.Fprintf(&b, "echo %s\n", shellQuote(o.marker()))
	if o.Command == "" {
		b.WriteString("while :; do sleep 3600; done\n")
		return b.Bytes()
	}
	fmt.Fprintf(&b, `/bin/sh /etc/nexus/command
echo "%s$?"
sync
poweroff -f
`, ExitPrefix)
	return b.Bytes()
}

// powerButtonScript is what acpid runs for the power button. kill -1
// reaches every process but init, which then finds its command ended.
const powerButtonScript = `#!/bin/sh
kill -TERM -1
sleep 1
sync
poweroff -f
`

// shellQuote quotes s as one word for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkStatic refuses a dynamically linked executable: the guest has no
// libraries.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (install busybox-static)")
		}
	}
	return nil
}

// busyboxApplets lists the applets of busybox as archive paths
// ("bin/sh", "usr/sbin/chroot", ...).
func busyboxApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var applets []string
	for _, line := range strings.Fields(string(out)) {
		a := path.Clean(strings.TrimPrefix(line, "/"))
		if a == "." || strings.HasPrefix(a, "..") || a == "init" || a == "linuxrc" {
			continue
		}
		applets = append(applets, a)
	}
	slices.Sort(applets)
	return applets, nil
}
