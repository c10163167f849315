package compute

import (
	"time"

	"github.com/nexus-core/nexus/compute/cgroup"
)

// Resources the compute meter reports, as priced by the sheet.
const (
	UsageCPU    = "cpu_ms"    // CPU time, milliseconds
	UsageMemory = "mem_mib_s" // memory held, MiB-seconds
	UsageIO     = "io_bytes"  // bytes read from and written to disk
)

// meterAcc accumulates one IMVU's usage, read from its envelope cgroup (which
// includes every workload below it, gone ones too), since this process began.
type meterAcc struct {
	last  cgroup.Usage
	at    time.Time
	cpuNs uint64
	memMs uint64 // MiB-milliseconds
	io    uint64
}

// since is how much a counter rose; a counter lower than before means the
// cgroup was made anew, and counts from zero.
func since(now, before uint64) uint64 {
	if now < before {
		return now
	}
	return now - before
}

// sample reads every envelope cgroup once.
func (s *Supervisor) sample() {
	s.mu.Lock()
	imvus := sortedKeys(s.limits)
	s.mu.Unlock()
	now := time.Now()
	for _, id := range imvus {
		u, err := s.cfg.Cgroups.Usage(s.envelopePath(id))
		if err != nil {
			continue
		}
		s.mu.Lock()
		a := s.meters[id]
		if a == nil {
			// The first reading is the baseline: what was used before this
			// process watched was counted by the one before it.
			s.meters[id] = &meterAcc{last: u, at: now}
			s.mu.Unlock()
			continue
		}
		a.cpuNs += since(u.CPUNanos, a.last.CPUNanos)
		a.io += since(u.IOReadBytes, a.last.IOReadBytes) + since(u.IOWriteBytes, a.last.IOWriteBytes)
		a.memMs += (u.MemoryBytes >> 20) * uint64(now.Sub(a.at).Milliseconds())
		a.last, a.at = u, now
		s.mu.Unlock()
	}
}

// Usage is what the IMVUs used since this process started, by resource, for
// the compute meter.
func (s *Supervisor) Usage() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{UsageCPU: {}, UsageMemory: {}, UsageIO: {}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, a := range s.meters {
		out[UsageCPU][id] = a.cpuNs / 1e6
		out[UsageMemory][id] = a.memMs / 1000
		out[UsageIO][id] = a.io
	}
	return out
}
