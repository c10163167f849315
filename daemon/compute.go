package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/api"
	"github.com/nexus-core/nexus/compute"
	"github.com/nexus-core/nexus/compute/cgroup"
	"github.com/nexus-core/nexus/compute/oci"
	"github.com/nexus-core/nexus/handshake"
)

// nodeID tells this node's kernel objects from another node's on the same
// host: a short hash of its ledger verifier key.
func (n *Node) nodeID() string {
	b, _ := os.ReadFile(n.Dir.VerifierKey())
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// startCompute makes the workload supervisor; runCompute starts it after
// replay, since it reads the derived state.
func (n *Node) startCompute() error {
	if !n.Config.Compute.Enabled {
		return nil
	}
	cg, err := cgroup.Detect()
	if err != nil {
		return fmt.Errorf("compute: %w (set compute.enabled = false to run without workloads)", err)
	}
	run := filepath.Join(n.Dir.Root(), "run")
	sup, err := compute.NewSupervisor(compute.Config{State: n.Engine, Blobs: n.blobs, Root: imvuFolder(n.Dir, "compute"), Run: run,
		Cgroups: cg, Slice: "nexus/" + n.nodeID(), Runc: &oci.Runc{Root: filepath.Join(run, "runc")},
		NetNS: n.netNS, Logger: n.logger.With("part", "compute")})
	if err != nil {
		return err
	}
	n.compute = sup
	return nil
}

func (n *Node) runCompute(ctx context.Context) {
	if n.compute == nil {
		return
	}
	n.Engine.Watch(n.compute.Notify)
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.compute.Run(ctx) }()
	go func() {
		defer n.wg.Done()
		n.newMeter("compute", n.Config.Compute.MeterEvery.Duration, n.compute.Usage).run(ctx)
	}()
}

// computeViews answer ps and logs for an IMVU's owner and members.
func (n *Node) computeViews() map[string]api.View {
	if n.compute == nil {
		return nil
	}
	return map[string]api.View{
		compute.QueryPs: func(_ context.Context, st *handshake.State, q *action.Query) (any, error) {
			if err := q.Decode(&struct{}{}); err != nil {
				return nil, err
			}
			return n.compute.Status(st, q.Scope), nil
		},
		compute.QueryLogs: func(_ context.Context, _ *handshake.State, q *action.Query) (any, error) {
			var p compute.LogsParams
			if err := q.Decode(&p); err != nil {
				return nil, err
			}
			return n.compute.Logs(q.Scope, p)
		},
	}
}

// execer runs compute.exec actions, when workloads run here.
func (n *Node) execer() api.Execer {
	if n.compute == nil {
		return nil
	}
	return n.compute
}
