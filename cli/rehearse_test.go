package cli

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/test/controlplane"
)

// TestRehearseThroughTheCommandLine rehearses a change of the reference
// repo without its CloudFormation templates in a scratch control plane,
// with the assignment of a registered cluster and a reader token.
func TestRehearseThroughTheCommandLine(t *testing.T) {
	f := startRenderFleet(t)
	cp := controlplane.Start(t)
	_, err := cp.AddNode(t.Context(), controlplane.Node{Name: "node-a"})
	require.NoError(t, err)
	base, err := f.git.Commit("config", "dev", "no stacks", map[string][]byte{"cloudformation/cluster.yaml": nil, "cloudformation/node-pool.yaml": nil})
	require.NoError(t, err)
	head, err := f.git.Commit("config", "dev", "a test", map[string][]byte{"tests/smoke.yaml": []byte(`apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: check, image: registry.example.org/smoke:1}]
`)})
	require.NoError(t, err)
	reader := f.run("tokens", "create", "--name", "ci", "--role", "reader")
	junit := filepath.Join(t.TempDir(), "rehearsal.xml")

	code, stdout, stderr := run(t, "", "rehearse", "--cluster", renderDev1, "--from", base, "--to", "dev", "--kubeconfig", cp.Kubeconfig,
		"--timeout", "1m", "--junit", junit, "--server", f.server.URL, "--token", strings.TrimSpace(reader))
	require.Equal(t, ExitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout, "rehearsing "+renderDev1+" from "+base+" to dev")
	assert.Regexp(t, `(?m)^PASS  converge to the base, `+base[:7]+`  \(`, stdout)
	assert.Regexp(t, `(?m)^PASS  converge to the head, `+head[:7]+`  \(`, stdout)
	assert.Regexp(t, `(?m)^PASS  test tests/smoke.yaml: Job caravan-rehearsal/smoke  \(`, stdout)
	assert.Contains(t, stdout, "the rehearsal of "+base[:7]+".."+head[:7]+" passed: 3 steps")
	raw, err := os.ReadFile(junit)
	require.NoError(t, err)
	var suite struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	require.NoError(t, xml.Unmarshal(raw, &suite))
	assert.Equal(t, 3, suite.Tests)
	assert.Zero(t, suite.Failures)

	code, _, stderr = f.try("", "rehearse", "--cluster", renderDev1, "--from", base, "--to", "no-such-branch", "--kubeconfig", cp.Kubeconfig)
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, `"no-such-branch" is neither a branch`)
}

func TestRehearseUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"rehearse", "--from", "a", "--to", "b", "--kubeconfig", "k"},
		{"rehearse", "--cluster", "c", "--to", "b", "--kubeconfig", "k"},
		{"rehearse", "--cluster", "c", "--from", "a", "--to", "b"},
		{"rehearse", "--cluster", "c", "--from", "a", "--to", "b", "--kubeconfig", "k", "--timeout", "0s"},
	} {
		code, _, stderr := run(t, "", args...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}
}
