package oci_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/compute/cgroup"
	"github.com/nexus-core/nexus/compute/oci"
)

// One workload of IMVU imvu042: a shared busybox lower layer, the
// workload's own upper layer, a bundle whose cgroup sits in the IMVU's
// envelope, and a container that outlives the daemon that started it.
func ExampleRunc_Run() {
	ctx := context.Background()
	data := "/var/lib/nexus/imvu/imvu042/compute"

	cg, err := cgroup.Detect()
	if err != nil {
		log.Fatal(err)
	}
	if err := cg.Create("nexus/imvu042", cgroup.Limits{CPUMilli: 2000, MemoryBytes: 1 << 30, Pids: 256}); err != nil {
		log.Fatal(err)
	}

	lower := filepath.Join(data, "rootfs")
	if err := oci.BuildBusybox(lower); err != nil {
		log.Fatal(err)
	}
	bundle := filepath.Join(data, "web/bundle")
	spec := oci.Spec{
		ID:          "imvu042-web",
		Args:        []string{"httpd", "-f", "-p", "8080"},
		CgroupsPath: cg.RuntimePath("nexus/imvu042/web"),
		MemoryBytes: 256 << 20,
	}
	if err := oci.WriteBundle(bundle, spec); err != nil {
		log.Fatal(err)
	}
	upper, work := filepath.Join(data, "web/upper"), filepath.Join(data, "web/work")
	if err := oci.MountOverlay(lower, upper, work, filepath.Join(bundle, "rootfs")); err != nil {
		log.Fatal(err)
	}

	logs, err := os.OpenFile(filepath.Join(data, "web/out.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer logs.Close()
	r := &oci.Runc{Root: "/var/lib/nexus/run/runc"}
	p, err := r.Run(ctx, spec.ID, bundle, logs, logs)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("running as pid", p.Pid())

	// After a restart, the daemon finds it again.
	p, err = r.Process(ctx, spec.ID)
	if err != nil {
		log.Fatal(err)
	}
	code, err := p.Wait()
	fmt.Println("exited", code, err)
	if err := r.Delete(ctx, spec.ID, false); err != nil {
		log.Fatal(err)
	}
	used, _ := oci.DiskUsage(upper)
	fmt.Println("disk used by the workload:", used)
}

func ExampleSpec_Config() {
	cfg, err := oci.Spec{ID: "imvu042-web", Args: []string{"httpd", "-f"}, CPUMilli: 500}.Config()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Version, cfg.Hostname, *cfg.Linux.Resources.CPU.Quota, *cfg.Linux.Resources.CPU.Period)
	fmt.Println(len(cfg.Process.Capabilities.Bounding), "capabilities, no new privileges:", cfg.Process.NoNewPrivileges)
	// Output:
	// 1.0.2 imvu042-web 50000 100000
	// 12 capabilities, no new privileges: true
}
