//go:build !linux

package dns

import (
	"net"
	"syscall"
)

const reusePortSupported = false

var reusePort func(network, address string, c syscall.RawConn) error

func (s *Server) serveUDP(conn *net.UDPConn, shard int) { s.serveUDPSimple(conn, shard) }
