package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecValidate(t *testing.T) {
	ok := Spec{ID: "web-1", Args: []string{"sh"}}
	tests := []struct {
		name    string
		edit    func(*Spec)
		wantErr string
	}{
		{"valid", func(*Spec) {}, ""},
		{"empty ID", func(s *Spec) { s.ID = "" }, "ID"},
		{"slash in ID", func(s *Spec) { s.ID = "a/b" }, "ID"},
		{"dot ID", func(s *Spec) { s.ID = ".." }, "ID"},
		{"long ID", func(s *Spec) { s.ID = strings.Repeat("a", 129) }, "ID"},
		{"no args", func(s *Spec) { s.Args = nil }, "Args"},
		{"empty command", func(s *Spec) { s.Args = []string{""} }, "Args"},
		{"NUL arg", func(s *Spec) { s.Args = []string{"sh", "a\x00b"} }, "Args[1]"},
		{"env without =", func(s *Spec) { s.Env = []string{"FOO"} }, "Env[0]"},
		{"env empty key", func(s *Spec) { s.Env = []string{"=x"} }, "Env[0]"},
		{"relative cwd", func(s *Spec) { s.Cwd = "tmp" }, "Cwd"},
		{"bad hostname", func(s *Spec) { s.Hostname = "a b" }, "Hostname"},
		{"relative cgroup", func(s *Spec) { s.CgroupsPath = "nexus/a" }, "CgroupsPath"},
		{"cgroup root", func(s *Spec) { s.CgroupsPath = "/" }, "CgroupsPath"},
		{"cgroup ..", func(s *Spec) { s.CgroupsPath = "/nexus/../a" }, "CgroupsPath"},
		{"tiny cpu", func(s *Spec) { s.CPUMilli = 5 }, "CPUMilli"},
		{"relative netns", func(s *Spec) { s.NetNSPath = "netns" }, "NetNSPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			err := s.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want error mentioning %q", err, tt.wantErr)
			}
			if err := WriteBundle(t.TempDir(), s); (err == nil) != (tt.wantErr == "") {
				t.Errorf("WriteBundle() = %v", err)
			}
		})
	}
}

func TestWriteBundle(t *testing.T) {
	dir := t.TempDir()
	s := Spec{
		ID: "imvu042_web", Args: []string{"httpd", "-f"}, Env: []string{"A=1"},
		CgroupsPath: "/nexus/imvu042/web", CPUMilli: 500, MemoryBytes: 64 << 20, Pids: 100,
		NetNSPath: "/run/netns/imvu042", ReadonlyRootfs: true,
	}
	if err := WriteBundle(dir, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "rootfs")); err != nil || !fi.IsDir() {
		t.Fatalf("rootfs: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c specs.Spec
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.Version != "1.0.2" || c.Root.Path != "rootfs" || !c.Root.Readonly {
		t.Errorf("version %q root %+v", c.Version, c.Root)
	}
	if c.Hostname != "imvu042-web" {
		t.Errorf("hostname derived from ID = %q", c.Hostname)
	}
	if !slices.Equal(c.Process.Env, []string{defaultPath, "A=1"}) || c.Process.Cwd != "/" {
		t.Errorf("env %v cwd %q", c.Process.Env, c.Process.Cwd)
	}
	if !c.Process.NoNewPrivileges || c.Process.User.UID != 0 {
		t.Error("want noNewPrivileges as root")
	}
	caps := c.Process.Capabilities
	for _, banned := range []string{"CAP_NET_RAW", "CAP_MKNOD", "CAP_SYS_ADMIN"} {
		if slices.Contains(caps.Bounding, banned) || slices.Contains(caps.Effective, banned) {
			t.Errorf("%s granted", banned)
		}
	}
	if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 || len(caps.Bounding) != 12 {
		t.Errorf("capabilities %+v", caps)
	}
	r := c.Linux.Resources
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 || r.Pids.Limit != 100 {
		t.Errorf("resources %+v", r)
	}
	if len(r.Devices) != 1 || r.Devices[0].Allow {
		t.Errorf("devices %+v, want deny all (runc adds its defaults)", r.Devices)
	}
	if c.Linux.CgroupsPath != "/nexus/imvu042/web" {
		t.Errorf("cgroupsPath %q", c.Linux.CgroupsPath)
	}
	var ns []string
	for _, n := range c.Linux.Namespaces {
		ns = append(ns, string(n.Type))
		if n.Type == specs.NetworkNamespace && n.Path != "/run/netns/imvu042" {
			t.Errorf("network namespace path %q", n.Path)
		}
	}
	for _, want := range []string{"pid", "mount", "uts", "ipc", "network"} {
		if !slices.Contains(ns, want) {
			t.Errorf("namespaces %v lack %s", ns, want)
		}
	}
	if c.Linux.Sysctl != nil {
		t.Errorf("sysctl %v set on a joined network namespace", c.Linux.Sysctl)
	}
	if !slices.Contains(c.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(c.Linux.ReadonlyPaths, "/proc/sys") {
		t.Error("masked/readonly paths missing")
	}
	if len(c.Process.Rlimits) != 1 || c.Process.Rlimits[0].Type != "RLIMIT_NOFILE" {
		t.Errorf("rlimits %+v", c.Process.Rlimits)
	}
}
