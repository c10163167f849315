package smtpd

import "github.com/prometheus/client_golang/prometheus"

// metrics is one prometheus.Collector so Close can unregister it in one call.
type metrics struct {
	messages *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	auth     *prometheus.CounterVec
	checks   *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_smtpd_messages_total",
			Help: "Messages at the end of DATA, by listener (mx, submission) and outcome.",
		}, []string{"listener", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_smtpd_bytes_total",
			Help: "Bytes of messages accepted, by listener.",
		}, []string{"listener"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_smtpd_auth_total",
			Help: "Submission AUTH attempts, by result.",
		}, []string{"result"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_smtpd_inbound_checks_total",
			Help: "Inbound authentication results, by method (spf, dkim, dmarc) and result.",
		}, []string{"method", "result"}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.messages.Describe(ch)
	m.bytes.Describe(ch)
	m.auth.Describe(ch)
	m.checks.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.messages.Collect(ch)
	m.bytes.Collect(ch)
	m.auth.Collect(ch)
	m.checks.Collect(ch)
}
