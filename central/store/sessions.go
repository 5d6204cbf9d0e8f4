package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// sessionPrefix tells a session cookie's secret from an API token's.
const sessionPrefix = "cvs_"

// CreateSession starts a web UI session of the token tokenID, valid for
// ttl, and returns its secret, the only time it is seen: the store keeps
// only its hash. Expired sessions are dropped on the way.
func (s *Store) CreateSession(ctx context.Context, tokenID string, ttl time.Duration) (string, time.Time, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("reading random bytes: %w", err)
	}
	secret := sessionPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
	now := s.now().UTC()
	expires := now.Add(ttl)
	if _, err := s.write.ExecContext(ctx, s.rebind(`DELETE FROM sessions WHERE expires_at <= ?`), formatTime(now)); err != nil {
		return "", time.Time{}, fmt.Errorf("dropping expired sessions: %w", err)
	}
	if _, err := s.write.ExecContext(ctx, s.rebind(`INSERT INTO sessions (hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)`),
		HashToken(secret), tokenID, formatTime(now), formatTime(expires)); err != nil {
		return "", time.Time{}, fmt.Errorf("creating a session: %w", err)
	}
	return secret, expires, nil
}

// SessionToken finds the token of the session with this secret; ErrNotFound
// when there is no such session, it expired, or its token was revoked.
func (s *Store) SessionToken(ctx context.Context, secret string) (api.Token, error) {
	var doc string
	err := s.read.QueryRowContext(ctx, s.rebind(`SELECT t.doc FROM sessions s JOIN tokens t ON t.key = s.token_id WHERE s.hash = ? AND s.expires_at > ?`),
		HashToken(secret), formatTime(s.now())).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return api.Token{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return api.Token{}, fmt.Errorf("looking up a session: %w", err)
	}
	var t api.Token
	if err := json.Unmarshal([]byte(doc), &t); err != nil {
		return api.Token{}, fmt.Errorf("decoding token: %w", err)
	}
	if t.RevokedAt != nil {
		return api.Token{}, fmt.Errorf("session of a revoked token: %w", ErrNotFound)
	}
	return t, nil
}

// DeleteSession ends the session with this secret, if there is one.
func (s *Store) DeleteSession(ctx context.Context, secret string) error {
	if _, err := s.write.ExecContext(ctx, s.rebind(`DELETE FROM sessions WHERE hash = ?`), HashToken(secret)); err != nil {
		return fmt.Errorf("ending a session: %w", err)
	}
	return nil
}
