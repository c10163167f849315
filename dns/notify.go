package dns

import (
	"context"
	"time"

	mdns "github.com/miekg/dns"
)

// notifyTarget is a secondary to notify, with its TSIG key if it has one.
type notifyTarget struct {
	addr string
	key  *tsigKey
}

// NOTIFY retries (RFC 1996 asks for a few, with growing intervals).
const notifyTries = 4

// sendNotify tells every secondary that zone c has a new serial, in the
// background; Close waits for the attempts to end.
func (s *Server) sendNotify(c *Compiled) {
	for _, t := range s.notify {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := notifyOne(s.ctx, t, c.origin, c.soa)
			switch {
			case err == nil:
				s.log.Info("dns: notified", "zone", c.origin, "serial", c.serial, "secondary", t.addr)
				s.metrics.notified(true)
			case s.ctx.Err() == nil:
				s.log.Warn("dns: notify failed", "zone", c.origin, "serial", c.serial, "secondary", t.addr, "err", err)
				s.metrics.notified(false)
			}
		}()
	}
}

func notifyOne(ctx context.Context, t notifyTarget, origin string, soa *mdns.SOA) error {
	var err error
	timeout := time.Second
	for try := 0; try < notifyTries; try++ {
		m := new(mdns.Msg)
		m.SetNotify(origin)
		m.Answer = []mdns.RR{soa}
		cl := &mdns.Client{Net: "udp", Timeout: timeout}
		if t.key != nil {
			m.SetTsig(t.key.name, t.key.alg, 300, time.Now().Unix())
			cl.TsigSecret = map[string]string{t.key.name: t.key.secret}
		}
		var r *mdns.Msg
		r, _, err = cl.ExchangeContext(ctx, m, t.addr)
		if err == nil {
			if r.Rcode == mdns.RcodeSuccess {
				return nil
			}
			err = &rcodeError{r.Rcode}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(timeout):
		}
		timeout *= 2
	}
	return err
}

type rcodeError struct{ rcode int }

func (e *rcodeError) Error() string { return "answered " + mdns.RcodeToString[e.rcode] }
