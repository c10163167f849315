package netfab

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nexus-core/nexus/internal/testenv"
)

// flood writes to addr from path over conns parallel TCP connections for
// d and returns when all are closed.
func (e *testEnv) flood(path string, addr netip.AddrPort, conns int, d time.Duration) {
	e.t.Helper()
	var wg sync.WaitGroup
	for range conns {
		var c net.Conn
		e.inNS(path, func() error {
			var err error
			c, err = net.DialTimeout("tcp4", addr.String(), 2*time.Second)
			return err
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 256<<10)
			c.SetWriteDeadline(time.Now().Add(d))
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}

func (s *sink) total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// One IMVU flooding the uplink is held to its ceiling and cannot starve
// another IMVU's transfer.
func TestFairness(t *testing.T) {
	if testing.Short() {
		testenv.Missing(t, "-short: the fairness test measures throughput for a few seconds")
	}
	e := newEnv(t, withEgress("uplink"))
	d := twoIMVUs()
	const ceiling = 20 << 20 // bytes/s for alpha
	d.Networks[0].RateBps = ceiling
	e.apply(d)
	sa := e.sink(e.ext["uplink"], ap("198.51.100.1:9001"))
	sb := e.sink(e.ext["uplink"], ap("198.51.100.1:9002"))
	a3, b2 := e.wl("alpha", "a3"), e.wl("beta", "b2")

	// rate samples a sink over a window inside a flood, so bytes still
	// buffered in the senders when it ends are not counted.
	rate := func(s *sink, window time.Duration) float64 {
		time.Sleep(200 * time.Millisecond)
		n0 := s.total()
		time.Sleep(window)
		return float64(s.total()-n0) / window.Seconds()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.flood(b2, ap("198.51.100.1:9002"), 1, 1500*time.Millisecond) }()
	solo := rate(sb, time.Second)
	wg.Wait()

	wg.Add(2)
	go func() { defer wg.Done(); e.flood(a3, ap("198.51.100.1:9001"), 8, 3*time.Second) }()
	time.Sleep(300 * time.Millisecond)
	go func() { defer wg.Done(); e.flood(b2, ap("198.51.100.1:9002"), 1, 1500*time.Millisecond) }()
	contended := rate(sb, time.Second)
	alpha := rate(sa, time.Second)
	wg.Wait()

	t.Logf("beta alone %.0f Mbit/s; beta while alpha floods with 8 streams %.0f Mbit/s (%.0f%%); alpha %.1f Mbit/s against a ceiling of %.1f",
		solo*8/1e6, contended*8/1e6, 100*contended/solo, alpha*8/1e6, float64(ceiling)*8/1e6)
	if alpha > 1.25*ceiling {
		t.Errorf("alpha got %.1f MB/s through a %.1f MB/s ceiling", alpha/1e6, float64(ceiling)/1e6)
	}
	if alpha < 0.3*ceiling {
		t.Errorf("alpha got only %.1f MB/s of its %.1f MB/s ceiling", alpha/1e6, float64(ceiling)/1e6)
	}
	// Throughput here swings by ±30% run to run; starvation would be far
	// below this.
	if contended < 0.4*solo {
		t.Errorf("beta fell from %.0f to %.0f Mbit/s while alpha flooded", solo*8/1e6, contended*8/1e6)
	}
}

// A packet ceiling holds an IMVU's datagram rate through the router.
func TestPacketCeiling(t *testing.T) {
	e := newEnv(t, withEgress("uplink"))
	d := twoIMVUs()
	const pps = 500
	d.Networks[0].RatePPS = pps
	e.apply(d)
	srv := e.serve(e.ext["uplink"], ap("198.51.100.1:7000"), "internet")
	var c net.Conn
	e.inNS(e.wl("alpha", "a3"), func() error {
		var err error
		c, err = net.Dial("udp4", "198.51.100.1:7000")
		return err
	})
	defer c.Close()
	start := time.Now()
	sent := 0
	for time.Since(start) < time.Second {
		c.Write([]byte("x"))
		sent++
		if sent%64 == 0 {
			time.Sleep(time.Millisecond) // bursts of 64, thousands per second
		}
	}
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond)
	got := len(srv.datagrams())
	max := pps*elapsed.Seconds() + pps/10 // rate plus burst
	t.Logf("sent %d datagrams in %v, %d arrived through a %d/s ceiling", sent, elapsed.Round(time.Millisecond), got, pps)
	if float64(got) > 1.1*max || float64(got) < 0.5*max || sent < 2*got {
		t.Errorf("%d of %d datagrams arrived; want about %.0f", got, sent, max)
	}
}
