// Package cgroup owns the Linux control groups of Nexus workloads: one parent
// cgroup per IMVU (its envelope, a hard ceiling over everything the IMVU
// runs) and one child per workload (container or VM) beneath it.
//
// A [Host] is a cgroup mount, either the v1 layout (one hierarchy per
// controller under root/<controller>, as on hybrid hosts) or the unified v2
// layout. Paths are relative to that mount, like "nexus/imvu042" or
// "nexus/imvu042/web", and the same path names the cgroup in every v1
// hierarchy. [Limits] are applied with [Host.Create] and [Host.Set]; [Usage]
// is read back with [Host.Usage] and is hierarchical, so an envelope's usage
// includes its workloads'.
//
// The kernel enforces the limits; this package only writes and reads the
// control files. It never kills or moves a process it was not asked to
// ([Host.Kill], [Host.Join]), never touches a cgroup outside the paths it is
// given (paths may not contain ".." or start with "/"), never runs external
// commands, and keeps no package-level mutable state: a Host is immutable
// and safe for concurrent use.
//
// On v1, blkio throttling applies to direct and synchronous IO only;
// buffered writeback is not charged to the writer's cgroup (v2 does charge
// it). A child's CPU quota may not exceed its parent's on v1 (the kernel
// refuses); v2 allows it and enforces the smaller one.
package cgroup
