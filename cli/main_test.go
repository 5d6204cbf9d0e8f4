package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// isolate points the command line at an empty config and environment.
func isolate(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	t.Setenv(envConfig, path)
	t.Setenv(envServer, "")
	t.Setenv(envToken, "")
	return path
}

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// recorder is a fake registry for the tests of what the command line sends
// and how it reports answers; the real registry is in e2e_test.go.
type recorder struct {
	mu       sync.Mutex
	requests []string
	headers  []http.Header
	bodies   []string
	answer   func(w http.ResponseWriter, r *http.Request, n int)
}

func fakeRegistry(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) (*recorder, string) {
	t.Helper()
	rec := &recorder{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.requests = append(rec.requests, r.Method+" "+r.URL.RequestURI())
		rec.headers = append(rec.headers, r.Header.Clone())
		rec.bodies = append(rec.bodies, string(body))
		n := len(rec.requests)
		rec.mu.Unlock()
		rec.answer(w, r, n)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

func writeJSONAnswer(w http.ResponseWriter, code int, etag string, v any) {
	w.Header().Set("Content-Type", "application/json")
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func TestUsageErrorsExitWith2(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"clustrs"}, `unknown command "clustrs" for "caravan"; did you mean clusters?`},
		{[]string{"clusters", "lst"}, `unknown command "lst" for "caravan clusters"`},
		{[]string{"clusters", "config", "frobnicate"}, `unknown command "frobnicate" for "caravan clusters config"`},
		{[]string{"clusters", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"clusters", "get"}, "accepts 1 arg(s), received 0"},
		{[]string{"clusters", "get", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"clusters", "list", "extra"}, `unknown command "extra" for "caravan clusters list"`},
		{[]string{"nodepools", "get", "only-cluster"}, "accepts 2 arg(s), received 1"},
		{[]string{"clusters", "list", "-o", "xml"}, `invalid argument "xml" for "-o, --output" flag: must be one of table, wide, json, yaml`},
		{[]string{"clusters", "get", "x", "-o", "wide"}, "must be one of yaml, json"},
		{[]string{"clusters", "create"}, `required flag(s) "filename" not set`},
		{[]string{"clusters", "block", "x"}, `required flag(s) "reason" not set`},
		{[]string{"clusters", "block", "x", "--reason", "r", "--until", "2030-01-01T00:00:00Z", "--for", "1h"}, "none of the others can be"},
		{[]string{"clusters", "block", "x", "--reason", "r", "--until", "tomorrow"}, "--until must be an RFC 3339 time"},
		{[]string{"clusters", "block", "x", "--reason", "r", "--for", "-1h"}, "--for must be positive"},
		{[]string{"clusters", "block", "x", "--reason", "r", "--for", "soon"}, `invalid argument "soon" for "--for" flag`},
		{[]string{"clusters", "patch", "x", "--patch", "[1]"}, "--patch must be a JSON object"},
		{[]string{"clusters", "config", "set", "x", "Bad-Key", "v"}, `config item key "Bad-Key" must match`},
		{[]string{"clusters", "decommission"}, "accepts 1 arg(s), received 0"},
		{[]string{"clusters", "decommission", "x", "--confirm=maybe"}, `invalid argument "maybe" for "--confirm" flag`},
		{[]string{"tokens", "create", "--name", "ci", "--role", "root"}, "role: must be one of admin, reader, agent"},
		{[]string{"audit", "--limit", "-1"}, "--limit must not be negative"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, "", tc.args...)
			assert.Equal(t, ExitUsage, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
			assert.Contains(t, stderr, "--help' for usage.")
		})
	}
}

func TestHelpExitsWith0(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{{}, {"--help"}, {"clusters"}, {"clusters", "list", "--help"}, {"help", "nodepools"}} {
		code, stdout, stderr := run(t, "", args...)
		assert.Equal(t, ExitOK, code, args)
		assert.Contains(t, stdout, "Usage:", args)
		assert.Empty(t, stderr, args)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	a := &app{}
	var walk func(path string, cmds []*cobra.Command)
	walk = func(path string, cmds []*cobra.Command) {
		for _, c := range cmds {
			name := path + " " + c.Name()
			assert.NotEmpty(t, c.Short, name)
			assert.NotEmpty(t, c.Long, name)
			assert.NotEmpty(t, c.Example, name)
			for _, line := range strings.Split(c.Example, "\n") {
				assert.True(t, strings.HasPrefix(line, "  "), "%s: example line %q is not indented", name, line)
			}
			walk(name, c.Commands())
		}
	}
	walk("caravan", a.rootCommand().Commands())
}

func TestProblemAnswerExitsWith1(t *testing.T) {
	isolate(t)
	_, url := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(api.Problem{
			Type: api.ProblemTypeBase + "invalid", Title: "Invalid cluster", Status: http.StatusUnprocessableEntity,
			Detail: "the cluster has 2 invalid fields",
			Errors: []api.FieldError{{Field: "alias", Detail: "must be a DNS label"}, {Field: "channel", Detail: `channel "nope" does not exist`}},
		})
	})

	code, stdout, stderr := run(t, "id: aws:123456789012:eu-central-1:kube-1\nchannel: nope\n",
		"clusters", "create", "-f", "-", "--server", url, "--token", "t")

	assert.Equal(t, ExitError, code)
	assert.Empty(t, stdout)
	assert.Equal(t, `Error: Invalid cluster (HTTP 422)
the cluster has 2 invalid fields
  alias: must be a DNS label
  channel: channel "nope" does not exist
`, stderr)
}

func TestNotFoundExitsWith1(t *testing.T) {
	isolate(t)
	_, url := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"type":"about:blank","title":"Not found","status":404,"detail":"cluster \"x\" does not exist","field":"id"}`)
	})

	code, _, stderr := run(t, "", "clusters", "get", "x", "--server", url)

	assert.Equal(t, ExitError, code)
	assert.Equal(t, "Error: Not found (HTTP 404)\ncluster \"x\" does not exist\n  field: id\n", stderr)
}

func TestNoServerExitsWith1(t *testing.T) {
	isolate(t)
	code, _, stderr := run(t, "", "clusters", "list")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "Error: no registry server: pass --server, set CARAVAN_SERVER")
}

func TestUnreadableFileExitsWith1(t *testing.T) {
	isolate(t)
	code, _, stderr := run(t, "", "clusters", "create", "-f", filepath.Join(t.TempDir(), "missing.yaml"), "--server", "http://127.0.0.1:1")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "missing.yaml: no such file or directory")
}

func TestListFollowsPagesAndFilters(t *testing.T) {
	isolate(t)
	clusters := fixtureClusters()
	rec, url := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			writeJSONAnswer(w, http.StatusOK, "", api.List[api.Cluster]{Items: clusters[:2], Next: "page-2"})
			return
		}
		writeJSONAnswer(w, http.StatusOK, "", api.List[api.Cluster]{Items: clusters[2:]})
	})
	t.Setenv(envServer, url)
	t.Setenv(envToken, "env-token")

	code, stdout, stderr := run(t, "", "clusters", "list", "--channel", "dev", "--environment", "test", "-o", "json")

	require.Equal(t, ExitOK, code, stderr)
	var got []api.Cluster
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	assert.Equal(t, clusters, got)
	assert.Equal(t, []string{
		"GET /api/v1/clusters?channel=dev&environment=test",
		"GET /api/v1/clusters?channel=dev&continue=page-2&environment=test",
	}, rec.requests)
	assert.Equal(t, "Bearer env-token", rec.headers[0].Get("Authorization"))
}

func TestConfigSetUsesIfMatchAndRetriesOnPreconditionFailed(t *testing.T) {
	isolate(t)
	id := "aws:123456789012:eu-central-1:kube-1"
	rec, url := fakeRegistry(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case r.Method == http.MethodGet:
			writeJSONAnswer(w, http.StatusOK, `"v`+string(rune('0'+n))+`"`, api.Cluster{ID: id, ConfigItems: map[string]string{"other": "x"}})
		case n == 2:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusPreconditionFailed)
			_, _ = io.WriteString(w, `{"title":"Precondition failed","status":412}`)
		default:
			writeJSONAnswer(w, http.StatusOK, `"v9"`, api.Cluster{ID: id})
		}
	})

	code, stdout, stderr := run(t, "", "clusters", "config", "set", id, "log_level", "debug", "--server", url)

	require.Equal(t, ExitOK, code, stderr)
	assert.Equal(t, "cluster \""+id+"\": config item \"log_level\" set\n", stdout)
	path := "/api/v1/clusters/" + id
	assert.Equal(t, []string{"GET " + path, "PATCH " + path, "GET " + path, "PATCH " + path}, rec.requests)
	assert.Equal(t, `"v1"`, rec.headers[1].Get("If-Match"))
	assert.Equal(t, `"v3"`, rec.headers[3].Get("If-Match"))
	assert.Equal(t, "application/merge-patch+json", rec.headers[3].Get("Content-Type"))
	assert.JSONEq(t, `{"config_items":{"log_level":"debug"}}`, rec.bodies[3])
}

func TestDecommissionRequestUsesIfMatchAndRetriesOnPreconditionFailed(t *testing.T) {
	isolate(t)
	id := "aws:123456789012:eu-central-1:kube-1"
	rec, url := fakeRegistry(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case r.Method == http.MethodGet:
			writeJSONAnswer(w, http.StatusOK, `"v`+string(rune('0'+n))+`"`, api.Cluster{ID: id, LifecycleStatus: api.LifecycleReady})
		case n == 2:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusPreconditionFailed)
			_, _ = io.WriteString(w, `{"title":"Precondition failed","status":412}`)
		default:
			writeJSONAnswer(w, http.StatusOK, `"v9"`, api.Cluster{ID: id, LifecycleStatus: api.LifecycleDecommissionRequested})
		}
	})

	code, stdout, stderr := run(t, "", "clusters", "decommission", id, "--server", url)

	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stdout, "cluster \""+id+"\": decommission requested (lifecycle_status decommission-requested, was ready)\n")
	assert.Contains(t, stdout, "caravan clusters decommission "+id+" --confirm\n", "it says what comes next")
	path := "/api/v1/clusters/" + id
	assert.Equal(t, []string{"GET " + path, "PATCH " + path, "GET " + path, "PATCH " + path}, rec.requests)
	assert.Equal(t, `"v1"`, rec.headers[1].Get("If-Match"))
	assert.Equal(t, `"v3"`, rec.headers[3].Get("If-Match"))
	assert.Equal(t, "application/merge-patch+json", rec.headers[3].Get("Content-Type"))
	assert.JSONEq(t, `{"lifecycle_status":"decommission-requested"}`, rec.bodies[3])
}

func TestDecommissionConfirmPosts(t *testing.T) {
	isolate(t)
	id := "aws:123456789012:eu-central-1:kube-1"
	confirmed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec, url := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		writeJSONAnswer(w, http.StatusOK, `"v2"`, api.Cluster{ID: id, LifecycleStatus: api.LifecycleDecommissionRequested, DecommissionConfirmedAt: &confirmed})
	})

	code, stdout, stderr := run(t, "", "clusters", "decommission", id, "--confirm", "--server", url)

	require.Equal(t, ExitOK, code, stderr)
	assert.True(t, strings.HasPrefix(stdout, "cluster \""+id+"\": decommission confirmed at 2026-01-02T03:04:05Z\nNext: "), stdout)
	assert.Equal(t, []string{"POST /api/v1/clusters/" + id + "/decommission"}, rec.requests)
	assert.JSONEq(t, `{"confirm":true}`, rec.bodies[0])
}

func TestDecommissionConfirmConflictExitsWith1(t *testing.T) {
	isolate(t)
	_, url := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"type":"https://caravan.io/problems/decommission-not-requested","title":"Decommission not requested","status":409,"detail":"cluster \"x\" must be in decommission-requested first","field":"lifecycle_status"}`)
	})

	code, stdout, stderr := run(t, "", "clusters", "decommission", "x", "--confirm", "--server", url)

	assert.Equal(t, ExitError, code)
	assert.Empty(t, stdout)
	assert.Equal(t, "Error: Decommission not requested (HTTP 409)\ncluster \"x\" must be in decommission-requested first\n  field: lifecycle_status\n", stderr)
}

func TestConfigUnsetOfAMissingKeyChangesNothing(t *testing.T) {
	isolate(t)
	rec, url := fakeRegistry(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		writeJSONAnswer(w, http.StatusOK, `"v1"`, api.Cluster{ID: "c", ConfigItems: map[string]string{}})
	})

	code, stdout, _ := run(t, "", "clusters", "config", "unset", "c", "log_level", "--server", url)

	assert.Equal(t, ExitOK, code)
	assert.Equal(t, "cluster \"c\": config item \"log_level\" unset\n", stdout)
	assert.Equal(t, []string{"GET /api/v1/clusters/c"}, rec.requests)
}

func TestUpdateRefusesAFileForAnotherResource(t *testing.T) {
	isolate(t)
	code, _, stderr := run(t, "name: stable\nbranch: stable\n", "channels", "update", "beta", "-f", "-", "--server", "http://127.0.0.1:1")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, stderr, `stdin names name "stable", not "beta"`)
}

func TestContextsAndPrecedence(t *testing.T) {
	path := isolate(t)
	var seen []string
	var mu sync.Mutex
	srv := func(name string) string {
		_, url := fakeRegistry(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			mu.Lock()
			seen = append(seen, name+" "+r.Header.Get("Authorization"))
			mu.Unlock()
			writeJSONAnswer(w, http.StatusOK, "", api.List[api.Channel]{})
		})
		return url
	}
	prod, staging, other := srv("prod"), srv("staging"), srv("other")

	for _, args := range [][]string{
		{"config", "set-context", "prod", "--server", prod, "--token", "prod-token"},
		{"config", "set-context", "staging", "--server", staging, "--token", "staging-token"},
	} {
		code, _, stderr := run(t, "", args...)
		require.Equal(t, ExitOK, code, stderr)
	}
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	steps := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{args: nil, want: "prod Bearer prod-token"},
		{args: []string{"--context", "staging"}, want: "staging Bearer staging-token"},
		{args: []string{"--token", "flag-token"}, want: "prod Bearer flag-token"},
		{args: []string{"--server", other}, want: "other "},
		{env: map[string]string{envServer: other, envToken: "env-token"}, want: "other Bearer env-token"},
		{env: map[string]string{envToken: "env-token"}, want: "prod Bearer env-token"},
		{env: map[string]string{envServer: other}, args: []string{"--context", "staging"}, want: "staging Bearer staging-token"},
	}
	for _, s := range steps {
		t.Setenv(envServer, s.env[envServer])
		t.Setenv(envToken, s.env[envToken])
		seen = nil
		code, _, stderr := run(t, "", append([]string{"channels", "list"}, s.args...)...)
		require.Equal(t, ExitOK, code, stderr)
		assert.Equal(t, []string{s.want}, seen, "env %v args %v", s.env, s.args)
	}

	code, stdout, _ := run(t, "", "config", "use-context", "staging")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, "switched to context \"staging\"\n", stdout)
	t.Setenv(envServer, "")
	t.Setenv(envToken, "")
	seen = nil
	code, _, _ = run(t, "", "channels", "list")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, []string{"staging Bearer staging-token"}, seen)

	code, stdout, _ = run(t, "", "config", "get-contexts")
	require.Equal(t, ExitOK, code)
	assert.Equal(t, "CURRENT   NAME      SERVER\n-         prod      "+prod+"\n*         staging   "+staging+"\n", stdout)
	assert.NotContains(t, stdout, "token")

	code, _, stderr := run(t, "", "channels", "list", "--context", "nope")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, `context "nope" is not in `+path)

	code, _, stderr = run(t, "", "config", "use-context", "nope")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, `context "nope" does not exist`)

	code, _, _ = run(t, "", "config", "delete-context", "staging")
	require.Equal(t, ExitOK, code)
	code, _, stderr = run(t, "", "channels", "list")
	assert.Equal(t, ExitError, code, "no current context is left")
	assert.Contains(t, stderr, "no registry server")
}
