package store

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// listener carries the other replicas' writes into the local hub through
// PostgreSQL LISTEN, so a long-poll on one replica wakes for a write on another.
type listener struct {
	cancel    context.CancelFunc
	done      chan struct{}
	connected atomic.Bool
}

// maxListenBackoff bounds the wait between two attempts to listen again:
// the replica is unready, and its caches untrusted, until it listens, and
// an attempt every two seconds costs the database nothing.
const maxListenBackoff = 2 * time.Second

// livenessInterval is how long the listener waits for a notification
// before it pings, so a half-open connection is found within about this time.
const livenessInterval = 15 * time.Second

func startListener(ctx context.Context, dsn, origin string, hub *Hub, log *slog.Logger) (*listener, error) {
	conn, err := listen(ctx, dsn)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &listener{cancel: cancel, done: make(chan struct{})}
	l.connected.Store(true)
	go l.run(lctx, conn, dsn, origin, hub, log)
	return l, nil
}

func listen(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func (l *listener) run(ctx context.Context, conn *pgx.Conn, dsn, origin string, hub *Hub, log *slog.Logger) {
	defer close(l.done)
	backoff := 100 * time.Millisecond
	for {
		for conn != nil {
			payload, err := waitForNotification(ctx, conn)
			if err != nil {
				conn.Close(context.Background())
				conn = nil
				l.connected.Store(false)
				if ctx.Err() != nil {
					return
				}
				log.Warn("lost the database notification connection; reconnecting", "error", err)
				break
			}
			if payload != "" {
				dispatch(hub, origin, payload)
			}
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxListenBackoff)
		c, err := listen(ctx, dsn)
		if err != nil {
			log.Warn("reconnecting for database notifications failed", "error", err)
			continue
		}
		conn = c
		l.connected.Store(true)
		// Writes made while disconnected were never heard: assume everything changed.
		hub.ChangedAll()
	}
}

// waitForNotification returns the next payload, or "" after a quiet
// livenessInterval in which a ping showed the connection alive.
func waitForNotification(ctx context.Context, conn *pgx.Conn) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, livenessInterval)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err == nil {
		return n.Payload, nil
	}
	if ctx.Err() != nil || wctx.Err() == nil {
		return "", err
	}
	pctx, cancelPing := context.WithTimeout(ctx, 5*time.Second)
	defer cancelPing()
	if err := conn.Ping(pctx); err != nil {
		return "", err
	}
	return "", nil
}

// dispatch announces another replica's write, as notifyReplicas sent it;
// anything else, such as the "*" of older replicas, may have changed all.
// This replica's own writes, which it announced when they committed, are
// skipped.
func dispatch(hub *Hub, origin, payload string) {
	from, payload, ok := strings.Cut(payload, originSeparator)
	if !ok {
		payload = from
	} else if from == origin {
		return
	}
	switch {
	case payload == "t":
		hub.TokensChanged()
	case strings.HasPrefix(payload, "c:"):
		hub.Changed(idList(payload[2:])...)
	case strings.HasPrefix(payload, "f:"):
		hub.FleetChanged(idList(payload[2:])...)
	case strings.HasPrefix(payload, "w:"):
		hub.Wake(idList(payload[2:])...)
	default:
		hub.ChangedAll()
	}
}

func idList(joined string) []string {
	if joined == "" {
		return nil
	}
	return strings.Split(joined, ",")
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
