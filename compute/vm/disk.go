package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// snapshotName keeps snapshot names to one word that cannot be mistaken
// for a qcow2 snapshot ID (qemu matches either) or split a monitor command.
var snapshotName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

func checkSnapshotName(name string) error {
	if !snapshotName.MatchString(name) {
		return fmt.Errorf("bad snapshot name %q: want a letter, then up to 63 letters, digits, '_', '.' or '-'", name)
	}
	return nil
}

// CreateDisk creates a qcow2 disk of sizeBytes at path. It refuses to
// replace an existing file. The file starts small and grows as the guest
// writes and as snapshots are taken.
func CreateDisk(ctx context.Context, path string, sizeBytes uint64) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	if sizeBytes == 0 || sizeBytes%512 != 0 {
		return fmt.Errorf("create disk %s: size %d is not a positive multiple of 512", path, sizeBytes)
	}
	// qemu-img create truncates what is there: create under a temporary
	// name and link it into place, which fails if path exists.
	tmp := filepath.Join(filepath.Dir(abs), fmt.Sprintf(".%s.%d.tmp", filepath.Base(abs), os.Getpid()))
	defer os.Remove(tmp)
	if _, err := qemuImg(ctx, "create", "-q", "-f", "qcow2", tmp, strconv.FormatUint(sizeBytes, 10)); err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	if err := os.Link(tmp, abs); err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	return nil
}

// Snapshot records the current state of the disk of a stopped VM as the
// internal snapshot name. For a running VM use Machine.Snapshot.
func Snapshot(ctx context.Context, disk, name string) error {
	return snapshotCmd(ctx, "-c", "snapshot", disk, name)
}

// Rollback returns the disk of a stopped VM to the snapshot name, which
// stays available. For a running VM use Machine.Rollback.
func Rollback(ctx context.Context, disk, name string) error {
	return snapshotCmd(ctx, "-a", "roll back", disk, name)
}

// DeleteSnapshot removes the snapshot name from the disk of a stopped VM.
// For a running VM use Machine.DeleteSnapshot.
func DeleteSnapshot(ctx context.Context, disk, name string) error {
	return snapshotCmd(ctx, "-d", "delete snapshot of", disk, name)
}

func snapshotCmd(ctx context.Context, flag, what, disk, name string) error {
	if err := checkSnapshotName(name); err != nil {
		return fmt.Errorf("%s %s: %w", what, disk, err)
	}
	abs, err := filepath.Abs(disk)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, disk, err)
	}
	if _, err := qemuImg(ctx, "snapshot", "-q", flag, name, abs); err != nil {
		return fmt.Errorf("%s %s as %s: %w", what, disk, name, err)
	}
	return nil
}

// Snapshots lists the names of the disk's internal snapshots, oldest
// first. It also reads the disk of a running VM (without taking its lock),
// where a snapshot being taken at that moment may be missing.
func Snapshots(ctx context.Context, disk string) ([]string, error) {
	info, err := diskInfo(ctx, disk)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", disk, err)
	}
	names := make([]string, 0, len(info.Snapshots))
	for _, s := range info.Snapshots {
		names = append(names, s.Name)
	}
	return names, nil
}

// DiskUsage returns the bytes allocated on the host for the file at path:
// for a qcow2 disk, what the guest wrote plus its snapshots, not its
// virtual size.
func DiskUsage(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("disk usage: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("disk usage of %s: no block count", path)
	}
	return uint64(st.Blocks) * 512, nil
}

type imageInfo struct {
	Format          string `json:"format"`
	VirtualSize     uint64 `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	Snapshots       []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"snapshots"`
}

func diskInfo(ctx context.Context, disk string) (imageInfo, error) {
	abs, err := filepath.Abs(disk)
	if err != nil {
		return imageInfo{}, err
	}
	out, err := qemuImg(ctx, "info", "-U", "--output=json", abs)
	if err != nil {
		return imageInfo{}, err
	}
	var info imageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return imageInfo{}, fmt.Errorf("qemu-img info: %w", err)
	}
	return info, nil
}

// qemuImg runs qemu-img and returns its output; its error carries
// qemu-img's message.
func qemuImg(ctx context.Context, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("qemu-img %s: %w: %s", args[0], err, msg)
		}
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("qemu-img: %w (install qemu-utils)", err)
		}
		return nil, fmt.Errorf("qemu-img %s: %w", args[0], err)
	}
	return out, nil
}
