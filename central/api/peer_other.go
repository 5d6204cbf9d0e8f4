//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package api

import "net"

// peerGone cannot peek at a connection on this platform: a parked poll
// whose client left waits out its time.
func peerGone(net.Conn) bool { return false }
