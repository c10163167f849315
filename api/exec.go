package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nexus-core/nexus/action"
	"github.com/nexus-core/nexus/handshake"
)

// PathExec runs a command in a workload: the body is a signed action of the
// kind ExecKind; the command runs only after the engine accepted and ledgered
// it, and its output comes back in the answer.
const PathExec = "/v1/exec"

// ExecKind is the action kind PathExec takes.
const ExecKind = "compute.exec"

// ExecResult is what an exec answers.
type ExecResult struct {
	Index  uint64 `json:"index"` // ledger index of the exec action
	Exit   int    `json:"exit"`
	Output []byte `json:"output"` // stdout and stderr, interleaved, bounded
}

// Execer runs an accepted exec action.
type Execer interface {
	Exec(ctx context.Context, a *action.Action) (exit int, output []byte, err error)
}

// View answers a service's read of an IMVU, for its owner and members (the
// reader's role was checked). It runs under the engine's read lock and must
// not call back into the engine.
type View func(ctx context.Context, st *handshake.State, q *action.Query) (any, error)

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var sa action.Signed
	if err := decodeBody(w, r, &sa); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	a, err := sa.Open()
	if err == nil && a.Kind != ExecKind {
		err = fmt.Errorf("action kind %q; %s takes %q", a.Kind, PathExec, ExecKind)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	res, ok := s.submit(w, r, &sa)
	if !ok {
		return
	}
	exit, out, err := s.cfg.Exec.Exec(r.Context(), a)
	if err != nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("exec (ledger index %d): %w", res.Index, err))
		return
	}
	writeJSON(w, http.StatusOK, ExecResult{Index: res.Index, Exit: exit, Output: out})
}

// Exec submits a signed compute.exec action and returns the command's result.
func (c *Client) Exec(ctx context.Context, sa *action.Signed) (ExecResult, error) {
	var out ExecResult
	b, err := json.Marshal(sa)
	if err != nil {
		return out, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+PathExec, bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("POST %s: %w", PathExec, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, remoteError(resp)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}
