//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package api

import (
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether the client of a parked poll is gone: it closed
// the connection, reset it, or sent something after its request (a TLS
// close_notify, or another request, which a parked poll never reads). It
// peeks without blocking and without consuming anything.
func peerGone(c net.Conn) bool {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read (EAGAIN) is a client still waiting; anything
		// else, end of stream (no error, zero bytes) included, is not.
		gone = !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EWOULDBLOCK) && !errors.Is(rerr, syscall.EINTR)
		return true
	})
	return err != nil || gone
}
