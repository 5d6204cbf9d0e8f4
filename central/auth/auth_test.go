package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func TestPermitMatrix(t *testing.T) {
	const own, other = "aws:123456789012:eu-central-1:a", "aws:123456789012:eu-central-1:b"
	admin := Principal{Role: api.RoleAdmin}
	reader := Principal{Role: api.RoleReader}
	agent := Principal{Role: api.RoleAgent, ClusterID: own}
	cases := []struct {
		p       Principal
		access  Access
		cluster string
		want    bool
	}{
		{admin, Read, "", true}, {admin, Write, "", true}, {admin, AgentAssignment, other, true}, {admin, AgentStatus, other, true},
		{reader, Read, "", true}, {reader, Write, "", false}, {reader, AgentAssignment, other, true}, {reader, AgentStatus, own, false},
		{agent, Read, "", false}, {agent, Read, own, false}, {agent, Write, own, false},
		{agent, AgentAssignment, own, true}, {agent, AgentAssignment, other, false},
		{agent, AgentStatus, own, true}, {agent, AgentStatus, other, false}, {agent, AgentStatus, "", false},
		{Principal{Role: "bogus"}, Read, "", false},
		{Principal{Role: api.RoleAgent}, AgentAssignment, "", false},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Permit(c.p, c.access, c.cluster), "%+v access %d cluster %q", c.p, c.access, c.cluster)
	}
}

type fakeTokens struct {
	tokens map[string]api.Token
	gen    uint64
	calls  int
	down   bool
}

func (f *fakeTokens) TokenBySecret(_ context.Context, secret string) (api.Token, error) {
	f.calls++
	if f.down {
		return api.Token{}, errors.New("connection refused")
	}
	t, ok := f.tokens[secret]
	if !ok {
		return api.Token{}, ErrNoToken
	}
	return t, nil
}

func (f *fakeTokens) TokenGeneration() uint64 { return f.gen }

func TestAuthenticatorCachesUntilTokensChangeOrTTL(t *testing.T) {
	src := &fakeTokens{tokens: map[string]api.Token{"s1": {ID: "1", Name: "ops", Role: api.RoleAdmin}}}
	now := time.Unix(1000, 0)
	a := NewAuthenticator(src, func() time.Time { return now })
	ctx := context.Background()

	p, err := a.Authenticate(ctx, "Bearer s1")
	require.NoError(t, err)
	assert.Equal(t, "ops", p.Name)
	_, err = a.Authenticate(ctx, "Bearer s1")
	require.NoError(t, err)
	assert.Equal(t, 1, src.calls, "a known token is served from the cache")

	delete(src.tokens, "s1")
	src.gen++
	_, err = a.Authenticate(ctx, "Bearer s1")
	assert.ErrorIs(t, err, ErrUnauthenticated, "a revoked token stops working when tokens change")

	src.tokens["s2"] = api.Token{Name: "b", Role: api.RoleReader}
	_, err = a.Authenticate(ctx, "Bearer s2")
	require.NoError(t, err)
	delete(src.tokens, "s2")
	now = now.Add(cacheTTL + time.Second)
	_, err = a.Authenticate(ctx, "Bearer s2")
	assert.ErrorIs(t, err, ErrUnauthenticated, "a token revoked behind the server's back stops working after the TTL")

	for _, h := range []string{"", "Bearer ", "Basic abc", "bearer s1"} {
		_, err = a.Authenticate(ctx, h)
		assert.ErrorIs(t, err, ErrUnauthenticated, h)
	}
}

// A token that cannot be looked up is not a bad token: the caller answers
// 503 and an agent keeps its credentials.
func TestAuthenticatorTellsAnUnknownTokenFromAFailedLookup(t *testing.T) {
	src := &fakeTokens{tokens: map[string]api.Token{}}
	a := NewAuthenticator(src, time.Now)
	_, err := a.Authenticate(context.Background(), "Bearer unknown")
	assert.ErrorIs(t, err, ErrUnauthenticated)
	src.down = true
	_, err = a.Authenticate(context.Background(), "Bearer unknown")
	assert.Error(t, err)
	assert.NotErrorIs(t, err, ErrUnauthenticated)
}
