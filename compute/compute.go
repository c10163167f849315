// Package compute owns an IMVU's workloads: the containers and VMs the ledger
// says it runs, their snapshots, and the action kinds that change them
// (compute.run, .start, .stop, .rm, .exec, .snapshot, .rollback). Package
// compute/cgroup holds the envelopes as kernel ceilings, compute/oci and
// compute/vm the drivers; the Supervisor here makes the machine match the
// derived state, and meters what the workloads use.
//
// Workload state is derived from the ledger like all state: this package
// changes it only inside an applier the engine runs, and the Supervisor never
// starts, stops or snapshots a workload the state does not ask for.
package compute

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"github.com/nexus-core/nexus/handshake"
	"github.com/nexus-core/nexus/identity"
)

// The kinds this package registers.
const (
	KindRun      = "compute.run"
	KindStart    = "compute.start"
	KindStop     = "compute.stop"
	KindRemove   = "compute.rm"
	KindExec     = "compute.exec"
	KindSnapshot = "compute.snapshot"
	KindRollback = "compute.rollback"
	// KindRestore puts a staged archive of a workload's files (as an exit
	// bundle holds them) in place, with the snapshots it names (import).
	KindRestore = "compute.restore"
)

// Resource is the resource kind of workloads.
const Resource = "compute"

const key = "compute"

// Workload kinds.
const (
	Container = "container"
	VM        = "vm"
)

// Images a workload can be made from without a registry.
const (
	ImageBusybox = "busybox" // busybox-static with its applets
)

// Workload is one container or VM as the ledger left it: what to run, its
// share of the envelope, whether it should be running, and its snapshots.
type Workload struct {
	// What to run and its share, as compute.run asked (defaults filled in).
	RunParams
	// Running is what the owner asked for last; Generation counts every
	// (re)start the ledger asked for, so the supervisor can tell a new start
	// from one it already made.
	Running    bool   `json:"running"`
	Generation uint64 `json:"generation"`
	Created    uint64 `json:"created"` // ledger index of compute.run
	// Slot is the workload's place on its IMVU's network: its address is
	// the slot-th host address of the IMVU's prefix, past the gateway.
	Slot      uint32     `json:"slot"`
	Snapshots []Snapshot `json:"snapshots,omitempty"`
	// Rollback is the last rollback asked for; the supervisor applies each
	// one once.
	Rollback *Rollback `json:"rollback,omitempty"`
	// Restore is the archive of files an import put in place; the
	// supervisor unpacks it once, before the workload first starts here.
	Restore *Restore `json:"restore,omitempty"`
}

// Restore names a staged archive of a workload's folder.
type Restore struct {
	Blob  string `json:"blob"`
	Bytes uint64 `json:"bytes"`
	Index uint64 `json:"index"`
}

// Snapshot is a point a workload can be rolled back to.
type Snapshot struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"` // ledger index of compute.snapshot
}

// Rollback asks for a workload's files to be put back as a snapshot holds them.
type Rollback struct {
	Snapshot string `json:"snapshot"`
	Index    uint64 `json:"index"`
}

// VMOverhead is the memory qemu needs beside a VM's own: it is charged to
// the VM's cgroup, so the VM's demand and ceiling include it.
const VMOverhead = 96 << 20

// Demand is what the workload takes from its IMVU's envelope.
func (w *Workload) Demand() handshake.Resources {
	return handshake.Resources{CPUMilli: w.CPUMilli, MemoryBytes: w.MemoryCeiling(), Pids: w.Pids, DiskBytes: w.DiskBytes}
}

// MemoryCeiling is the memory limit of the workload's cgroup: a VM's memory
// and what qemu needs around it.
func (w *Workload) MemoryCeiling() uint64 {
	if w.Kind == VM {
		return w.MemoryBytes + VMOverhead
	}
	return w.MemoryBytes
}

// State is an IMVU's compute state, stored among its resources.
type State struct {
	Workloads map[string]*Workload `json:"workloads"`
}

// Names lists the workloads, sorted.
func (s State) Names() []string {
	out := make([]string, 0, len(s.Workloads))
	for n := range s.Workloads {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// freeSlot is the lowest slot no workload holds.
func (s State) freeSlot() uint32 {
	taken := map[uint32]bool{}
	for _, w := range s.Workloads {
		taken[w.Slot] = true
	}
	for n := uint32(1); ; n++ {
		if !taken[n] {
			return n
		}
	}
}

// Of returns the compute state of an IMVU.
func Of(m *handshake.IMVU) State {
	s := State{}
	if raw, ok := m.Resources[key]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	if s.Workloads == nil {
		s.Workloads = map[string]*Workload{}
	}
	return s
}

func load(tx *handshake.Tx) (State, error) {
	s := State{}
	if _, err := tx.Load(key, &s); err != nil {
		return s, err
	}
	if s.Workloads == nil {
		s.Workloads = map[string]*Workload{}
	}
	return s, nil
}

// RunParams create a workload and start it.
type RunParams struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Image       string   `json:"image"`
	Args        []string `json:"args,omitempty"`
	Env         []string `json:"env,omitempty"`
	CPUMilli    uint64   `json:"cpu_millicores"`
	MemoryBytes uint64   `json:"memory_bytes"`
	Pids        uint64   `json:"pids"`
	DiskBytes   uint64   `json:"disk_bytes"`
}

// NameParams name a workload (start, stop, rm).
type NameParams struct {
	Name string `json:"name"`
}

// ExecParams run a command inside a running container.
type ExecParams struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// RestoreParams name a staged archive of a workload's files and the
// snapshots it holds.
type RestoreParams struct {
	Name      string   `json:"name"`
	Blob      string   `json:"blob"` // SHA-256, hex, of the archive staged at /v1/blobs
	Bytes     uint64   `json:"bytes"`
	Snapshots []string `json:"snapshots,omitempty"`
}

// SnapshotParams name a workload and one of its snapshots.
type SnapshotParams struct {
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Defaults for a workload that names no share of the envelope.
const (
	DefaultCPUMilli = 500
	DefaultMemory   = 128 << 20
	DefaultPids     = 64
	DefaultDisk     = 256 << 20
	// MaxArgs bounds a command line, in bytes, so a run fits an action.
	MaxArgs = 16 << 10
)

// Register adds the compute resource and kinds to the engine.
func Register(e *handshake.Engine, exp handshake.Exporter, imp handshake.Importer) error {
	// Admins are listed so that G06 can ask for the owner's consent: without
	// the owner's co-signature an admin's attempt is denied and ledgered.
	roles := []identity.Role{identity.RoleOwner, identity.RoleMember, identity.RoleAdmin}
	kinds := []handshake.Kind{
		{Name: KindRun, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareRun, Apply: applyRun},
		{Name: KindStart, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareNamed, Apply: applyStart},
		{Name: KindStop, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareNamed, Apply: applyStop},
		{Name: KindRemove, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareNamed, Apply: applyRemove},
		{Name: KindExec, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareExec, Apply: applyExec},
		{Name: KindSnapshot, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareSnapshot, Apply: applySnapshot},
		{Name: KindRollback, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareSnapshot, Apply: applyRollback},
		{Name: KindRestore, Resource: Resource, Where: handshake.OnIMVU, Roles: roles, Prepare: prepareRestore, Apply: applyRestore},
	}
	return e.RegisterService(handshake.Resource{Name: Resource, Exporter: exp, Importer: imp}, kinds...)
}

func workloadName(imvu, name string) handshake.Name {
	return handshake.Name{Type: "workload", ID: imvu + "/" + name}
}

func prepareRun(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RunParams](r)
	if err != nil {
		return err
	}
	if !nameRE.MatchString(p.Name) {
		return fmt.Errorf("workload name %q: want a lowercase letter, then up to 30 of a-z 0-9 -", p.Name)
	}
	switch p.Kind {
	case "":
		p.Kind = Container
	case Container, VM:
	default:
		return fmt.Errorf("workload kind %q: want %q or %q", p.Kind, Container, VM)
	}
	if p.Image == "" {
		p.Image = ImageBusybox
	}
	if p.Image != ImageBusybox {
		return fmt.Errorf("image %q: this node builds %q only (no registry)", p.Image, ImageBusybox)
	}
	if p.Kind == Container && len(p.Args) == 0 {
		return fmt.Errorf("workload %s: a container needs a command", p.Name)
	}
	size := 0
	for _, a := range append(slices.Clone(p.Args), p.Env...) {
		size += len(a) + 1
	}
	if size > MaxArgs {
		return fmt.Errorf("workload %s: command and environment are %d bytes; at most %d", p.Name, size, MaxArgs)
	}
	p.CPUMilli = or(p.CPUMilli, DefaultCPUMilli)
	p.MemoryBytes = or(p.MemoryBytes, DefaultMemory)
	p.Pids = or(p.Pids, DefaultPids)
	p.DiskBytes = or(p.DiskBytes, DefaultDisk)
	if p.Kind == VM && p.MemoryBytes < 64<<20 {
		return fmt.Errorf("vm %s: %d bytes of memory; a VM needs at least 64Mi", p.Name, p.MemoryBytes)
	}
	name := workloadName(r.Action.Scope, p.Name)
	name.Use = handshake.Create
	r.Names = append(r.Names, name)
	r.Demand = (&Workload{RunParams: *p}).Demand()
	return nil
}

func or(v, def uint64) uint64 {
	if v == 0 {
		return def
	}
	return v
}

func applyRun(tx *handshake.Tx) error {
	p := tx.Params().(*RunParams)
	s, err := load(tx)
	if err != nil {
		return err
	}
	w := &Workload{RunParams: *p, Running: true, Generation: 1, Created: tx.Index(), Slot: s.freeSlot()}
	s.Workloads[p.Name] = w
	if err := tx.Bind(workloadName(tx.Action().Scope, p.Name)); err != nil {
		return err
	}
	m, err := tx.IMVU()
	if err != nil {
		return err
	}
	if m.Used, err = m.Used.Add(w.Demand()); err != nil {
		return err
	}
	return tx.Store(key, s)
}

// existing names a workload the IMVU must already have.
func existing(r *handshake.Request, name string) error {
	m := r.IMVU()
	if m == nil {
		return fmt.Errorf("no IMVU %s", r.Action.Scope)
	}
	if _, ok := Of(m).Workloads[name]; !ok && !r.Replay {
		return fmt.Errorf("no workload %s in %s", name, m.ID)
	}
	n := workloadName(r.Action.Scope, name)
	n.Use = handshake.Own
	r.Names = append(r.Names, n)
	return nil
}

func prepareNamed(r *handshake.Request) error {
	p, err := handshake.DecodeParams[NameParams](r)
	if err != nil {
		return err
	}
	return existing(r, p.Name)
}

// change applies fn to the named workload and stores the state.
func change(tx *handshake.Tx, name string, fn func(s State, w *Workload) error) error {
	s, err := load(tx)
	if err != nil {
		return err
	}
	w, ok := s.Workloads[name]
	if !ok {
		return fmt.Errorf("no workload %s", name)
	}
	if err := fn(s, w); err != nil {
		return err
	}
	return tx.Store(key, s)
}

func applyStart(tx *handshake.Tx) error {
	return change(tx, tx.Params().(*NameParams).Name, func(_ State, w *Workload) error {
		w.Running = true
		w.Generation++
		return nil
	})
}

func applyStop(tx *handshake.Tx) error {
	return change(tx, tx.Params().(*NameParams).Name, func(_ State, w *Workload) error {
		w.Running = false
		return nil
	})
}

func applyRemove(tx *handshake.Tx) error {
	name := tx.Params().(*NameParams).Name
	return change(tx, name, func(s State, w *Workload) error {
		delete(s.Workloads, name)
		m, err := tx.IMVU()
		if err != nil {
			return err
		}
		if m.Used, err = m.Used.Sub(w.Demand()); err != nil {
			return err
		}
		return tx.Unbind(workloadName(tx.Action().Scope, name))
	})
}

func prepareExec(r *handshake.Request) error {
	p, err := handshake.DecodeParams[ExecParams](r)
	if err != nil {
		return err
	}
	if len(p.Args) == 0 {
		return fmt.Errorf("exec in %s: no command", p.Name)
	}
	if m := r.IMVU(); m != nil && !r.Replay {
		if w, ok := Of(m).Workloads[p.Name]; ok && w.Kind != Container {
			return fmt.Errorf("exec in %s: only containers run commands on request; a VM has its own console", p.Name)
		}
	}
	return existing(r, p.Name)
}

// applyExec changes no state: the action is the ledgered permission for the
// command the API runs once the entry is durable.
func applyExec(*handshake.Tx) error { return nil }

var snapRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func prepareSnapshot(r *handshake.Request) error {
	p, err := handshake.DecodeParams[SnapshotParams](r)
	if err != nil {
		return err
	}
	if !snapRE.MatchString(p.Snapshot) {
		return fmt.Errorf("snapshot name %q: want 1-63 of a-z 0-9 . _ -", p.Snapshot)
	}
	if err := existing(r, p.Name); err != nil {
		return err
	}
	m := r.IMVU()
	if m == nil || r.Replay {
		return nil
	}
	w := Of(m).Workloads[p.Name]
	has := slices.ContainsFunc(w.Snapshots, func(s Snapshot) bool { return s.Name == p.Snapshot })
	switch r.Action.Kind {
	case KindSnapshot:
		if has {
			return fmt.Errorf("workload %s already has a snapshot %s", p.Name, p.Snapshot)
		}
	case KindRollback:
		if !has {
			return fmt.Errorf("workload %s has no snapshot %s", p.Name, p.Snapshot)
		}
	}
	return nil
}

func applySnapshot(tx *handshake.Tx) error {
	p := tx.Params().(*SnapshotParams)
	return change(tx, p.Name, func(_ State, w *Workload) error {
		w.Snapshots = append(w.Snapshots, Snapshot{Name: p.Snapshot, Index: tx.Index()})
		return nil
	})
}

func applyRollback(tx *handshake.Tx) error {
	p := tx.Params().(*SnapshotParams)
	return change(tx, p.Name, func(_ State, w *Workload) error {
		w.Rollback = &Rollback{Snapshot: p.Snapshot, Index: tx.Index()}
		w.Generation++
		return nil
	})
}

var blobRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func prepareRestore(r *handshake.Request) error {
	p, err := handshake.DecodeParams[RestoreParams](r)
	if err != nil {
		return err
	}
	if !blobRE.MatchString(p.Blob) {
		return fmt.Errorf("blob %q: want the SHA-256 (64 lower-case hex digits) of a staged archive", p.Blob)
	}
	for _, s := range p.Snapshots {
		if !snapRE.MatchString(s) {
			return fmt.Errorf("snapshot name %q: want 1-63 of a-z 0-9 . _ -", s)
		}
	}
	if err := existing(r, p.Name); err != nil {
		return err
	}
	if m := r.IMVU(); m != nil && !r.Replay {
		if w := Of(m).Workloads[p.Name]; p.Bytes > w.DiskBytes {
			return fmt.Errorf("workload %s: an archive of %d bytes does not fit its %d bytes of disk", p.Name, p.Bytes, w.DiskBytes)
		}
	}
	return nil
}

func applyRestore(tx *handshake.Tx) error {
	p := tx.Params().(*RestoreParams)
	return change(tx, p.Name, func(_ State, w *Workload) error {
		w.Restore = &Restore{Blob: p.Blob, Bytes: p.Bytes, Index: tx.Index()}
		w.Snapshots = nil
		for _, s := range p.Snapshots {
			w.Snapshots = append(w.Snapshots, Snapshot{Name: s, Index: tx.Index()})
		}
		w.Generation++
		return nil
	})
}
