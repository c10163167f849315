package handshake

import (
	"fmt"
	"math/bits"
)

// Resources is an amount of every resource an envelope bounds. Envelopes, usage
// and capacity are all Resources, so one set of checked operations serves them all.
type Resources struct {
	CPUMilli    uint64 `json:"cpu_millicores" toml:"cpu_millicores"`
	MemoryBytes uint64 `json:"memory_bytes" toml:"memory_bytes"`
	Pids        uint64 `json:"pids" toml:"pids"`
	DiskBytes   uint64 `json:"disk_bytes" toml:"disk_bytes"`
	IOBps       uint64 `json:"io_bps" toml:"io_bps"`
	IOPS        uint64 `json:"iops" toml:"iops"`
	NetBps      uint64 `json:"net_bps" toml:"net_bps"`
	DNSRecords  uint64 `json:"dns_records" toml:"dns_records"`
	Mailboxes   uint64 `json:"mailboxes" toml:"mailboxes"`
	MailBytes   uint64 `json:"mail_bytes" toml:"mail_bytes"`
	MailRate    uint64 `json:"mail_per_minute" toml:"mail_per_minute"` // messages accepted per minute, in and out
}

// fields lists r's members with their names, in a fixed order.
func (r *Resources) fields() [11]struct {
	name string
	v    *uint64
} {
	return [11]struct {
		name string
		v    *uint64
	}{
		{"cpu_millicores", &r.CPUMilli}, {"memory_bytes", &r.MemoryBytes}, {"pids", &r.Pids},
		{"disk_bytes", &r.DiskBytes}, {"io_bps", &r.IOBps}, {"iops", &r.IOPS}, {"net_bps", &r.NetBps},
		{"dns_records", &r.DNSRecords}, {"mailboxes", &r.Mailboxes}, {"mail_bytes", &r.MailBytes},
		{"mail_per_minute", &r.MailRate},
	}
}

// Add returns r+o, or an error naming the resource that would overflow.
func (r Resources) Add(o Resources) (Resources, error) {
	out := r
	of, ff := out.fields(), o.fields()
	for i := range of {
		s, c := bits.Add64(*of[i].v, *ff[i].v, 0)
		if c != 0 {
			return r, fmt.Errorf("%s overflows", of[i].name)
		}
		*of[i].v = s
	}
	return out, nil
}

// Sub returns r-o, or an error naming the resource that would go below zero.
func (r Resources) Sub(o Resources) (Resources, error) {
	out := r
	of, ff := out.fields(), o.fields()
	for i := range of {
		d, b := bits.Sub64(*of[i].v, *ff[i].v, 0)
		if b != 0 {
			return r, fmt.Errorf("%s would go below zero", of[i].name)
		}
		*of[i].v = d
	}
	return out, nil
}

// Exceeds names the first resource where r is more than limit, or "".
func (r Resources) Exceeds(limit Resources) string {
	rf, lf := r.fields(), limit.fields()
	for i := range rf {
		if *rf[i].v > *lf[i].v {
			return fmt.Sprintf("%s %d > %d", rf[i].name, *rf[i].v, *lf[i].v)
		}
	}
	return ""
}

// Shrinks names the first resource where next is smaller than r, or "".
func (r Resources) Shrinks(next Resources) string {
	return r.Exceeds(next)
}

// IsZero reports whether every resource is zero.
func (r Resources) IsZero() bool { return r == Resources{} }
