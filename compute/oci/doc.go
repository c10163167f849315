// Package oci owns what Nexus needs to run containers with an OCI runtime
// (runc) and no image registry: a busybox root filesystem shared read-only by
// an IMVU's workloads, an overlay per workload whose upper directory is the
// workload's own disk, snapshots of that upper directory, the bundle's
// config.json, and the runc calls that start, find, signal and delete
// containers.
//
// # Containers outlive the daemon
//
// [Runc.Run] starts each container as `runc run --keep` in the foreground,
// under a small /bin/sh shim in its own session. The daemon may exit or be
// killed -9: the shim, runc and the container carry on, and a new daemon
// finds the container again with [Runc.State], [Runc.List] or
// [Runc.Process]. When the container exits, runc exits with its status
// (128+signal when killed) and the shim writes it to a file, so exit codes
// survive daemon restarts too. The price is
// one resident runc process per running container (about 10 MiB RSS); the
// alternative, `runc run -d`, leaves the container's exit status to whoever
// reaps it (init, or a subreaper the daemon would have to be), which loses
// it across restarts. Start-up cost is the same as a bare `runc run`: see
// BenchmarkRunTrue.
//
// runc's own log goes to runc.log in the bundle. The pid files and the exit
// status go into runc's state directory for the container (Root/<id>), as
// nexus-*.pid and nexus-exit-status, and disappear with it on
// [Runc.Delete].
//
// # What it must never do
//
// It never pulls images, never gives a container more than the capability
// set and mounts [Spec.Config] documents, never mounts with the mount(8)
// command (only the mount(2) system call), and keeps no package-level
// mutable state. Snapshots of an upper directory are package archive's.
package oci
