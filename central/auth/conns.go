package auth

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// ConnGuard limits the connections that have not authenticated yet, in
// all and per client address: a connection counts from its accept until a
// request on it presents a valid token or web UI session, or it closes or
// is taken over by a long-poll. So clients that never authenticate (slow
// bodies, slow headers, floods of sign-ins) cannot use up the server's
// descriptors and memory; authenticated clients are not limited by it.
//
// At the limit in all, the guard's listener accepts no more connections
// until one of those counted authenticates or closes: the ones arriving
// meanwhile wait in the kernel's accept queue, which holds no descriptor
// of the server's, and are served in turn. A fleet's agents that all
// connect at once (their replica failed, and they move to this one) are
// so served as fast as they authenticate, not refused. A connection beyond
// the limit of its address is closed at once: one client is not let to
// hold the queue.
//
// Behind a proxy every client has the proxy's address: raise the per
// address limit there, or set it to 0 (no limit).
type ConnGuard struct {
	maxPerIP int
	// slots holds a token for every counted connection; nil without a
	// limit in all.
	slots chan struct{}

	mu      sync.Mutex
	byIP    map[string]int
	conns   map[net.Conn]*connInfo
	refused atomic.Int64
	waited  atomic.Int64
}

type connInfo struct {
	guard *ConnGuard
	ip    string
	// counted: the connection counts as unauthenticated.
	counted bool
}

// NewConnGuard limits unauthenticated connections to maxTotal in all and
// maxPerIP per client address; 0 means no limit.
func NewConnGuard(maxTotal, maxPerIP int) *ConnGuard {
	g := &ConnGuard{maxPerIP: maxPerIP, byIP: map[string]int{}, conns: map[net.Conn]*connInfo{}}
	if maxTotal > 0 {
		g.slots = make(chan struct{}, maxTotal)
	}
	return g
}

// Listener returns ln guarded: its Accept waits while the limit in all is
// reached, and closes at once a connection beyond its address's limit.
func (g *ConnGuard) Listener(ln net.Listener) net.Listener {
	return &guardedListener{Listener: ln, guard: g, closed: make(chan struct{})}
}

type guardedListener struct {
	net.Listener
	guard     *ConnGuard
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *guardedListener) Accept() (net.Conn, error) {
	g := l.guard
	for {
		if !g.takeSlot(l.closed) {
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			g.giveSlot()
			return nil, err
		}
		if g.count(c) {
			return c, nil
		}
		g.giveSlot()
		g.refused.Add(1)
		_ = c.Close()
	}
}

func (l *guardedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// takeSlot waits for a free place among the unauthenticated connections;
// false means the listener closed meanwhile.
func (g *ConnGuard) takeSlot(closed <-chan struct{}) bool {
	if g.slots == nil {
		return true
	}
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	g.waited.Add(1)
	select {
	case g.slots <- struct{}{}:
		return true
	case <-closed:
		return false
	}
}

func (g *ConnGuard) giveSlot() {
	if g.slots != nil {
		<-g.slots
	}
}

// count counts the new connection c, unless its address is at its limit.
func (g *ConnGuard) count(c net.Conn) bool {
	ip := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxPerIP > 0 && g.byIP[ip] >= g.maxPerIP {
		return false
	}
	g.byIP[ip]++
	g.conns[c] = &connInfo{guard: g, ip: ip, counted: true}
	return true
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext: it lets the requests of a
// connection the guard counts mark it authenticated. Connections the
// guard's listener did not accept (a long-poll's, given back once
// answered) are not counted.
func (g *ConnGuard) ConnContext(ctx context.Context, c net.Conn) context.Context {
	g.mu.Lock()
	info, ok := g.conns[netConn(c)]
	g.mu.Unlock()
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, connKey{}, info)
}

// ConnState is the http.Server's ConnState: a connection that closes or
// is taken over stops counting.
func (g *ConnGuard) ConnState(c net.Conn, state http.ConnState) {
	if state != http.StateClosed && state != http.StateHijacked {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if info, ok := g.conns[netConn(c)]; ok {
		delete(g.conns, netConn(c))
		g.uncount(info)
	}
}

// netConn is the connection the listener accepted: a TLS connection's
// underlying one.
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		return tc.NetConn()
	}
	return c
}

// uncount stops counting info; the caller holds g.mu.
func (g *ConnGuard) uncount(info *connInfo) {
	if !info.counted {
		return
	}
	info.counted = false
	g.giveSlot()
	if g.byIP[info.ip] <= 1 {
		delete(g.byIP, info.ip)
	} else {
		g.byIP[info.ip]--
	}
}

// Refused is how many connections were closed at their address's limit.
func (g *ConnGuard) Refused() int64 { return g.refused.Load() }

// Waited is how many times the listener waited for a place among the
// unauthenticated connections before accepting the next one.
func (g *ConnGuard) Waited() int64 { return g.waited.Load() }

// MarkAuthenticated records that the connection of the request ctx belongs
// to presented a valid token or session; it stops counting as unauthenticated.
func MarkAuthenticated(ctx context.Context) {
	info, ok := ctx.Value(connKey{}).(*connInfo)
	if !ok {
		return
	}
	g := info.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	g.uncount(info)
}

// Unauthenticated reports whether the connection of the request ctx
// belongs to still counts as not authenticated: its answer should close
// it, to give its place to the next connection.
func Unauthenticated(ctx context.Context) bool {
	info, ok := ctx.Value(connKey{}).(*connInfo)
	if !ok {
		return false
	}
	info.guard.mu.Lock()
	defer info.guard.mu.Unlock()
	return info.counted
}
