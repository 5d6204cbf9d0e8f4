package store

import (
	"context"
	"path/filepath"
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
