package cli

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// A registry given as several replicas, one of which cannot be reached:
// every command gets its answer from the other, whichever the client
// starts at, from the flag, the environment or a context.
func TestSeveralServersOneUnreachable(t *testing.T) {
	path := isolate(t)
	rec, up := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		writeJSONAnswer(w, http.StatusOK, `"v1"`, api.Cluster{ID: "aws:123456789012:eu-central-1:kube-1", Alias: "kube-1"})
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	servers := down + "," + up

	for range 4 {
		code, stdout, stderr := run(t, "", "clusters", "get", "kube-1", "--server", servers)
		assert.Equal(t, ExitOK, code, stderr)
		assert.Contains(t, stdout, "kube-1")
	}
	t.Setenv(envServer, servers)
	code, _, stderr := run(t, "", "clusters", "get", "kube-1")
	assert.Equal(t, ExitOK, code, stderr)
	t.Setenv(envServer, "")
	code, _, stderr = run(t, "", "config", "set-context", "prod", "--server", servers, "--token", "t")
	require.Equal(t, ExitOK, code, stderr)
	code, _, stderr = run(t, "", "config", "use-context", "prod")
	require.Equal(t, ExitOK, code, stderr)
	code, _, stderr = run(t, "", "clusters", "get", "kube-1")
	assert.Equal(t, ExitOK, code, stderr)
	assert.FileExists(t, path)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Len(t, rec.requests, 6, "every command reached the replica that answers")
	assert.Equal(t, "Bearer t", rec.headers[5].Get("Authorization"), "the context's token goes to its servers")
}

func TestAServerListWithABadURLIsRefused(t *testing.T) {
	isolate(t)
	code, _, stderr := run(t, "", "clusters", "get", "kube-1", "--server", "https://a.example.org,registry-b")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, `registry URL "registry-b": must be an absolute http(s) URL`)
}
