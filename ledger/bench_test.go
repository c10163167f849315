package ledger_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-core/nexus/ledger"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexus-core/nexus/internal/testenv"
)

const benchEntrySize = 200

func benchData(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, benchEntrySize)
		rand.Read(out[i])
	}
	return out
}

// commits reads the commit counter from a registry.
func commits(b *testing.B, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "nexus_ledger_commits_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	b.Fatal("no commit counter")
	return 0
}

// BenchmarkAppendConcurrent measures durable appends of 200-byte entries from
// 64 concurrent appenders sharing group commits. Each op is one entry.
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, appenders := range []int{64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			ctx := context.Background()
			reg := prometheus.NewRegistry()
			opts := testOptions(b)
			opts.Registerer = reg
			l, err := ledger.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := benchData(1024)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range appenders {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := l.Append(ctx, data[i%int64(len(data))]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			b.ReportMetric(float64(b.N)/commits(b, reg), "entries/commit")
		})
	}
}

// BenchmarkAppendLone measures one synchronous appender: every op is one
// durable commit (insert, sign, fsync).
func BenchmarkAppendLone(b *testing.B) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), testOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := benchData(64)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := l.Append(ctx, data[i%len(data)]); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

// BenchmarkAppendBatch measures AppendBatch of 1000 entries per call.
func BenchmarkAppendBatch(b *testing.B) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), testOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := benchData(1000)
	b.ResetTimer()
	for range b.N {
		if _, err := l.AppendBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkLog1M builds a 1,000,000-entry log once (1000 commits of 1000
// entries of 200 bytes) and measures offline Verify, Open (rebuilding the
// tree from stored leaf hashes) and proofs against it. It only runs with
// -bench; building takes tens of seconds.
func BenchmarkLog1M(b *testing.B) {
	if testing.Short() {
		testenv.Missing(b, "-short: BenchmarkLog1M builds a 1M-entry database")
	}
	const (
		total = 1_000_000
		batch = 1000
	)
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "1m.db")
	built := time.Now()
	l, err := ledger.Open(ctx, path, testOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	data := benchData(batch)
	for range total / batch {
		if _, err := l.AppendBatch(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d entries in %v", total, time.Since(built).Round(time.Millisecond))
	v := testVerifier(b)

	b.Run("Verify", func(b *testing.B) {
		for range b.N {
			rep, err := ledger.Verify(ctx, path, v, nil)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Entries != total {
				b.Fatalf("verified %d entries", rep.Entries)
			}
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
	})
	b.Run("Open", func(b *testing.B) {
		for range b.N {
			l, err := ledger.Open(ctx, path, testOptions(b))
			if err != nil {
				b.Fatal(err)
			}
			if l.Size() != total {
				b.Fatalf("size %d", l.Size())
			}
			l.Close()
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/open")
	})
	l, err = ledger.Open(ctx, path, testOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.Run("Receipt", func(b *testing.B) {
		for i := range b.N {
			if _, err := l.Receipt(ctx, uint64(i*7919)%total); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Consistency", func(b *testing.B) {
		for i := range b.N {
			if _, err := l.Consistency(ctx, uint64(i*7919)%total, total); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Read", func(b *testing.B) {
		for i := range b.N {
			if _, err := l.Read(ctx, uint64(i*7919)%total); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParseCheckpoint is the per-checkpoint cost of Verify's signature
// check (one Ed25519 verification plus parsing).
func BenchmarkParseCheckpoint(b *testing.B) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), testOptions(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, []byte("x")); err != nil {
		b.Fatal(err)
	}
	cp := l.Checkpoint()
	v := testVerifier(b)
	b.ResetTimer()
	for range b.N {
		if _, err := ledger.ParseCheckpoint(cp.Note, v); err != nil {
			b.Fatal(err)
		}
	}
}
