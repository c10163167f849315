package resolver

import (
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics is one prometheus.Collector (so Close can unregister it in one
// call) over the resolver's counters.
type metrics struct {
	r         *Resolver
	responses *prometheus.CounterVec
	cache     *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	upstreams *prometheus.CounterVec
	drops     *prometheus.CounterVec
	validated *prometheus.CounterVec
	entries   *prometheus.Desc
	answered  *prometheus.Desc
}

func newMetrics(r *Resolver) *metrics {
	return &metrics{
		r: r,
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_resolver_responses_total",
			Help: "Responses sent to clients by the recursive resolver, by RCODE.",
		}, []string{"rcode"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_resolver_cache_lookups_total",
			Help: "Client queries answered wholly from the cache (hit) or not (miss).",
		}, []string{"result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nexus_resolver_upstream_duration_seconds",
			Help:    "Time from sending an upstream query to its matching reply (or giving up).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"transport"}),
		upstreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_resolver_upstream_queries_total",
			Help: "Upstream queries, by transport and outcome (ok, timeout, error).",
		}, []string{"transport", "result"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_resolver_upstream_dropped_total",
			Help: "Upstream datagrams ignored as not the reply to our query (possible spoofing), by reason.",
		}, []string{"reason"}),
		validated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nexus_resolver_validation_total",
			Help: "DNSSEC outcomes of resolved answers (secure, insecure, bogus).",
		}, []string{"result"}),
		entries:  prometheus.NewDesc("nexus_resolver_cache_entries", "Entries in the resolver cache.", nil, nil),
		answered: prometheus.NewDesc("nexus_resolver_answered_total", "Queries answered for each IMVU (what the DNS meter reads).", []string{"imvu"}, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.responses.Describe(ch)
	m.cache.Describe(ch)
	m.latency.Describe(ch)
	m.upstreams.Describe(ch)
	m.drops.Describe(ch)
	m.validated.Describe(ch)
	ch <- m.entries
	ch <- m.answered
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.responses.Collect(ch)
	m.cache.Collect(ch)
	m.latency.Collect(ch)
	m.upstreams.Collect(ch)
	m.drops.Collect(ch)
	m.validated.Collect(ch)
	ch <- prometheus.MustNewConstMetric(m.entries, prometheus.GaugeValue, float64(m.r.cache.len()))
	for imvu, n := range m.r.Counts() {
		ch <- prometheus.MustNewConstMetric(m.answered, prometheus.CounterValue, float64(n), imvu)
	}
}

func (m *metrics) response(rcode int) {
	s, ok := mdns.RcodeToString[rcode]
	if !ok {
		s = "OTHER"
	}
	m.responses.WithLabelValues(s).Inc()
}

func (m *metrics) cacheResult(hit bool) {
	if hit {
		m.cache.WithLabelValues("hit").Inc()
	} else {
		m.cache.WithLabelValues("miss").Inc()
	}
}

func (m *metrics) upstream(transport, result string, d time.Duration) {
	m.upstreams.WithLabelValues(transport, result).Inc()
	m.latency.WithLabelValues(transport).Observe(d.Seconds())
}

func (m *metrics) dropped(v verdict) { m.drops.WithLabelValues(verdictNames[v]).Inc() }

func (m *metrics) validation(s secState) {
	if s == secUnchecked {
		return
	}
	m.validated.WithLabelValues(s.String()).Inc()
}
