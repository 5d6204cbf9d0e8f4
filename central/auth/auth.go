// Package auth decides who a request comes from and what it may do.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Principal is the holder of a token.
type Principal struct {
	TokenID   string
	Name      string
	Role      string
	ClusterID string
}

// Access is what a route needs from its caller.
type Access int

// The kinds of access routes need.
const (
	// Read is any GET of the registry's resources: admins and readers.
	Read Access = iota
	// Write changes resources: admins only.
	Write
	// AgentAssignment reads one cluster's assignment: admins, readers and that cluster's agent.
	AgentAssignment
	// AgentStatus writes one cluster's status and its answers to plans:
	// admins and that cluster's agent.
	AgentStatus
)

// Permit decides whether p may use a route needing access, for the cluster
// named in the route's path (empty when the route names none).
func Permit(p Principal, access Access, clusterID string) bool {
	switch p.Role {
	case api.RoleAdmin:
		return true
	case api.RoleReader:
		return access == Read || access == AgentAssignment
	case api.RoleAgent:
		own := clusterID != "" && clusterID == p.ClusterID
		return own && (access == AgentAssignment || access == AgentStatus)
	}
	return false
}

// ErrUnauthenticated means the request carries no valid token.
var ErrUnauthenticated = errors.New("a valid bearer token is required")

// ErrNoToken is a TokenSource's answer for a secret no unrevoked token has.
var ErrNoToken = errors.New("no unrevoked token has this secret")

// TokenSource finds a token by its secret; the store implements it.
type TokenSource interface {
	// TokenBySecret answers an error that is ErrNoToken when no unrevoked
	// token has the secret; any other error is a failure to look.
	TokenBySecret(ctx context.Context, secret string) (api.Token, error)
	TokenGeneration() uint64
}

// cacheTTL bounds how long a token revoked behind the server's back (by
// `caravan-central token revoke` on the database) keeps working.
const cacheTTL = 30 * time.Second

// Authenticator turns bearer tokens into principals, caching known tokens
// so that an agent's steady-state poll does not touch the database.
type Authenticator struct {
	source TokenSource
	now    func() time.Time
	mu     sync.RWMutex
	cache  map[string]cachedPrincipal
}

type cachedPrincipal struct {
	principal Principal
	gen       uint64
	expires   time.Time
}

// NewAuthenticator returns an Authenticator over source.
func NewAuthenticator(source TokenSource, now func() time.Time) *Authenticator {
	return &Authenticator{source: source, now: now, cache: map[string]cachedPrincipal{}}
}

// Authenticate checks an Authorization header value.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	secret, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || secret == "" {
		return Principal{}, ErrUnauthenticated
	}
	now := a.now()
	gen := a.source.TokenGeneration()
	a.mu.RLock()
	c, ok := a.cache[secret]
	a.mu.RUnlock()
	if ok && c.gen == gen && now.Before(c.expires) {
		return c.principal, nil
	}
	t, err := a.source.TokenBySecret(ctx, secret)
	if errors.Is(err, ErrNoToken) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		// The database is down, say: the caller answers 503, not a 401
		// that would make an agent think its token is bad.
		return Principal{}, fmt.Errorf("checking a token: %w", err)
	}
	p := Principal{TokenID: t.ID, Name: t.Name, Role: t.Role, ClusterID: t.ClusterID}
	a.mu.Lock()
	if len(a.cache) > 100000 {
		clear(a.cache)
	}
	a.cache[secret] = cachedPrincipal{principal: p, gen: gen, expires: now.Add(cacheTTL)}
	a.mu.Unlock()
	return p, nil
}
