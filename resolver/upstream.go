package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// ednsSize is the UDP payload size we advertise upstream and to clients
// (DNS flag day 2020).
const ednsSize = 1232

// query flags for an upstream exchange.
type qflags struct {
	rd, do, cd bool
	noEDNS     bool
}

// upstream sends one query to one server and returns the reply that matches
// it. The network implementation is netUpstream; the fuzz test feeds its own.
type upstream interface {
	exchange(ctx context.Context, server netip.AddrPort, q mdns.Question, f qflags) (*mdns.Msg, error)
}

var (
	errTimeout   = errors.New("upstream timed out")
	errMalformed = errors.New("upstream reply malformed")
)

// verdict on one datagram read from an upstream socket.
type verdict uint8

const (
	accept verdict = iota
	dropID
	dropQuestion
	dropCase
	dropMalformed
)

var verdictNames = [...]string{accept: "ok", dropID: "id", dropQuestion: "question", dropCase: "case", dropMalformed: "malformed"}

// newQuery builds the upstream query for q: random ID, randomised case,
// EDNS0 with our buffer size unless f.noEDNS.
func newQuery(q mdns.Question, f qflags) *mdns.Msg {
	m := new(mdns.Msg)
	m.Id = randomID()
	m.Opcode = mdns.OpcodeQuery
	m.RecursionDesired = f.rd
	m.CheckingDisabled = f.cd
	m.Question = []mdns.Question{{Name: randomizeCase(q.Name), Qtype: q.Qtype, Qclass: q.Qclass}}
	if !f.noEDNS {
		m.SetEdns0(ednsSize, f.do)
	}
	return m
}

// checkReply decides whether wire is the reply to query: same ID, QR set,
// opcode QUERY, exactly our question with exactly our (randomised) case. A
// reply that is truncated and does not parse past the question comes back
// with Truncated set and empty sections, so that the caller retries on TCP.
func checkReply(query *mdns.Msg, wire []byte) (*mdns.Msg, verdict) {
	if len(wire) < 12 {
		return nil, dropMalformed
	}
	if binary.BigEndian.Uint16(wire) != query.Id {
		return nil, dropID
	}
	flags := binary.BigEndian.Uint16(wire[2:])
	if flags&(1<<15) == 0 || (flags>>11)&0xf != mdns.OpcodeQuery {
		return nil, dropMalformed
	}
	if binary.BigEndian.Uint16(wire[4:]) != 1 {
		return nil, dropQuestion
	}
	name, off, err := mdns.UnpackDomainName(wire, 12)
	if err != nil || off+4 > len(wire) {
		return nil, dropMalformed
	}
	q := query.Question[0]
	qtype := binary.BigEndian.Uint16(wire[off:])
	qclass := binary.BigEndian.Uint16(wire[off+2:])
	if qtype != q.Qtype || qclass != q.Qclass || !equalName(name, q.Name) {
		return nil, dropQuestion
	}
	if name != q.Name {
		return nil, dropCase
	}
	m := new(mdns.Msg)
	if err := m.Unpack(wire); err != nil {
		if flags&(1<<9) == 0 {
			return nil, dropMalformed
		}
		m = new(mdns.Msg)
		m.Id = query.Id
		m.Response = true
		m.Truncated = true
		m.Question = []mdns.Question{q}
		return m, accept
	}
	if len(m.Question) != 1 {
		return nil, dropMalformed
	}
	return m, accept
}

// netUpstream talks to real servers: UDP on a fresh socket with a random
// source port per query, TCP when the reply is truncated.
type netUpstream struct {
	r       *Resolver
	timeout time.Duration

	mu     sync.Mutex
	flight map[string]*call
}

type call struct {
	done chan struct{}
	m    *mdns.Msg
	err  error
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

// exchange shares one outstanding query per (server, name, type, flags)
// between concurrent callers (RFC 5452 section 5: no duplicate queries for
// a birthday attack to race against).
func (u *netUpstream) exchange(ctx context.Context, server netip.AddrPort, q mdns.Question, f qflags) (*mdns.Msg, error) {
	key := server.String() + "|" + lower(q.Name) + "|" + strconv.Itoa(int(q.Qtype)) + "|" + fmt.Sprint(f)
	u.mu.Lock()
	if c, ok := u.flight[key]; ok {
		u.mu.Unlock()
		select {
		case <-c.done:
			return c.m, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	u.flight[key] = c
	u.mu.Unlock()

	c.m, c.err = u.do(ctx, server, q, f)

	u.mu.Lock()
	delete(u.flight, key)
	u.mu.Unlock()
	close(c.done)
	return c.m, c.err
}

func (u *netUpstream) do(ctx context.Context, server netip.AddrPort, q mdns.Question, f qflags) (*mdns.Msg, error) {
	m, err := u.udp(ctx, server, q, f)
	if err != nil {
		return nil, err
	}
	if m.Truncated {
		return u.tcp(ctx, server, q, f)
	}
	// A server that does not understand EDNS: once more without it.
	if !f.noEDNS && (m.Rcode == mdns.RcodeFormatError || m.Rcode == mdns.RcodeNotImplemented) && m.IsEdns0() == nil {
		f.noEDNS = true
		return u.udp(ctx, server, q, f)
	}
	return m, nil
}

// dialUDP opens a connected UDP socket to server from a random source port,
// falling back to the kernel's choice if random ports keep colliding.
func dialUDP(server netip.AddrPort) (*net.UDPConn, error) {
	raddr := net.UDPAddrFromAddrPort(server)
	for range 8 {
		c, err := net.DialUDP("udp", &net.UDPAddr{Port: randomPort()}, raddr)
		if err == nil {
			return c, nil
		}
	}
	return net.DialUDP("udp", nil, raddr)
}

func (u *netUpstream) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(u.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

func (u *netUpstream) udp(ctx context.Context, server netip.AddrPort, q mdns.Question, f qflags) (*mdns.Msg, error) {
	query := newQuery(q, f)
	wire, err := query.Pack()
	if err != nil {
		return nil, err
	}
	conn, err := dialUDP(server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	start := time.Now()
	_ = conn.SetDeadline(u.deadline(ctx))
	if _, err := conn.Write(wire); err != nil {
		u.r.met.upstream("udp", "error", time.Since(start))
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				u.r.met.upstream("udp", "timeout", time.Since(start))
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errTimeout
			}
			// ICMP port unreachable and the like: this server is no good.
			u.r.met.upstream("udp", "error", time.Since(start))
			return nil, err
		}
		m, v := checkReply(query, buf[:n])
		if v != accept {
			u.r.met.dropped(v)
			u.r.log.Debug("resolver: dropped upstream datagram", "server", server, "reason", verdictNames[v])
			continue
		}
		u.r.met.upstream("udp", "ok", time.Since(start))
		return m, nil
	}
}

func (u *netUpstream) tcp(ctx context.Context, server netip.AddrPort, q mdns.Question, f qflags) (*mdns.Msg, error) {
	query := newQuery(q, f)
	wire, err := query.Pack()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	dctx, cancel := context.WithDeadline(ctx, u.deadline(ctx))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", server.String())
	if err != nil {
		u.r.met.upstream("tcp", "error", time.Since(start))
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	dl, _ := dctx.Deadline()
	_ = conn.SetDeadline(dl)
	out := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	copy(out[2:], wire)
	if _, err := conn.Write(out); err != nil {
		u.r.met.upstream("tcp", "error", time.Since(start))
		return nil, err
	}
	var lb [2]byte
	if _, err := io.ReadFull(conn, lb[:]); err != nil {
		u.r.met.upstream("tcp", "error", time.Since(start))
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		u.r.met.upstream("tcp", "error", time.Since(start))
		return nil, err
	}
	m, v := checkReply(query, buf)
	if v != accept || m.Truncated && len(m.Answer)+len(m.Ns) == 0 {
		if v != accept {
			u.r.met.dropped(v)
		}
		u.r.met.upstream("tcp", "error", time.Since(start))
		return nil, errMalformed
	}
	u.r.met.upstream("tcp", "ok", time.Since(start))
	return m, nil
}
