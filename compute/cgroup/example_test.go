package cgroup_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/compute/cgroup"
)

// An IMVU's envelope and one workload beneath it. The example runs against
// a directory laid out like a cgroup2 mount; on a host, use cgroup.Detect.
func ExampleHost_Create() {
	root, err := os.MkdirTemp("", "cgroup-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu io memory pids"), 0o644); err != nil {
		log.Fatal(err)
	}
	h, err := cgroup.Open(root, 2)
	if err != nil {
		log.Fatal(err)
	}

	envelope := cgroup.Limits{CPUMilli: 2000, MemoryBytes: 2 << 30, Pids: 512}
	if err := h.Create("nexus/imvu042", envelope); err != nil {
		log.Fatal(err)
	}
	if err := h.Create("nexus/imvu042/web", cgroup.Limits{CPUMilli: 500}); err != nil {
		log.Fatal(err)
	}
	cpu, _ := os.ReadFile(filepath.Join(root, "nexus/imvu042/web/cpu.max"))
	fmt.Printf("cpu.max: %s\n", cpu)
	fmt.Println("runc cgroupsPath:", h.RuntimePath("nexus/imvu042/web"))
	// Output:
	// cpu.max: 50000 100000
	// runc cgroupsPath: /nexus/imvu042/web
}
