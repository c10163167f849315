//go:build linux

package dns

import (
	"net"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const reusePortSupported = true

// reusePort lets several UDP sockets share one port; the kernel spreads the
// clients over them, as Knot's UDP workers do.
func reusePort(network, _ string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "udp") {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// udpBatch is how many datagrams one recvmmsg/sendmmsg moves.
const udpBatch = 32

// batcher is one UDP reader's state: everything recvmmsg and sendmmsg point
// to lives here, allocated once, so the loop allocates nothing.
type batcher struct {
	hdrs  [udpBatch]unix.Mmsghdr
	iovs  [udpBatch]unix.Iovec
	names [udpBatch][unix.SizeofSockaddrAny]byte
	bufs  [udpBatch][]byte

	ohdrs [udpBatch]unix.Mmsghdr
	oiovs [udpBatch]unix.Iovec
	outs  [udpBatch][]byte
	resps [udpBatch][]byte // what each send points to (usually outs[i])

	n, nout, sent int
	errno         syscall.Errno
	readFn        func(fd uintptr) bool
	writeFn       func(fd uintptr) bool
}

func newBatcher(outSize int) *batcher {
	b := &batcher{}
	for i := range b.hdrs {
		b.bufs[i] = make([]byte, recvBufSize)
		b.outs[i] = make([]byte, 0, outSize)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(recvBufSize)
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
		b.hdrs[i].Hdr.Name = &b.names[i][0]
		b.ohdrs[i].Hdr.Iov = &b.oiovs[i]
		b.ohdrs[i].Hdr.SetIovlen(1)
	}
	b.readFn = b.read
	b.writeFn = b.write
	return b
}

func (b *batcher) read(fd uintptr) bool {
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrAny
		b.hdrs[i].Hdr.Flags = 0
	}
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	b.n, b.errno = int(r), e
	if e != 0 {
		b.n = 0
	}
	return true
}

func (b *batcher) write(fd uintptr) bool {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.ohdrs[b.sent])), uintptr(b.nout-b.sent), unix.MSG_DONTWAIT, 0, 0)
	switch {
	case e == unix.EAGAIN:
		return false
	case e != 0:
		b.sent++ // this datagram cannot go; skip it
	case r == 0:
		b.sent++
	default:
		b.sent += int(r)
	}
	return true
}

// serveUDP reads datagrams in batches and answers each batch with one send.
func (s *Server) serveUDP(conn *net.UDPConn, shard int) {
	conn.SetReadBuffer(4 << 20)
	conn.SetWriteBuffer(4 << 20)
	rc, err := conn.SyscallConn()
	if err != nil {
		s.serveUDPSimple(conn, shard)
		return
	}
	w := s.newWorker(shard, true)
	b := newBatcher(max(int(s.udpSize), 512))
	for {
		if err := rc.Read(b.readFn); err != nil {
			return // closed
		}
		switch b.errno {
		case 0:
		case unix.ENOSYS:
			s.serveUDPSimple(conn, shard)
			return
		case unix.EINTR:
			continue
		default:
			s.log.Warn("dns: recvmmsg", "err", b.errno)
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			continue
		}
		b.nout = 0
		for i := 0; i < b.n; i++ {
			h := &b.hdrs[i]
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				continue
			}
			resp := s.handle(w, b.bufs[i][:h.Len], b.outs[b.nout][:0], false)
			if len(resp) == 0 {
				continue
			}
			o := &b.ohdrs[b.nout]
			o.Hdr.Name = &b.names[i][0]
			o.Hdr.Namelen = h.Hdr.Namelen
			b.resps[b.nout] = resp
			b.oiovs[b.nout].Base = &resp[0]
			b.oiovs[b.nout].SetLen(len(resp))
			b.nout++
		}
		for b.sent = 0; b.sent < b.nout; {
			if err := rc.Write(b.writeFn); err != nil {
				return
			}
		}
	}
}
