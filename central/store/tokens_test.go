package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// A secret no token has, or a revoked token's, is auth.ErrNoToken; a
// database that cannot answer is another error, which the API turns into
// a 503 rather than a 401.
func TestTokenBySecretTellsNoTokenFromAFailedLookup(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "registry.db"))
	require.NoError(t, err)
	token, err := s.CreateToken(ctx, "ops", api.RoleAdmin, "", "test")
	require.NoError(t, err)
	got, err := s.TokenBySecret(ctx, token.Secret)
	require.NoError(t, err)
	assert.Equal(t, token.ID, got.ID)

	_, err = s.TokenBySecret(ctx, "no-such-secret")
	assert.ErrorIs(t, err, auth.ErrNoToken)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.RevokeToken(ctx, token.ID, "test")
	require.NoError(t, err)
	_, err = s.TokenBySecret(ctx, token.Secret)
	assert.ErrorIs(t, err, auth.ErrNoToken, "a revoked token")

	require.NoError(t, s.Close())
	_, err = s.TokenBySecret(ctx, token.Secret)
	assert.Error(t, err)
	assert.NotErrorIs(t, err, auth.ErrNoToken, "a closed database")
}

// Lookups arriving together, as when a replica's agents all move to this
// one, are answered each with its own token, in a few queries.
func TestTokensLookedUpTogetherAreEachFound(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "registry.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	var tokens []api.Token
	for i := range 200 {
		tok, err := s.CreateToken(ctx, fmt.Sprintf("agent-%d", i), api.RoleReader, "", "test")
		require.NoError(t, err)
		tokens = append(tokens, tok)
	}
	_, err = s.RevokeToken(ctx, tokens[0].ID, "test")
	require.NoError(t, err)

	var wg sync.WaitGroup
	got := make([]api.Token, len(tokens))
	errs := make([]error, len(tokens))
	for i, tok := range tokens {
		wg.Go(func() { got[i], errs[i] = s.TokenBySecret(ctx, tok.Secret) })
	}
	var unknown error
	wg.Go(func() { _, unknown = s.TokenBySecret(ctx, "no-such-secret") })
	wg.Wait()
	assert.ErrorIs(t, errs[0], auth.ErrNoToken, "the revoked token")
	for i := 1; i < len(tokens); i++ {
		require.NoError(t, errs[i])
		assert.Equal(t, tokens[i].ID, got[i].ID)
	}
	assert.ErrorIs(t, unknown, auth.ErrNoToken)
}
