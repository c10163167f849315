package smtpd

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// BenchmarkMXDeliver: 20 concurrent go-smtp clients, 2 KiB messages, each
// accepted through the full inbound checks (SPF pass from the fake DNS) and
// delivered by a Deliverer that writes and fsyncs one file per message.
func BenchmarkMXDeliver(b *testing.B) {
	del := &fsyncDeliverer{dir: b.TempDir()}
	e := startServer(b, func(c *Config) { c.Deliverer = del; c.MaxRecipients = 100 })
	e.dns.setTXT("sender.example", "v=spf1 ip4:127.0.0.1 -all")
	body := strings.Repeat(strings.Repeat("x", 62)+"\r\n", 2048/64)
	msg := message("x@sender.example", alice.Address, "bench", body)[:2048]
	msg = msg[:strings.LastIndex(msg, "\r\n")+2]

	const clients = 20
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(e.mx)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Hello("sender.example"); err != nil {
				errs <- err
				return
			}
			for next.Add(1) <= int64(b.N) {
				if err := send(b, c, "x@sender.example", []string{alice.Address}, msg); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if got := e.srv.Counts()["imvu1"].MessagesIn; got != int64(b.N) {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
}
