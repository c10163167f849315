package compute

// Queries this package answers (through the API's views).
const (
	QueryPs   = "compute.ps"
	QueryLogs = "compute.logs"
)

// Status is a workload as ps shows it: what the ledger asks for beside what
// the machine runs.
type Status struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Want      string   `json:"want"`  // running or stopped: the ledger's word
	State     string   `json:"state"` // running, stopped, exited, failed, unknown
	Pid       int      `json:"pid,omitempty"`
	Exit      *int     `json:"exit,omitempty"`
	Error     string   `json:"error,omitempty"` // why the supervisor could not make it so
	Snapshots []string `json:"snapshots,omitempty"`
	CPUMilli  uint64   `json:"cpu_millicores"`
	Memory    uint64   `json:"memory_bytes"`
	Pids      uint64   `json:"pids"`
	Disk      uint64   `json:"disk_bytes"`
	DiskUsed  uint64   `json:"disk_used_bytes"` // files and snapshots, measured every 10 s
}

// LogsParams ask for the end of a workload's log.
type LogsParams struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes,omitempty"` // from the end; 0: 64 KiB
}

// Logs is a workload's log, or its end.
type Logs struct {
	Name string `json:"name"`
	Log  string `json:"log"`
}
