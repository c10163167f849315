package mailq

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Queue's Prometheus counters; without a Registerer they
// are kept but not exported.
type metrics struct {
	enqueued, delivered, deferred, failed, expired, dsns, bytesOut prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nexus", Subsystem: "mailq", Name: name, Help: help})
	}
	m := &metrics{
		enqueued:  c("enqueued_total", "Messages durably queued."),
		delivered: c("delivered_recipients_total", "Recipients accepted by a remote server or delivered locally."),
		deferred:  c("deferred_attempts_total", "Delivery attempts that left recipients queued for a retry."),
		failed:    c("failed_recipients_total", "Recipients refused permanently (5xx)."),
		expired:   c("expired_recipients_total", "Recipients bounced because the message exceeded MaxAge."),
		dsns:      c("dsn_total", "Delivery status notifications sent."),
		bytesOut:  c("sent_bytes_total", "Message bytes accepted by remote servers."),
	}
	if reg == nil {
		return m, nil
	}
	for _, x := range []prometheus.Collector{m.enqueued, m.delivered, m.deferred, m.failed, m.expired, m.dsns, m.bytesOut} {
		if err := reg.Register(x); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) inc(c prometheus.Counter) {
	c.Inc()
}

func (m *metrics) add(c prometheus.Counter, n int) {
	c.Add(float64(n))
}
