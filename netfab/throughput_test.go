package netfab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// iperf runs an iperf3 server in server's namespace and a client in
// client's for secs seconds, and returns the receiver's bits per second.
func iperf(tb testing.TB, client, server, addr string, secs int, extra ...string) float64 {
	tb.Helper()
	bin := requireBin(tb, "iperf3")
	port := "5201"
	srv := exec.Command("ip", "netns", "exec", filepath.Base(server), bin, "-s", "-1", "-B", addr, "-p", port)
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var out []byte
	var err error
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum"`
		} `json:"end"`
	}
	for try := 0; try < 50; try++ {
		args := append([]string{"netns", "exec", filepath.Base(client), bin, "-c", addr, "-p", port, "-t", strconv.Itoa(secs), "-J"}, extra...)
		out, _ = exec.Command("ip", args...).Output()
		res.Error = ""
		if err = json.Unmarshal(out, &res); err == nil && res.Error == "" {
			break
		}
		time.Sleep(50 * time.Millisecond) // the server is not listening yet
	}
	if err != nil || res.Error != "" {
		tb.Fatalf("iperf3 client: %v %s\n%s", err, res.Error, out)
	}
	bps := res.End.SumReceived.BitsPerSecond
	if bps == 0 {
		bps = res.End.Sum.BitsPerSecond
	}
	if bps == 0 {
		tb.Fatalf("iperf3 measured nothing:\n%s", out)
	}
	return bps
}

func iperfSeconds() int {
	if n, err := strconv.Atoi(os.Getenv("NETFAB_IPERF_SECONDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// BenchmarkThroughput compares one TCP stream between two workloads of
// different IMVUs through the plane (grant, metering and ceilings on, set
// high) with the same stream between two namespaces joined by a bare veth,
// and between two workloads of one IMVU (bridge only). Reported in Gbit/s;
// bench/net.sh prints the ratio.
func BenchmarkThroughput(b *testing.B) {
	requireNet(b)
	requireBin(b, "iperf3")
	secs := iperfSeconds()
	b.Run("veth", func(b *testing.B) {
		e := newEnv(b)
		a, z := e.foreignNS("va"), e.foreignNS("vz")
		run(b, "ip", "link", "add", "v0", "netns", filepath.Base(a), "type", "veth", "peer", "name", "v1", "netns", filepath.Base(z))
		run(b, "ip", "-n", filepath.Base(a), "addr", "add", "10.88.0.1/24", "dev", "v0")
		run(b, "ip", "-n", filepath.Base(z), "addr", "add", "10.88.0.2/24", "dev", "v1")
		for _, ns := range []string{a, z} {
			run(b, "ip", "-n", filepath.Base(ns), "link", "set", "lo", "up")
		}
		run(b, "ip", "-n", filepath.Base(a), "link", "set", "v0", "up")
		run(b, "ip", "-n", filepath.Base(z), "link", "set", "v1", "up")
		report(b, iperf(b, a, z, "10.88.0.2", secs))
	})
	// The same bare veth with the plane's BIG TCP sizes, for a like-for-like
	// view of what the plane's own hops cost.
	b.Run("veth-bigtcp", func(b *testing.B) {
		e := newEnv(b)
		a, z := e.foreignNS("va"), e.foreignNS("vz")
		run(b, "ip", "link", "add", "v0", "netns", filepath.Base(a), "type", "veth", "peer", "name", "v1", "netns", filepath.Base(z))
		for i, ns := range []string{a, z} {
			ip := fmt.Sprintf("10.88.0.%d/24", i+1)
			dev := fmt.Sprintf("v%d", i)
			run(b, "ip", "-n", filepath.Base(ns), "addr", "add", ip, "dev", dev)
			run(b, "ip", "-n", filepath.Base(ns), "link", "set", "lo", "up")
			h, err := openNS("", ns, nsForeign)
			if err != nil {
				b.Fatal(err)
			}
			l, err := h.nl.LinkByName(dev)
			if err != nil {
				b.Fatal(err)
			}
			ps := &pass{p: e.plane}
			if err := ps.bigTCP(h, &nsSpec{}, &linkSpec{name: dev}, l); err != nil {
				b.Fatal(err)
			}
			h.nl.LinkSetUp(l)
			h.close()
		}
		report(b, iperf(b, a, z, "10.88.0.2", secs))
	})
	b.Run("plane", func(b *testing.B) {
		e := newEnv(b)
		d := twoIMVUs()
		for i := range d.Networks {
			d.Networks[i].RateBps, d.Networks[i].RatePPS = 8e9, 100e6 // 64 Gbit/s
		}
		d.Grants = []Grant{grantA1B1(5201, "tcp")}
		e.apply(d)
		bps := iperf(b, e.wl("alpha", "a1"), e.wl("beta", "b1"), "10.77.2.2", secs)
		c, err := e.plane.Counters(context.Background())
		if err != nil || c["alpha"][Restricted].Out == 0 {
			b.Fatalf("metering was not on: %v %v", c, err)
		}
		report(b, bps)
	})
	b.Run("bridge", func(b *testing.B) {
		e := newEnv(b)
		e.apply(twoIMVUs())
		report(b, iperf(b, e.wl("alpha", "a1"), e.wl("alpha", "a2"), "10.77.1.3", secs))
	})
}

func report(b *testing.B, bps float64) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(bps/1e9, "Gbit/s")
}
