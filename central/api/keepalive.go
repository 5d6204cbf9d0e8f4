package api

import (
	"net"
	"sync"
)

// Listener returns ln with the connections of answered long-polls added
// to what it accepts: a parked poll's connection goes back to the
// http.Server after its answer, as net/http keeps a connection alive after
// any other answer, and carries the agent's next request. Without it each
// answer would close its connection, and every agent a change wakes would
// connect again at the same moment. The http.Server must serve the
// returned listener; without one, answered polls close their connections.
func (s *Server) Listener(ln net.Listener) net.Listener {
	l := &resumingListener{
		inner:    ln,
		accepted: make(chan acceptResult),
		resumed:  make(chan net.Conn, resumeQueue),
		closed:   make(chan struct{}),
	}
	s.resumer = l
	go l.acceptInner()
	return l
}

// resumeQueue is how many answered polls' connections may wait for the
// http.Server's next Accept; beyond, an answer closes its connection.
const resumeQueue = 1024

// resumingListener yields what its inner listener accepts and the
// connections given back by answered long-polls.
type resumingListener struct {
	inner    net.Listener
	accepted chan acceptResult
	resumed  chan net.Conn
	closed   chan struct{}

	// mu orders resume and Close: no connection is queued once closed.
	mu       sync.Mutex
	isClosed bool
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// acceptInner accepts from the inner listener until it is closed.
func (l *resumingListener) acceptInner() {
	for {
		c, err := l.inner.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.closed:
			if c != nil {
				_ = c.Close()
			}
			return
		}
	}
}

func (l *resumingListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.resumed:
		return c, nil
	case r := <-l.accepted:
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// resume hands an answered poll's connection back to the http.Server; it
// reports false when the listener is closed or its queue full, and the
// caller closes the connection.
func (l *resumingListener) resume(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed {
		return false
	}
	select {
	case l.resumed <- c:
		return true
	default:
		return false
	}
}

func (l *resumingListener) Close() error {
	l.mu.Lock()
	if l.isClosed {
		l.mu.Unlock()
		return nil
	}
	l.isClosed = true
	close(l.closed)
	l.mu.Unlock()
	err := l.inner.Close()
	for {
		select {
		case c := <-l.resumed:
			_ = c.Close()
		default:
			return err
		}
	}
}

func (l *resumingListener) Addr() net.Addr { return l.inner.Addr() }
