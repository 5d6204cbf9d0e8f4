package central_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
)

func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := central.Command()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestTokenCommandsBootstrapAccess(t *testing.T) {
	srv := centraltest.Start(t)
	out, err := runCommand(t, "token", "create", "--database", srv.Database, "--role", "admin", "--name", "bootstrap")
	require.NoError(t, err)
	secret := strings.TrimSpace(out)
	assert.Regexp(t, `^cvn_[a-z2-7]+$`, secret, "the secret is printed alone, for scripts")
	newClient(t, srv, secret).must(http.StatusOK, "GET", "/api/v1/clusters", nil)

	t.Setenv("CARAVAN_DATABASE", srv.Database)
	out, err = runCommand(t, "token", "list")
	require.NoError(t, err, "the database comes from CARAVAN_DATABASE")
	assert.Contains(t, out, "bootstrap")
	assert.NotContains(t, out, secret)
	var id string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "bootstrap") {
			id = strings.Fields(line)[0]
		}
	}
	_, err = runCommand(t, "token", "revoke", id)
	require.NoError(t, err)
	out, _ = runCommand(t, "token", "list")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "bootstrap") {
			fields := strings.Fields(line)
			assert.NotEqual(t, "-", fields[len(fields)-1], "the revoked token shows when it was revoked")
		}
	}

	_, err = runCommand(t, "token", "create", "--role", "agent", "--name", "x")
	assert.ErrorContains(t, err, "cluster_id")
}

func TestServeRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "c.db")
	_, err := runCommand(t, "serve", "--listen", "0.0.0.0:0", "--database", db)
	assert.ErrorContains(t, err, "refusing plain HTTP")
	_, err = runCommand(t, "serve", "--listen", "127.0.0.1:0", "--tls-cert", "x.pem", "--database", db)
	assert.ErrorContains(t, err, "--tls-cert and --tls-key go together")
}
