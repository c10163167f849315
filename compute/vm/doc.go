// Package vm runs tenant virtual machines with qemu.
//
// It owns the qemu side of a VM: choosing the accelerator (Accel), the guest
// kernel (FindKernel, PrepareKernel), a minimal busybox initramfs
// (BuildInitramfs), qcow2 disks and their internal snapshots (CreateDisk,
// Snapshot, Rollback), and the qemu process itself (Start, Find, Machine).
// It never decides whether a VM may run, how large it may be or which
// envelope it belongs to: the caller passes the cgroups, the network
// namespace and the sizes, and this package only applies them. It never
// boots a disk with a backing file (which could point a guest at any host
// file), never moves a running qemu between cgroups, never stops a VM
// because the process that started it exits, and runs no programs but
// qemu-system-x86_64, qemu-img, /bin/sh (to join cgroups) and busybox (to
// list its applets). Start, Find and Machine are Linux-only.
//
// # Accelerators
//
// On a host with real KVM, qemu runs with -accel kvm. Where /dev/kvm is the
// nested PVM driver (kvm_pvm), stock kernels hang or crash under it while
// qemu reports no error, so Accel chooses software emulation (tcg) there;
// Accelerator.Reason says why.
//
// # Kernels and machines
//
// PrepareKernel unpacks a bzImage (LZ4 or gzip payload, in pure Go) into
// the uncompressed ELF vmlinux and caches it by content hash. An ELF kernel
// with a PVH entry boots on qemu's microvm machine; any other kernel boots
// on the pc machine. Under tcg on a 2-core VM the guest's first line comes
// after about 1.4 s on microvm and 1.8 s on pc (BenchmarkBoot). Under tcg
// on microvm the kernel's TSC calibration hangs unless tsc_early_khz is
// given, so Start adds it from the "cpu MHz" of /proc/cpuinfo (under tcg
// the guest reads the host's TSC; on a host whose cores change frequency
// that figure may not be the TSC's, and the guest clock is off by the
// difference).
//
// # Processes
//
// A VM is one qemu process in its own session, so it outlives the daemon
// that started it; Find locates it again from its QMP socket (the peer
// credentials of the socket give its pid, and qemu's command line its
// serial log). qemu serves one QMP client at a time, so no other client
// may stay connected. qemu joins the caller's cgroups before it executes its first
// instruction, so every page it touches is charged to them: on cgroup v2
// with a single cgroup through clone3's CLONE_INTO_CGROUP
// (SysProcAttr.UseCgroupFD), otherwise (cgroup v1, hybrid hosts, several
// hierarchies) through /bin/sh, which writes its own pid into each
// cgroup.procs file and then executes qemu in place. A network namespace is
// entered by the starting OS thread just for the fork, so qemu is born in
// it.
//
// # Snapshots
//
// Snapshots are qcow2 internal snapshots. For a stopped VM they are taken
// with qemu-img (which refuses while a qemu holds the image's write lock);
// for a running VM through QMP (savevm/loadvm/delvm by way of
// human-monitor-command), which pause the guest while its RAM is written
// or read: for an idle 256 MiB guest under tcg, about 90 ms to save, 130-210
// ms to load, and about 60 MiB more in the qcow2 file (DiskUsage).
//
// # Guest power-off
//
// Machine.Shutdown presses the ACPI power button and quits qemu after a
// grace period. A guest of BuildInitramfs honours the button only on the pc
// machine with the evdev and button modules loaded (Debian's cloud kernel
// builds both as modules, and has no driver for the GED device that carries
// the button on microvm); otherwise Shutdown quits it after the grace
// period. A VM whose command ends powers itself off.
package vm
