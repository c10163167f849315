package dns

import (
	"errors"
	"net"
)

// recvBufSize is the largest query read over UDP; longer ones are dropped.
const recvBufSize = 4096

// serveUDPSimple is the portable reader: one datagram per system call.
func (s *Server) serveUDPSimple(conn *net.UDPConn, shard int) {
	w := s.newWorker(shard, true)
	buf := make([]byte, recvBufSize)
	out := make([]byte, 0, max(int(s.udpSize), 512))
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if resp := s.handle(w, buf[:n], out, false); resp != nil {
			conn.WriteToUDPAddrPort(resp, from)
		}
	}
}
