package dns

import (
	"strconv"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are counted per reader in shards of their own (no shared cache
// lines on the hot path) and summed when Prometheus collects them.

// latencyBounds are the histogram's upper bounds, in nanoseconds.
var latencyBounds = [...]int64{1e3, 2e3, 5e3, 10e3, 20e3, 50e3, 100e3, 200e3, 500e3, 1e6, 5e6, 20e6, 100e6}

type metricShard struct {
	rcodes  [32]atomic.Uint64 // by RCODE (header and extended), 31 = dropped
	buckets [len(latencyBounds) + 1]atomic.Uint64
	sumNs   atomic.Uint64
	_       [64]byte
}

const droppedSlot = 31

// observe records one response (nil: dropped) that took since start.
func (m *metricShard) observe(resp []byte, start time.Time, badVers bool) {
	if len(resp) < 12 {
		m.rcodes[droppedSlot].Add(1)
		return
	}
	rc := int(resp[3] & 0xf)
	if badVers {
		rc = mdns.RcodeBadVers
	}
	m.rcodes[rc].Add(1)
	d := time.Since(start).Nanoseconds()
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	m.buckets[i].Add(1)
	m.sumNs.Add(uint64(d))
}

type metrics struct {
	s        *Server
	reg      prometheus.Registerer
	shards   []metricShard
	notifies [2]atomic.Uint64 // failed, sent

	queries, dropped, latency, answered, zones, notify *prometheus.Desc
}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{s: s, reg: reg, shards: make([]metricShard, s.shards)}
	m.queries = prometheus.NewDesc("nexus_dns_responses_total", "DNS responses sent, by RCODE.", []string{"rcode"}, nil)
	m.dropped = prometheus.NewDesc("nexus_dns_dropped_total", "DNS messages dropped unanswered (responses, runts).", nil, nil)
	m.latency = prometheus.NewDesc("nexus_dns_query_duration_seconds", "Time to answer one DNS query, from parse to packed response.", nil, nil)
	m.answered = prometheus.NewDesc("nexus_dns_answered_total", "Queries answered from the zones of an IMVU (what the DNS meter reads).", []string{"imvu"}, nil)
	m.zones = prometheus.NewDesc("nexus_dns_zones", "Zones served.", nil, nil)
	m.notify = prometheus.NewDesc("nexus_dns_notify_total", "NOTIFY messages to secondaries, by outcome.", []string{"result"}, nil)
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) unregister() { m.reg.Unregister(m) }

func (m *metrics) notified(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.notifies[1].Add(1)
	} else {
		m.notifies[0].Add(1)
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.queries, m.dropped, m.latency, m.answered, m.zones, m.notify} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	var rcodes [32]uint64
	var buckets [len(latencyBounds) + 1]uint64
	var sum uint64
	for i := range m.shards {
		sh := &m.shards[i]
		for j := range rcodes {
			rcodes[j] += sh.rcodes[j].Load()
		}
		for j := range buckets {
			buckets[j] += sh.buckets[j].Load()
		}
		sum += sh.sumNs.Load()
	}
	for rc, n := range rcodes[:droppedSlot] {
		if n == 0 && rc != 0 {
			continue
		}
		name, ok := mdns.RcodeToString[rc]
		if !ok {
			name = "RCODE" + strconv.Itoa(rc)
		}
		ch <- prometheus.MustNewConstMetric(m.queries, prometheus.CounterValue, float64(n), name)
	}
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(rcodes[droppedSlot]))
	cum := map[float64]uint64{}
	var acc uint64
	for i, b := range latencyBounds {
		acc += buckets[i]
		cum[float64(b)/1e9] = acc
	}
	acc += buckets[len(latencyBounds)]
	ch <- prometheus.MustNewConstHistogram(m.latency, acc, float64(sum)/1e9, cum)
	for id, n := range m.s.Counts() {
		ch <- prometheus.MustNewConstMetric(m.answered, prometheus.CounterValue, float64(n), id)
	}
	ch <- prometheus.MustNewConstMetric(m.zones, prometheus.GaugeValue, float64(len(*m.s.zones.Load())))
	ch <- prometheus.MustNewConstMetric(m.notify, prometheus.CounterValue, float64(m.notifies[1].Load()), "sent")
	ch <- prometheus.MustNewConstMetric(m.notify, prometheus.CounterValue, float64(m.notifies[0].Load()), "failed")
}
