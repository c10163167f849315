package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/archive"
	"github.com/nexus-core/nexus/compute/cgroup"
	"github.com/nexus-core/nexus/compute/oci"
	"github.com/nexus-core/nexus/compute/vm"
	"github.com/nexus-core/nexus/handshake"
)

// Viewer reads the engine's derived state.
type Viewer interface {
	View(fn func(*handshake.State) error) error
}

// Blobs hands out staged archives by digest (see api.Stager).
type Blobs interface {
	Open(imvu, digest string) (*os.File, error)
	Done(imvu, digest string) error
}

// Config holds a Supervisor's dependencies.
type Config struct {
	State Viewer
	Blobs Blobs
	// Root returns the IMVU's compute folder, DATA/imvu/<ID>/compute.
	Root func(imvu string) (string, error)
	// Run is the node's runtime folder: runc's state, VM sockets, the
	// prepared kernel.
	Run     string
	Cgroups *cgroup.Host
	// Slice is the cgroup under which every IMVU's envelope cgroup lives,
	// e.g. "nexus/<node>": distinct per node, so nodes on one host never
	// share a cgroup.
	Slice string
	Runc  *oci.Runc
	// NetNS returns the network namespace a workload joins; nil or "": a
	// namespace of its own with only loopback.
	NetNS  func(imvu, workload string) string
	Logger *slog.Logger
	// Every is how often the machine is compared with the state when
	// nothing was applied in between; 2 s if zero.
	Every time.Duration
}

// Supervisor makes the node's containers and VMs what the ledger says: it
// starts, stops, snapshots, rolls back and removes workloads after the
// actions that ask for it are durable, and only then. It also samples each
// IMVU's envelope cgroup for metering.
type Supervisor struct {
	cfg   Config
	kick  chan struct{}
	syncs chan chan struct{} // a pass asked for, closed when it is done

	mu     sync.Mutex
	runs   map[string]*run          // "imvu/name" -> what runs
	errs   map[string]string        // "imvu/name" -> why the last attempt failed
	meters map[string]*meterAcc     // imvu -> accumulated usage since this process started
	kernel string                   // prepared VM kernel, once
	limits map[string]cgroup.Limits // imvu -> envelope limits last written
	// disk is each workload's files and snapshots, measured by a pass at
	// most every diskEvery: ps reads it under the engine's lock, where
	// walking folders does not belong.
	disk   map[string]uint64
	diskAt time.Time
}

// diskEvery is how stale the disk use ps shows may be.
const diskEvery = 10 * time.Second

// run is one started workload.
type run struct {
	imvu, name string
	kind       string
	generation uint64
	proc       *oci.Process
	machine    *vm.Machine
	started    time.Time
	exited     bool
	exit       *int
	done       chan struct{} // closed when the run has ended
}

// NewSupervisor returns a supervisor; Run starts it.
func NewSupervisor(cfg Config) (*Supervisor, error) {
	switch {
	case cfg.State == nil || cfg.Root == nil || cfg.Cgroups == nil || cfg.Runc == nil:
		return nil, errors.New("compute supervisor: State, Root, Cgroups and Runc are required")
	case cfg.Run == "" || cfg.Slice == "":
		return nil, errors.New("compute supervisor: Run and Slice are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Every == 0 {
		cfg.Every = 2 * time.Second
	}
	if err := os.MkdirAll(filepath.Join(cfg.Run, "vm"), 0o700); err != nil {
		return nil, fmt.Errorf("compute supervisor: %w", err)
	}
	return &Supervisor{cfg: cfg, kick: make(chan struct{}, 1), syncs: make(chan chan struct{}), runs: map[string]*run{}, errs: map[string]string{},
		meters: map[string]*meterAcc{}, limits: map[string]cgroup.Limits{}, disk: map[string]uint64{}}, nil
}

// Notify asks for a pass soon; give it to Engine.Watch.
func (s *Supervisor) Notify(*handshake.State, string) {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends. Workloads keep running after it returns
// (and after the daemon exits); the next Run adopts them.
func (s *Supervisor) Run(ctx context.Context) {
	s.adopt(ctx)
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	var waiting chan struct{}
	for {
		s.Reconcile(ctx)
		if waiting != nil {
			close(waiting)
			waiting = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		case waiting = <-s.syncs:
		}
	}
}

// sync waits for a whole pass that starts after the call: the effects of
// every action applied before it are then done, in ledger order.
func (s *Supervisor) sync(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case s.syncs <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close removes the node's cgroup slice when no workload is left in it;
// running workloads keep it (they outlive the daemon).
func (s *Supervisor) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runs {
		if !r.exited {
			return nil
		}
	}
	if procs, err := s.cfg.Cgroups.Procs(s.cfg.Slice); err != nil || len(procs) > 0 {
		return err
	}
	return s.cfg.Cgroups.Remove(s.cfg.Slice)
}

// desired is one IMVU's compute as the state has it.
type desired struct {
	imvu      string
	envelope  handshake.Resources
	workloads map[string]Workload
}

func (s *Supervisor) desired() (map[string]desired, []string) {
	out := map[string]desired{}
	var exited []string
	s.cfg.State.View(func(st *handshake.State) error {
		for id, m := range st.IMVUs {
			if m.Status == handshake.StatusExited {
				exited = append(exited, id)
				continue
			}
			d := desired{imvu: id, envelope: m.Envelope, workloads: map[string]Workload{}}
			for name, w := range Of(m).Workloads {
				d.workloads[name] = *w
			}
			out[id] = d
		}
		return nil
	})
	return out, exited
}

func runKey(imvu, name string) string { return imvu + "/" + name }

// containerID names a workload to runc; the runc state folder is the node's own.
func containerID(imvu, name string) string { return imvu + "." + name }

func (s *Supervisor) envelopePath(imvu string) string { return s.cfg.Slice + "/" + imvu }

func (s *Supervisor) workloadPath(imvu, name string) string { return s.envelopePath(imvu) + "/" + name }

// Reconcile makes one pass: what should run runs, what should not does not.
func (s *Supervisor) Reconcile(ctx context.Context) {
	want, exited := s.desired()
	// What runs but is no longer asked for goes.
	s.mu.Lock()
	var gone []*run
	for _, r := range s.runs {
		d, ok := want[r.imvu]
		if _, still := d.workloads[r.name]; !ok || !still {
			gone = append(gone, r)
		}
	}
	s.mu.Unlock()
	for _, r := range gone {
		if err := s.remove(ctx, r.imvu, r.name); err != nil {
			s.cfg.Logger.Error("compute remove", "imvu", r.imvu, "workload", r.name, "err", err)
		}
	}
	for id, d := range want {
		if len(d.workloads) == 0 {
			s.dropEnvelope(id)
			continue
		}
		if err := s.ensureEnvelope(id, d.envelope); err != nil {
			s.cfg.Logger.Error("compute envelope", "imvu", id, "err", err)
			continue
		}
		for _, name := range sortedKeys(d.workloads) {
			w := d.workloads[name]
			err := s.reconcile(ctx, id, &w)
			s.mu.Lock()
			if err != nil {
				if s.errs[runKey(id, name)] != err.Error() {
					s.cfg.Logger.Error("compute", "imvu", id, "workload", name, "err", err)
				}
				s.errs[runKey(id, name)] = err.Error()
			} else {
				delete(s.errs, runKey(id, name))
			}
			s.mu.Unlock()
		}
	}
	s.removeOrphans(ctx, want)
	s.mu.Lock()
	left := sortedKeys(s.limits)
	s.mu.Unlock()
	for _, id := range left {
		if _, ok := want[id]; !ok {
			s.dropEnvelope(id) // the IMVU exited
		}
	}
	for _, id := range exited {
		s.purge(ctx, id)
	}
	s.sample()
	s.measureDisk(want)
}

// measureDisk refreshes the disk use of every workload, at most every
// diskEvery.
func (s *Supervisor) measureDisk(want map[string]desired) {
	if time.Since(s.diskAt) < diskEvery {
		return
	}
	disk := map[string]uint64{}
	for id, d := range want {
		for name := range d.workloads {
			if dir, err := s.dir(id, name); err == nil {
				disk[runKey(id, name)] = diskUsed(dir)
			}
		}
	}
	s.mu.Lock()
	s.disk, s.diskAt = disk, time.Now()
	s.mu.Unlock()
}

// purge removes an exited IMVU's compute folder once its workloads are gone.
func (s *Supervisor) purge(ctx context.Context, imvu string) {
	root, err := s.cfg.Root(imvu)
	if err != nil {
		return
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && e.Name() != dirBase {
			if err := s.remove(ctx, imvu, e.Name()); err != nil {
				s.cfg.Logger.Warn("compute purge", "imvu", imvu, "workload", e.Name(), "err", err)
				return
			}
		}
	}
	if err := os.RemoveAll(root); err != nil {
		s.cfg.Logger.Warn("compute purge", "imvu", imvu, "err", err)
		return
	}
	s.cfg.Logger.Info("purged exited IMVU compute", "imvu", imvu)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ensureEnvelope writes the IMVU's envelope as the ceiling over all its
// workloads.
func (s *Supervisor) ensureEnvelope(imvu string, env handshake.Resources) error {
	l := cgroup.Limits{CPUMilli: env.CPUMilli, MemoryBytes: env.MemoryBytes, Pids: env.Pids}
	if root, err := s.cfg.Root(imvu); err == nil && (env.IOBps != 0 || env.IOPS != 0) {
		if dev, err := cgroup.DeviceOf(filepath.Dir(root)); err == nil {
			l.IODevice = dev
			l.IOReadBps, l.IOWriteBps, l.IOReadIOPS, l.IOWriteIOPS = env.IOBps, env.IOBps, env.IOPS, env.IOPS
		}
	}
	s.mu.Lock()
	same := s.limits[imvu] == l
	s.mu.Unlock()
	if same {
		return nil
	}
	if err := s.cfg.Cgroups.Create(s.envelopePath(imvu), l); err != nil {
		return err
	}
	s.mu.Lock()
	s.limits[imvu] = l
	s.mu.Unlock()
	return nil
}

func (s *Supervisor) dropEnvelope(imvu string) {
	s.mu.Lock()
	_, had := s.limits[imvu]
	delete(s.limits, imvu)
	s.mu.Unlock()
	if had {
		if err := s.cfg.Cgroups.Remove(s.envelopePath(imvu)); err != nil {
			s.cfg.Logger.Warn("compute envelope", "imvu", imvu, "err", err)
		}
	}
}

// dir is the workload's folder.
func (s *Supervisor) dir(imvu, name string) (string, error) {
	root, err := s.cfg.Root(imvu)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, name), nil
}

// marker files record effects done once per ledger index.
func marker(dir, what string, index uint64) string {
	return filepath.Join(dir, ".done", what+"-"+strconv.FormatUint(index, 10))
}

func done(path string) bool { _, err := os.Stat(path); return err == nil }

func mark(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, nil, 0o600)
}

func (s *Supervisor) reconcile(ctx context.Context, imvu string, w *Workload) error {
	dir, err := s.dir(imvu, w.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	s.mu.Lock()
	r := s.runs[runKey(imvu, w.Name)]
	s.mu.Unlock()
	running := r != nil && !r.exited

	// An imported workload's files first, once.
	if w.Restore != nil && !done(marker(dir, "restore", w.Restore.Index)) {
		if running {
			if err := s.stop(ctx, r); err != nil {
				return err
			}
			running = false
		}
		if err := s.restore(ctx, imvu, dir, w); err != nil {
			return err
		}
	}
	// Snapshots the ledger holds that are not on disk yet.
	for _, snap := range w.Snapshots {
		if w.Restore != nil && snap.Index == w.Restore.Index {
			continue // came with the import
		}
		if done(marker(dir, "snapshot", snap.Index)) {
			continue
		}
		if err := s.snapshot(ctx, imvu, dir, w, snap.Name, r); err != nil {
			return fmt.Errorf("snapshot %s: %w", snap.Name, err)
		}
		if err := mark(marker(dir, "snapshot", snap.Index)); err != nil {
			return err
		}
	}
	if w.Rollback != nil && !done(marker(dir, "rollback", w.Rollback.Index)) {
		if running {
			if err := s.stop(ctx, r); err != nil {
				return err
			}
			running = false
		}
		if err := s.rollback(ctx, dir, w); err != nil {
			return fmt.Errorf("rollback to %s: %w", w.Rollback.Snapshot, err)
		}
		if err := mark(marker(dir, "rollback", w.Rollback.Index)); err != nil {
			return err
		}
	}
	switch {
	case w.Running && (r == nil || r.generation != w.Generation):
		if running {
			if err := s.stop(ctx, r); err != nil {
				return err
			}
		}
		return s.start(ctx, imvu, dir, w)
	case !w.Running && running:
		return s.stop(ctx, r)
	}
	return nil
}

// restore unpacks an import's archive into the workload's folder.
func (s *Supervisor) restore(ctx context.Context, imvu, dir string, w *Workload) error {
	if s.cfg.Blobs == nil {
		return errors.New("restore: no staged data on this node")
	}
	f, err := s.cfg.Blobs.Open(imvu, w.Restore.Blob)
	if errors.Is(err, os.ErrNotExist) {
		return mark(marker(dir, "restore", w.Restore.Index)) // consumed before, or replayed elsewhere
	}
	if err != nil {
		return err
	}
	defer f.Close()
	// The archive replaces the workload's files: nothing may sit mounted
	// over them while they change.
	if err := oci.Unmount(filepath.Join(dir, dirBundle, "rootfs")); err != nil {
		return err
	}
	for _, d := range []string{dirUpper, dirWork, dirSnapshots} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	if err := archive.Extract(ctx, f, dir, archive.Options{Limit: int64(w.DiskBytes), Owners: true}); err != nil {
		return fmt.Errorf("restore %s: %w", w.Name, err)
	}
	if err := mark(marker(dir, "restore", w.Restore.Index)); err != nil {
		return err
	}
	for _, snap := range w.Snapshots {
		if err := mark(marker(dir, "snapshot", snap.Index)); err != nil {
			return err
		}
	}
	return s.cfg.Blobs.Done(imvu, w.Restore.Blob)
}

// diskUsed is what the workload keeps on disk: its files and snapshots.
func diskUsed(dir string) uint64 {
	var total uint64
	for _, p := range []string{filepath.Join(dir, dirUpper), filepath.Join(dir, dirSnapshots), filepath.Join(dir, fileDisk)} {
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
			n, _ := vm.DiskUsage(p)
			total += n
			continue
		}
		n, _ := oci.DiskUsage(p)
		total += n
	}
	return total
}

func (s *Supervisor) snapshot(ctx context.Context, imvu, dir string, w *Workload, name string, r *run) error {
	if used := diskUsed(dir); used >= w.DiskBytes {
		return fmt.Errorf("the workload already uses %d of its %d bytes of disk", used, w.DiskBytes)
	}
	if w.Kind == VM {
		disk := filepath.Join(dir, fileDisk)
		if r != nil && !r.exited && r.machine != nil {
			return r.machine.Snapshot(ctx, name)
		}
		if err := s.newDisk(ctx, disk, w.DiskBytes); err != nil {
			return err
		}
		return vm.Snapshot(ctx, disk, name)
	}
	id := containerID(imvu, w.Name)
	if r != nil && !r.exited {
		// Freeze the container so its files hold still while they are read.
		if err := s.cfg.Runc.Pause(ctx, id); err == nil {
			defer s.cfg.Runc.Resume(context.WithoutCancel(ctx), id)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, dirSnapshots), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(dir, dirSnapshots), ".take-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := os.MkdirAll(filepath.Join(dir, dirUpper), 0o755); err != nil {
		return err
	}
	err = archive.Write(ctx, filepath.Join(dir, dirUpper), tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if used := diskUsed(dir); used > w.DiskBytes {
		return fmt.Errorf("the snapshot would take the workload to %d of its %d bytes of disk", used, w.DiskBytes)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, dirSnapshots, name+".tar.gz"))
}

func (s *Supervisor) rollback(ctx context.Context, dir string, w *Workload) error {
	name := w.Rollback.Snapshot
	if w.Kind == VM {
		return vm.Rollback(ctx, filepath.Join(dir, fileDisk), name)
	}
	f, err := os.Open(filepath.Join(dir, dirSnapshots, name+".tar.gz"))
	if err != nil {
		return err
	}
	defer f.Close()
	merged := filepath.Join(dir, dirBundle, "rootfs")
	if err := oci.Unmount(merged); err != nil {
		return err
	}
	fresh := filepath.Join(dir, ".upper-rollback")
	os.RemoveAll(fresh)
	if err := archive.Extract(ctx, f, fresh, archive.Options{Owners: true}); err != nil {
		return err
	}
	if err := os.Chmod(fresh, 0o755); err != nil { // the overlay's root, as MountOverlay makes it
		return err
	}
	old := filepath.Join(dir, ".upper-old")
	os.RemoveAll(old)
	if err := os.Rename(filepath.Join(dir, dirUpper), old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(fresh, filepath.Join(dir, dirUpper)); err != nil {
		return err
	}
	os.RemoveAll(filepath.Join(dir, dirWork))
	return os.RemoveAll(old)
}

// newDisk gives a VM its empty qcow2 disk, copied from a template of that
// size made once per node: qemu-img costs tens of milliseconds a start.
func (s *Supervisor) newDisk(ctx context.Context, disk string, size uint64) error {
	if _, err := os.Stat(disk); err == nil {
		return nil
	}
	tpl := filepath.Join(s.cfg.Run, "vm", "empty-"+strconv.FormatUint(size, 10)+".qcow2")
	if _, err := os.Stat(tpl); err != nil {
		tmp := tpl + ".new"
		os.Remove(tmp)
		if err := vm.CreateDisk(ctx, tmp, size); err != nil {
			return err
		}
		if err := os.Rename(tmp, tpl); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(tpl)
	if err != nil {
		return err
	}
	return os.WriteFile(disk, b, 0o600)
}

// start starts the workload's current generation.
func (s *Supervisor) start(ctx context.Context, imvu, dir string, w *Workload) error {
	cg := s.workloadPath(imvu, w.Name)
	// runc makes a container's cgroup from its config (the same limits);
	// qemu must be born inside its cgroup, which therefore comes first.
	if w.Kind == VM {
		if err := s.cfg.Cgroups.Create(cg, cgroup.Limits{CPUMilli: w.CPUMilli, MemoryBytes: w.MemoryCeiling(), Pids: w.Pids}); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "generation"), []byte(strconv.FormatUint(w.Generation, 10)), 0o600); err != nil {
		return err
	}
	r := &run{imvu: imvu, name: w.Name, kind: w.Kind, generation: w.Generation, started: time.Now()}
	var err error
	if w.Kind == VM {
		r.machine, err = s.startVM(ctx, imvu, dir, w, cg)
	} else {
		r.proc, err = s.startContainer(ctx, imvu, dir, w, cg)
	}
	if err != nil {
		return err
	}
	s.watch(r)
	s.cfg.Logger.Info("compute started", "imvu", imvu, "workload", w.Name, "kind", w.Kind, "generation", w.Generation)
	return nil
}

// watch records the workload's exit when it comes.
func (s *Supervisor) watch(r *run) {
	r.done = make(chan struct{})
	s.mu.Lock()
	s.runs[runKey(r.imvu, r.name)] = r
	s.mu.Unlock()
	go func() {
		code := -1
		switch {
		case r.proc != nil:
			code, _ = r.proc.Wait()
		case r.machine != nil:
			if err := r.machine.Wait(); err == nil {
				code = 0
			}
		}
		s.mu.Lock()
		r.exited = true
		if code >= 0 {
			r.exit = &code
		}
		s.mu.Unlock()
		close(r.done)
		s.Notify(nil, "")
	}()
}

func (s *Supervisor) startContainer(ctx context.Context, imvu, dir string, w *Workload, cg string) (*oci.Process, error) {
	root, err := s.cfg.Root(imvu)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(root, dirBase)
	if _, err := os.Stat(filepath.Join(base, "bin", "busybox")); err != nil {
		if err := oci.BuildBusybox(base); err != nil {
			return nil, err
		}
	}
	upper, work, bundle := filepath.Join(dir, dirUpper), filepath.Join(dir, dirWork), filepath.Join(dir, dirBundle)
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	id := containerID(imvu, w.Name)
	if s.known(id) {
		s.cfg.Runc.Delete(ctx, id, true) // a previous generation's
	}
	netns := ""
	if s.cfg.NetNS != nil {
		netns = s.cfg.NetNS(imvu, w.Name)
	}
	spec := oci.Spec{ID: id, Args: w.Args, Env: w.Env, Hostname: w.Name, CgroupsPath: s.cfg.Cgroups.RuntimePath(cg),
		CPUMilli: w.CPUMilli, MemoryBytes: w.MemoryBytes, Pids: w.Pids, NetNSPath: netns}
	if err := oci.WriteBundle(bundle, spec); err != nil {
		return nil, err
	}
	if err := oci.MountOverlay(base, upper, work, filepath.Join(bundle, "rootfs")); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(dir, fileLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	return s.cfg.Runc.Run(ctx, id, bundle, out, out)
}

func (s *Supervisor) vmKernel(ctx context.Context) (string, error) {
	s.mu.Lock()
	k := s.kernel
	s.mu.Unlock()
	if k != "" {
		return k, nil
	}
	vmlinuz, err := vm.FindKernel()
	if err != nil {
		return "", err
	}
	k, err = vm.PrepareKernel(ctx, vmlinuz, filepath.Join(s.cfg.Run, "vm"))
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.kernel = k
	s.mu.Unlock()
	return k, nil
}

func (s *Supervisor) qmpSocket(imvu, name string) string {
	return filepath.Join(s.cfg.Run, "vm", imvu+"."+name+".qmp")
}

func (s *Supervisor) startVM(ctx context.Context, imvu, dir string, w *Workload, cg string) (*vm.Machine, error) {
	kernel, err := s.vmKernel(ctx)
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "initrd.cpio.gz")
	var buf bytes.Buffer
	if err := vm.BuildInitramfs(&buf, vm.InitramfsOptions{Name: w.Name, Command: shellJoin(w.Args)}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(initrd, buf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	// Its disk holds its snapshots: live ones (RAM and devices) need it
	// attached.
	disk := filepath.Join(dir, fileDisk)
	if err := s.newDisk(ctx, disk, w.DiskBytes); err != nil {
		return nil, err
	}
	netns := ""
	if s.cfg.NetNS != nil {
		netns = s.cfg.NetNS(imvu, w.Name)
	}
	return vm.Start(ctx, vm.Config{Name: imvu + "." + w.Name, MemoryBytes: w.MemoryBytes, CPUs: 1, Kernel: kernel, Initrd: initrd, Disk: disk,
		SerialLog: filepath.Join(dir, fileLog), QMPSocket: s.qmpSocket(imvu, w.Name),
		CgroupProcs: s.cfg.Cgroups.ProcsFiles(cg), NetNSPath: netns})
}

// shellJoin quotes args into one shell command line; none: the VM idles.
func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}

// stop ends a workload: SIGTERM (the power button for a VM), then SIGKILL,
// then every process of its cgroup. It finishes even while the daemon shuts
// down, and never waits unbounded.
func (s *Supervisor) stop(ctx context.Context, r *run) error { return s.halt(ctx, r, 5*time.Second) }

// halt stops a workload, giving it grace to end on its own; a workload being
// removed gets none.
func (s *Supervisor) halt(ctx context.Context, r *run, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		switch {
		case r.machine != nil:
			r.machine.Wait()
		case r.proc != nil:
			r.proc.Wait()
		}
		close(done)
	}()
	waitFor := func(d time.Duration) bool {
		select {
		case <-done:
			return true
		case <-time.After(d):
			return false
		}
	}
	id := containerID(r.imvu, r.name)
	switch {
	case r.machine != nil:
		if grace > 0 {
			r.machine.Shutdown(ctx, grace)
		}
		if !waitFor(grace) {
			r.machine.Kill()
		}
	case r.proc != nil:
		if grace > 0 {
			s.cfg.Runc.Kill(ctx, id, syscall.SIGTERM)
		}
		if !waitFor(grace) {
			s.cfg.Runc.Kill(ctx, id, syscall.SIGKILL)
		}
	}
	if !waitFor(10 * time.Second) {
		s.cfg.Cgroups.Kill(ctx, s.workloadPath(r.imvu, r.name))
		if !waitFor(5 * time.Second) {
			return fmt.Errorf("workload %s/%s would not stop", r.imvu, r.name)
		}
	}
	s.mu.Lock()
	r.exited = true
	s.mu.Unlock()
	return nil
}

// remove stops a workload and deletes everything it had on this node.
func (s *Supervisor) remove(ctx context.Context, imvu, name string) error {
	s.mu.Lock()
	r := s.runs[runKey(imvu, name)]
	s.mu.Unlock()
	if r != nil && !r.exited {
		s.halt(ctx, r, 0)
	}
	if s.known(containerID(imvu, name)) {
		s.cfg.Runc.Delete(ctx, containerID(imvu, name), true)
	}
	cg := s.workloadPath(imvu, name)
	s.cfg.Cgroups.Kill(ctx, cg)
	if err := s.cfg.Cgroups.Remove(cg); err != nil {
		return err
	}
	dir, err := s.dir(imvu, name)
	if err != nil {
		return err
	}
	if err := oci.Unmount(filepath.Join(dir, dirBundle, "rootfs")); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	// Forgotten only once gone: a failed removal is tried again next pass.
	s.mu.Lock()
	delete(s.runs, runKey(imvu, name))
	delete(s.errs, runKey(imvu, name))
	s.mu.Unlock()
	return nil
}

// removeOrphans deletes workload folders on disk that no state names (the
// IMVU exited, or the workload was removed while the daemon was down).
func (s *Supervisor) removeOrphans(ctx context.Context, want map[string]desired) {
	// runc keeps a folder per container in its state directory: reading it
	// costs no runc process per pass.
	ents, err := os.ReadDir(s.cfg.Runc.Root)
	if err != nil {
		return
	}
	for _, e := range ents {
		imvu, name, ok := strings.Cut(e.Name(), ".")
		if !ok || !e.IsDir() {
			continue
		}
		if _, still := want[imvu].workloads[name]; still {
			continue
		}
		s.mu.Lock()
		_, tracked := s.runs[runKey(imvu, name)]
		s.mu.Unlock()
		if !tracked {
			if err := s.remove(ctx, imvu, name); err != nil {
				s.cfg.Logger.Warn("compute orphan", "container", e.Name(), "err", err)
			}
		}
	}
}

// known reports whether runc holds state for a container.
func (s *Supervisor) known(id string) bool {
	_, err := os.Stat(filepath.Join(s.cfg.Runc.Root, id))
	return err == nil
}

// adopt finds the workloads an earlier daemon started.
func (s *Supervisor) adopt(ctx context.Context) {
	want, _ := s.desired()
	for id, d := range want {
		for name, w := range d.workloads {
			dir, err := s.dir(id, name)
			if err != nil {
				continue
			}
			gen := uint64(0)
			if b, err := os.ReadFile(filepath.Join(dir, "generation")); err == nil {
				gen, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			}
			r := &run{imvu: id, name: name, kind: w.Kind, generation: gen}
			if w.Kind == VM {
				m, err := vm.Find(ctx, s.qmpSocket(id, name))
				if err != nil {
					continue
				}
				r.machine = m
			} else {
				p, err := s.cfg.Runc.Process(ctx, containerID(id, name))
				if err != nil {
					continue
				}
				r.proc = p
			}
			s.watch(r)
			s.cfg.Logger.Info("compute adopted", "imvu", id, "workload", name, "generation", gen)
		}
	}
}

// Exec runs an accepted compute.exec action in its container.
func (s *Supervisor) Exec(ctx context.Context, a *action.Action) (int, []byte, error) {
	var p ExecParams
	if err := a.Decode(&p); err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Effects happen in ledger order: a snapshot or rollback asked for
	// before this exec is done before the command runs.
	if err := s.sync(ctx); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	r := s.runs[runKey(a.Scope, p.Name)]
	running := r != nil && !r.exited && r.proc != nil
	s.mu.Unlock()
	if !running {
		return 0, nil, fmt.Errorf("workload %s is not a running container", p.Name)
	}
	out := &limited{max: 1 << 20}
	code, err := s.cfg.Runc.Exec(ctx, containerID(a.Scope, p.Name), p.Args, nil, out, out)
	return code, out.Bytes(), err
}

// limited keeps the first max bytes written to it.
type limited struct {
	bytes.Buffer
	mu  sync.Mutex
	max int
}

func (l *limited) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Status is ps for an IMVU: every workload the state names, with what runs.
func (s *Supervisor) Status(st *handshake.State, imvu string) []Status {
	m := st.IMVUs[imvu]
	if m == nil {
		return nil
	}
	c := Of(m)
	out := []Status{}
	for _, name := range c.Names() {
		w := c.Workloads[name]
		x := Status{Name: name, Kind: w.Kind, Want: "stopped", State: "stopped", CPUMilli: w.CPUMilli, Memory: w.MemoryBytes,
			Pids: w.Pids, Disk: w.DiskBytes}
		if w.Running {
			x.Want = "running"
		}
		for _, sn := range w.Snapshots {
			x.Snapshots = append(x.Snapshots, sn.Name)
		}
		s.mu.Lock()
		x.DiskUsed = s.disk[runKey(imvu, name)]
		if r := s.runs[runKey(imvu, name)]; r != nil {
			switch {
			case !r.exited:
				x.State = "running"
				if r.proc != nil {
					x.Pid = r.proc.Pid()
				} else if r.machine != nil {
					x.Pid = r.machine.Pid()
				}
			case r.exit != nil:
				x.State, x.Exit = "exited", r.exit
			default:
				x.State = "exited"
			}
		}
		x.Error = s.errs[runKey(imvu, name)]
		s.mu.Unlock()
		out = append(out, x)
	}
	return out
}

// Wait blocks until the workload's current run ends (or ctx does) and
// returns its exit status when known.
func (s *Supervisor) Wait(ctx context.Context, imvu, name string) (*int, error) {
	s.mu.Lock()
	r := s.runs[runKey(imvu, name)]
	s.mu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("workload %s/%s is not running here", imvu, name)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.exit, nil
}

// Logs returns the end of a workload's output.
func (s *Supervisor) Logs(imvu string, p LogsParams) (Logs, error) {
	if p.Bytes <= 0 {
		p.Bytes = 64 << 10
	}
	dir, err := s.dir(imvu, p.Name)
	if err != nil {
		return Logs{}, err
	}
	f, err := os.Open(filepath.Join(dir, fileLog))
	if errors.Is(err, os.ErrNotExist) {
		return Logs{Name: p.Name}, nil
	}
	if err != nil {
		return Logs{}, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > p.Bytes {
		f.Seek(fi.Size()-p.Bytes, io.SeekStart)
	}
	b, err := io.ReadAll(io.LimitReader(f, p.Bytes))
	return Logs{Name: p.Name, Log: string(b)}, err
}
