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
	"slices"
	"strings"

	"github.com/caravan-gitops/caravan/central/auth"
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
	secret, err := newSecret()
	if err != nil {
		return api.Token{}, err
	}
	return s.insertToken(ctx, name, role, clusterID, secret, actor)
}

func (s *Store) insertToken(ctx context.Context, name, role, clusterID, secret, actor string) (api.Token, error) {
	if err := api.ValidateToken(name, role, clusterID); err != nil {
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

// TokenBySecret finds the unrevoked token with this secret. Lookups
// arriving together (a replica's agents all moving to this one) are made
// in one query.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (api.Token, error) {
	t, found, err := s.tokenReader.get(ctx, HashToken(secret))
	if err != nil {
		return api.Token{}, err
	}
	if !found || t.RevokedAt != nil {
		return api.Token{}, fmt.Errorf("%w: %w", ErrNotFound, auth.ErrNoToken)
	}
	return t, nil
}

// readTokens reads the tokens, revoked or not, whose secrets have hashes.
func (s *Store) readTokens(ctx context.Context, hashes []string) (map[string]api.Token, error) {
	out := make(map[string]api.Token, len(hashes))
	for page := range slices.Chunk(hashes, pageSize) {
		err := s.scanDocs(ctx, `SELECT hash, doc FROM tokens WHERE hash IN `+inList(len(page)), queryArgs(page), func(hash string, doc []byte) error {
			var t api.Token
			if err := json.Unmarshal(doc, &t); err != nil {
				return fmt.Errorf("decoding token: %w", err)
			}
			out[hash] = t
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("looking up tokens: %w", err)
		}
	}
	return out, nil
}

// tokenWhere reads the token, revoked or not, whose column (hash or name,
// both unique) holds value.
func (s *Store) tokenWhere(ctx context.Context, column, value string) (Record[api.Token], error) {
	var doc string
	var revision int64
	err := s.read.QueryRowContext(ctx, s.rebind(`SELECT doc, revision FROM tokens WHERE `+column+` = ?`), value).Scan(&doc, &revision)
	if errors.Is(err, sql.ErrNoRows) {
		return Record[api.Token]{}, ErrNotFound
	}
	if err != nil {
		return Record[api.Token]{}, fmt.Errorf("looking up token: %w", err)
	}
	var t api.Token
	if err := json.Unmarshal([]byte(doc), &t); err != nil {
		return Record[api.Token]{}, fmt.Errorf("decoding token: %w", err)
	}
	return Record[api.Token]{Value: t, Revision: revision}, nil
}

// AdminTokenOutcome is what EnsureAdminToken did.
type AdminTokenOutcome string

// What EnsureAdminToken may do.
const (
	// AdminTokenCreated: no token had the name yet; it was made with the secret.
	AdminTokenCreated AdminTokenOutcome = "created"
	// AdminTokenRotated: the token of that name got the new secret and is
	// valid again if it was revoked; its former secret no longer works.
	AdminTokenRotated AdminTokenOutcome = "rotated"
	// AdminTokenUnchanged: a valid admin token has the secret already.
	AdminTokenUnchanged AdminTokenOutcome = "unchanged"
	// AdminTokenRevoked: the token with the secret was revoked and stays so.
	AdminTokenRevoked AdminTokenOutcome = "revoked"
)

// EnsureAdminToken makes secret the secret of an admin token, for a secret
// the registry is given when it starts. A secret some admin token has
// already changes nothing, whatever that token's name, so restarts are
// idempotent. A new secret goes to the admin token called name, which is
// created the first time and has its secret replaced afterwards. A revoked
// token is never revived by its own secret: a revocation through the API
// holds across restarts, and only a new secret brings the token back.
func (s *Store) EnsureAdminToken(ctx context.Context, name, secret, actor string) (api.Token, AdminTokenOutcome, error) {
	t, outcome, err := s.ensureAdminToken(ctx, name, secret, actor)
	if errors.Is(err, ErrExists) || errors.Is(err, ErrStale) {
		// Another replica starting with the same secret wrote first: read what it wrote.
		t, outcome, err = s.ensureAdminToken(ctx, name, secret, actor)
	}
	return t, outcome, err
}

func (s *Store) ensureAdminToken(ctx context.Context, name, secret, actor string) (api.Token, AdminTokenOutcome, error) {
	holder, err := s.tokenWhere(ctx, "hash", HashToken(secret))
	switch {
	case err == nil && holder.Value.Role != api.RoleAdmin:
		return api.Token{}, "", fmt.Errorf("the secret is the one of token %q, a %s token, not an admin token", holder.Value.Name, holder.Value.Role)
	case err == nil && holder.Value.RevokedAt != nil:
		return holder.Value, AdminTokenRevoked, nil
	case err == nil:
		return holder.Value, AdminTokenUnchanged, nil
	case !errors.Is(err, ErrNotFound):
		return api.Token{}, "", err
	}
	named, err := s.tokenWhere(ctx, "name", name)
	if errors.Is(err, ErrNotFound) {
		t, err := s.insertToken(ctx, name, api.RoleAdmin, "", secret, actor)
		return t, AdminTokenCreated, err
	}
	if err != nil {
		return api.Token{}, "", err
	}
	if named.Value.Role != api.RoleAdmin {
		return api.Token{}, "", fmt.Errorf("the token name %q is taken by a %s token", name, named.Value.Role)
	}
	t, err := s.rotateToken(ctx, named, secret, actor)
	return t, AdminTokenRotated, err
}

// rotateToken gives a token a new secret, valid from now on; the token
// keeps its id and name.
func (s *Store) rotateToken(ctx context.Context, rec Record[api.Token], secret, actor string) (api.Token, error) {
	t := rec.Value
	t.CreatedAt, t.CreatedBy, t.RevokedAt = s.now().UTC(), actor, nil
	doc, err := json.Marshal(t)
	if err != nil {
		return api.Token{}, err
	}
	err = s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		// A replica that read the name after another one rotated it, but
		// the secret before, finds the secret in place: stale, not a second
		// rotation.
		hash := HashToken(secret)
		res, err := tx.ExecContext(ctx, s.rebind(`UPDATE tokens SET doc = ?, hash = ?, revision = revision + 1 WHERE key = ? AND revision = ? AND hash <> ?`),
			string(doc), hash, t.ID, rec.Revision, hash)
		if err != nil {
			return fmt.Errorf("rotating token %q: %w", t.Name, err)
		}
		if count, _ := res.RowsAffected(); count == 0 {
			return fmt.Errorf("token %q: %w", t.Name, ErrStale)
		}
		n.tokens = true
		return s.audit(ctx, tx, actor, "update", "token", t.ID, rec.Value, json.RawMessage(doc))
	})
	return t, err
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
