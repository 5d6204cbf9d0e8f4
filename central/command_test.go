package central_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/cli"
	"github.com/caravan-gitops/caravan/pkg/api"
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

// TestDemoSeedsAFleetAndWritesItsEnvironment runs what `make run` runs and
// uses the written demo.env with the caravan CLI, as the README says.
func TestDemoSeedsAFleetAndWritesItsEnvironment(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := central.Command()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"demo", "--dir", dir, "--listen", "127.0.0.1:0", "--log-level", "warn"})
		done <- cmd.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	env := map[string]string{}
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "demo.env"))
		if err != nil {
			return false
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond)
	require.NotEmpty(t, env["CARAVAN_SERVER"])
	require.NotEmpty(t, env["CARAVAN_TOKEN"])
	t.Setenv("CARAVAN_SERVER", env["CARAVAN_SERVER"])
	t.Setenv("CARAVAN_TOKEN", env["CARAVAN_TOKEN"])
	var out, errOut bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"clusters", "list", "-o", "json"}, strings.NewReader(""), &out, &errOut), errOut.String())
	var clusters []api.Cluster
	require.NoError(t, json.Unmarshal(out.Bytes(), &clusters))
	channels, environments := map[string]bool{}, map[string]bool{}
	for _, c := range clusters {
		channels[c.Channel], environments[c.Environment] = true, true
		assert.NotEmpty(t, c.NodePools, c.ID)
		assert.NotEmpty(t, c.ConfigItems, c.ID)
	}
	assert.Len(t, channels, 4, "clusters in every channel")
	assert.Len(t, environments, 2, "and in both environments")
}
