package dns

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"

	mdns "github.com/miekg/dns"
)

// TCP limits (RFC 7766 asks servers to bound idle connections).
const (
	maxTCPConns    = 512
	tcpIdleTimeout = 10 * time.Second
	tcpWriteTimout = 10 * time.Second
	maxTCPQueries  = 10000
	xfrChunk       = 32 << 10 // bytes of records per AXFR message, before compression
)

func (s *Server) serveTCP(ln net.Listener) {
	sem := make(chan struct{}, maxTCPConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dns: accept", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			conn.Close() // too many connections
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-sem }()
			s.serveConn(conn)
		}()
	}
}

// serveConn answers the queries of one connection in order.
func (s *Server) serveConn(conn net.Conn) {
	defer conn.Close()
	stop := closeOnStop(s, conn)
	defer stop()
	w := s.newWorker(s.shards-1, false)
	br := bufio.NewReaderSize(conn, 4096)
	pkt := make([]byte, 65535)
	out := make([]byte, 0, 65535)
	frame := make([]byte, 0, 65537)
	for n := 0; n < maxTCPQueries; n++ {
		conn.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(br, pkt[:size]); err != nil {
			return
		}
		msg := pkt[:size]
		conn.SetWriteDeadline(time.Now().Add(tcpWriteTimout))
		if s.isTransfer(w, msg) {
			if err := s.transfer(w, conn, msg); err != nil {
				s.log.Info("dns: transfer", "remote", conn.RemoteAddr().String(), "err", err)
				return
			}
			continue
		}
		resp := s.handle(w, msg, out, true)
		if resp == nil {
			continue
		}
		frame = binary.BigEndian.AppendUint16(frame[:0], uint16(len(resp)))
		frame = append(frame, resp...)
		if _, err := conn.Write(frame); err != nil {
			return
		}
	}
}

// closeOnStop closes conn when the server stops.
func closeOnStop(s *Server, conn net.Conn) func() {
	done := make(chan struct{})
	go func() {
		select {
		case <-s.ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	return func() { close(done) }
}

// isTransfer reports whether msg is a well-formed AXFR or IXFR query.
func (s *Server) isTransfer(w *worker, msg []byte) bool {
	q := &w.q
	if parseQuery(msg, q) != parseOK || q.opcode != mdns.OpcodeQuery || q.qclass != mdns.ClassINET {
		return false
	}
	if q.edns && q.version > 0 {
		return false
	}
	return q.qtype == mdns.TypeAXFR || q.qtype == mdns.TypeIXFR
}

// transfer sends a zone to a secondary: only for a request signed with a
// configured TSIG key, for a zone served here. IXFR is answered with the
// whole zone (RFC 1995 allows it), or with the SOA alone when the
// secondary already has the serial.
func (s *Server) transfer(w *worker, conn net.Conn, msg []byte) error {
	q := &w.q
	write := func(b []byte) error {
		conn.SetWriteDeadline(time.Now().Add(tcpWriteTimout))
		frame := binary.BigEndian.AppendUint16(make([]byte, 0, len(b)+2), uint16(len(b)))
		_, err := conn.Write(append(frame, b...))
		return err
	}
	out := make([]byte, 0, 65535)
	if !q.tsig {
		s.log.Info("dns: transfer refused: not signed", "remote", conn.RemoteAddr().String(), "zone", presentation(string(q.name())))
		return write(render(out, msg, q, s.refused, 65535, s.udpSize, 0))
	}
	req := new(mdns.Msg)
	if err := req.Unpack(msg); err != nil || req.IsTsig() == nil {
		return write(headerOnly(out, msg, mdns.RcodeFormatError))
	}
	ts := req.IsTsig()
	if !validTSIG(ts) {
		return write(headerOnly(out, msg, mdns.RcodeFormatError))
	}
	key, status := s.verifyTSIG(msg, ts)
	reply := func(t *tmpl) error {
		m := new(mdns.Msg)
		if err := m.Unpack(render(out, msg, q, t, 65535, s.udpSize, 0)); err != nil {
			return err
		}
		b, _, err := signTSIG(m, ts, key.secret, status, ts.MAC, false)
		if err != nil {
			return err
		}
		return write(b)
	}
	if status != mdns.RcodeSuccess {
		s.log.Info("dns: transfer refused: bad TSIG", "remote", conn.RemoteAddr().String(), "key", ts.Hdr.Name, "error", mdns.RcodeToString[status])
		return reply(s.notAuth)
	}
	z := s.findZone(q.name())
	if z == nil || len(q.name()) != len(z.c.owire) {
		return reply(s.notAuth)
	}
	c := z.c
	z.cnt.shards[w.shard].n.Add(1)
	var rrs []mdns.RR
	if q.qtype == mdns.TypeIXFR && len(req.Ns) == 1 {
		if soa, ok := req.Ns[0].(*mdns.SOA); ok && soa.Serial == c.serial {
			rrs = []mdns.RR{c.soa}
		}
	}
	if rrs == nil {
		if c.key != nil {
			signed, err := c.signedTransfer()
			if err != nil {
				return reply(s.servFail)
			}
			rrs = append(signed, c.soa)
		} else {
			rrs = append(c.all(), c.soa)
		}
	}
	s.log.Info("dns: transfer", "remote", conn.RemoteAddr().String(), "zone", c.origin, "serial", c.serial, "records", len(rrs))
	mac := ts.MAC
	for i, first := 0, true; i < len(rrs); first = false {
		m := new(mdns.Msg)
		m.SetReply(req)
		m.Authoritative, m.Compress = true, true
		m.Extra = nil
		size := 0
		for i < len(rrs) && (len(m.Answer) == 0 || size+mdns.Len(rrs[i]) <= xfrChunk) {
			size += mdns.Len(rrs[i])
			m.Answer = append(m.Answer, rrs[i])
			i++
		}
		b, next, err := signTSIG(m, ts, key.secret, status, mac, !first)
		if err != nil {
			return err
		}
		mac = next
		if err := write(b); err != nil {
			return err
		}
	}
	return nil
}
