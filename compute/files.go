package compute

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/archive"
	"github.com/nexus-core/nexus/handshake"
)

// Layout of an IMVU's compute folder, DATA/imvu/<ID>/compute/:
//
//	base/                    the busybox root filesystem its containers share (read-only lower layer)
//	<name>/upper/            a container's own files (overlay upper layer)
//	<name>/work/             overlayfs scratch
//	<name>/bundle/           OCI bundle: config.json, rootfs/ (the overlay is mounted here)
//	<name>/snapshots/S.tar.gz a container snapshot: its upper layer as it was
//	<name>/disk.qcow2        a VM's disk; its snapshots are qcow2 internal snapshots
//	<name>/output.log        what the workload wrote (a VM's serial console)
//
// What leaves in an exit bundle is each workload's folder without the
// mounted root and the scratch: compute/<name>.tar.gz, and its OCI config as
// compute/<name>/config.json for reading without unpacking.
const (
	dirBase      = "base"
	dirUpper     = "upper"
	dirWork      = "work"
	dirBundle    = "bundle"
	dirSnapshots = "snapshots"
	fileDisk     = "disk.qcow2"
	fileLog      = "output.log"
)

// skipOnExport leaves out what is rebuilt on the other side.
func skipOnExport(rel string) bool {
	switch rel {
	case dirWork, dirBundle + "/rootfs", ".done", "generation":
		return true
	}
	return false
}

// Files exports and imports the files of an IMVU's workloads. Root returns
// the IMVU's compute folder, or "" where there is no data on disk (an offline
// verifier): then nothing is written, and the bundle's files are checked by
// its manifest hashes.
type Files struct {
	Root func(imvu string) (string, error)
}

// Export implements handshake.Exporter.
func (f Files) Export(ctx context.Context, _ *handshake.State, m *handshake.IMVU, dir string) error {
	if f.Root == nil {
		return nil
	}
	root, err := f.Root(m.ID)
	if err != nil || root == "" {
		return err
	}
	for _, name := range Of(m).Names() {
		src := filepath.Join(root, name)
		if _, err := os.Stat(src); err != nil {
			continue // never started here
		}
		if err := os.MkdirAll(filepath.Join(dir, "compute", name), 0o700); err != nil {
			return err
		}
		if cfg, err := os.ReadFile(filepath.Join(src, dirBundle, "config.json")); err == nil {
			if err := os.WriteFile(filepath.Join(dir, "compute", name, "config.json"), cfg, 0o600); err != nil {
				return err
			}
		}
		out, err := os.Create(filepath.Join(dir, "compute", name+".tar.gz"))
		if err != nil {
			return err
		}
		err = archive.WriteSkip(ctx, src, out, skipOnExport)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("export workload %s: %w", name, err)
		}
	}
	return nil
}

// Import implements handshake.Importer. Workloads come back on a new node
// through compute.run and compute.restore actions, whose staged archive the
// supervisor unpacks; there is nothing to copy here.
func (f Files) Import(context.Context, *handshake.State, *handshake.IMVU, string) error { return nil }
