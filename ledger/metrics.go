package ledger

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Prometheus collectors of one Log. A nil *metrics records
// nothing, so a Log without a Registerer pays nothing.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	appended      prometheus.Counter
	commits       prometheus.Counter
	commitErrors  prometheus.Counter
	batchEntries  prometheus.Histogram
	commitSeconds prometheus.Histogram
	appendSeconds prometheus.Histogram
	treeSize      prometheus.Gauge
}

// newMetrics registers the Log's collectors with reg, labelled by origin so
// several logs can share a registry. It returns nil for a nil reg.
func newMetrics(reg prometheus.Registerer, origin string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := prometheus.Labels{"origin": origin}
	m := &metrics{
		reg: reg,
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "appended_entries_total",
			Help: "Entries durably appended to the log.", ConstLabels: labels,
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "commits_total",
			Help: "Group commits (one transaction, one fsync, one signed checkpoint each).", ConstLabels: labels,
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "commit_errors_total",
			Help: "Group commits that failed; their appends were answered with an error.", ConstLabels: labels,
		}),
		batchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "commit_batch_entries",
			Help: "Entries per group commit.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "commit_duration_seconds",
			Help: "Time to insert, sign and durably commit one batch.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "append_duration_seconds",
			Help: "Time from an append call to its durable acknowledgement.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "nexus", Subsystem: "ledger", Name: "tree_size",
			Help: "Tree size of the newest signed checkpoint.", ConstLabels: labels,
		}),
	}
	all := []prometheus.Collector{m.appended, m.commits, m.commitErrors, m.batchEntries, m.commitSeconds, m.appendSeconds, m.treeSize}
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("ledger: register metrics for %q: already registered (is this log open twice?): %w", origin, err)
			}
			return nil, fmt.Errorf("ledger: register metrics for %q: %w", origin, err)
		}
		m.collectors = append(m.collectors, c)
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.collectors = nil
}

func (m *metrics) committed(entries int, d time.Duration, size uint64) {
	if m == nil {
		return
	}
	m.commits.Inc()
	m.appended.Add(float64(entries))
	m.batchEntries.Observe(float64(entries))
	m.commitSeconds.Observe(d.Seconds())
	m.treeSize.Set(float64(size))
}

func (m *metrics) commitFailed() {
	if m == nil {
		return
	}
	m.commitErrors.Inc()
}

func (m *metrics) appendDone(d time.Duration) {
	if m == nil {
		return
	}
	m.appendSeconds.Observe(d.Seconds())
}

func (m *metrics) setSize(size uint64) {
	if m == nil {
		return
	}
	m.treeSize.Set(float64(size))
}
