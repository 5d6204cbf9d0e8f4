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
// is taken over by a long-poll. Connections beyond a limit are closed at
// once, before any byte is read, so that clients that never authenticate
// (slow bodies, slow headers, floods of sign-ins) cannot use up the
// server's descriptors; authenticated clients are not limited by it.
//
// Behind a proxy every client has the proxy's address: raise the per
// address limit there, or set it to 0 (no limit).
type ConnGuard struct {
	maxTotal, maxPerIP int
	mu                 sync.Mutex
	total              int
	byIP               map[string]int
	conns              map[net.Conn]*connInfo
	refused            atomic.Int64
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
	return &ConnGuard{maxTotal: maxTotal, maxPerIP: maxPerIP, byIP: map[string]int{}, conns: map[net.Conn]*connInfo{}}
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext: it counts the new
// connection, or closes it when a limit is reached.
func (g *ConnGuard) ConnContext(ctx context.Context, c net.Conn) context.Context {
	ip := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	info := &connInfo{guard: g, ip: ip}
	g.mu.Lock()
	over := (g.maxTotal > 0 && g.total >= g.maxTotal) || (g.maxPerIP > 0 && g.byIP[ip] >= g.maxPerIP)
	if !over {
		info.counted = true
		g.total++
		g.byIP[ip]++
		g.conns[c] = info
	}
	g.mu.Unlock()
	if over {
		g.refused.Add(1)
		_ = c.Close()
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
	if info, ok := g.conns[c]; ok {
		delete(g.conns, c)
		g.uncount(info)
	}
}

// uncount stops counting info; the caller holds g.mu.
func (g *ConnGuard) uncount(info *connInfo) {
	if !info.counted {
		return
	}
	info.counted = false
	g.total--
	if g.byIP[info.ip] <= 1 {
		delete(g.byIP, info.ip)
	} else {
		g.byIP[info.ip]--
	}
}

// Refused is how many connections were closed at a limit.
func (g *ConnGuard) Refused() int64 { return g.refused.Load() }

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
