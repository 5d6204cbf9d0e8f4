package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// tokenPrefix makes leaked tokens easy to recognise by secret scanners.
const tokenPrefix = "cvn_"

// HashToken is how a token secret is stored: only its SHA-256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return tokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// NewID returns a random identifier for a new resource.
func NewID() (string, error) { return newID() }

// CreateToken stores a new token and returns it with its secret, the only
// time the secret is ever seen.
func (s *Store) CreateToken(ctx context.Context, name, role, clusterID, actor string) (api.Token, error) {
	if err := api.ValidateToken(name, role, clusterID); err != nil {
		return api.Token{}, err
	}
	secret, err := newSecret()
	if err != nil {
		return api.Token{}, err
	}
	id, err := newID()
	if err != nil {
		return api.Token{}, err
	}
	t := api.Token{ID: id, Name: name, Role: role, ClusterID: clusterID, CreatedAt: s.now().UTC(), CreatedBy: actor}
	doc, err := json.Marshal(t)
	if err != nil {
		return api.Token{}, err
	}
	err = s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		res, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO tokens (key, parent, doc, revision, name, hash, role) VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO NOTHING`),
			id, clusterID, string(doc), name, HashToken(secret), role)
		if err != nil {
			return fmt.Errorf("creating token %q: %w", name, err)
		}
		if count, _ := res.RowsAffected(); count == 0 {
			return fmt.Errorf("token named %q: %w", name, ErrExists)
		}
		n.tokens = true
		return s.audit(ctx, tx, actor, "create", "token", id, nil, json.RawMessage(doc))
	})
	if err != nil {
		return api.Token{}, err
	}
	t.Secret = secret
	return t, nil
}

// TokenBySecret finds the unrevoked token with this secret.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (api.Token, error) {
	var doc string
	err := s.read.QueryRowContext(ctx, s.rebind(`SELECT doc FROM tokens WHERE hash = ?`), HashToken(secret)).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return api.Token{}, ErrNotFound
	}
	if err != nil {
		return api.Token{}, fmt.Errorf("looking up token: %w", err)
	}
	var t api.Token
	if err := json.Unmarshal([]byte(doc), &t); err != nil {
		return api.Token{}, fmt.Errorf("decoding token: %w", err)
	}
	if t.RevokedAt != nil {
		return api.Token{}, ErrNotFound
	}
	return t, nil
}

// Tokens lists tokens, revoked ones included, ordered by id.
func (s *Store) Tokens(ctx context.Context, f Filter) ([]api.Token, string, error) {
	recs, next, err := List(ctx, s, tokenKind, f)
	if err != nil {
		return nil, "", err
	}
	out := make([]api.Token, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out, next, nil
}

// Token reads one token.
func (s *Store) Token(ctx context.Context, id string) (Record[api.Token], error) {
	return Get(ctx, s, tokenKind, id)
}

// RevokeToken marks a token revoked; it stays listed for the audit trail.
func (s *Store) RevokeToken(ctx context.Context, id, actor string) (api.Token, error) {
	rec, err := s.Token(ctx, id)
	if err != nil {
		return api.Token{}, err
	}
	if rec.Value.RevokedAt != nil {
		return rec.Value, nil
	}
	t := rec.Value
	now := s.now().UTC()
	t.RevokedAt = &now
	doc, err := json.Marshal(t)
	if err != nil {
		return api.Token{}, err
	}
	err = s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE tokens SET doc = ?, revision = revision + 1 WHERE key = ?`), string(doc), id); err != nil {
			return fmt.Errorf("revoking token %q: %w", id, err)
		}
		n.tokens = true
		return s.audit(ctx, tx, actor, "revoke", "token", id, rec.Value, json.RawMessage(doc))
	})
	return t, err
}

// tokenKind reads tokens through the generic list; writes go through the
// functions above because the hash column is not part of the document.
var tokenKind = Kind[api.Token]{table: "tokens", resource: "token", columns: []string{"role", "name"}}
