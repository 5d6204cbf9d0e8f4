package rehearsal

import (
	"bytes"
	"context"
	"encoding/xml"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
	"github.com/caravan-gitops/caravan/test/moto"
)

// smokeTest is a test Job that succeeds.
const smokeTest = `apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: registry.example.org/smoke:1
`

// failingTest is a test Job whose pod exits with code 3 (the test control
// plane's kwok stage caravan-pod-fail plays it).
const failingTest = `apiVersion: batch/v1
kind: Job
metadata:
  name: dns-resolves
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        ` + controlplane.PodExitCodeAnnotation + `: "3"
        ` + controlplane.PodCompleteWeightAnnotation + `: "0"
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: registry.example.org/dns-check:1
`

// stuckOverlay adds a Deployment to the test overlay whose pods fit no
// node, so it never becomes available.
const stuckOverlay = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
  - stuck.yaml
`

const stuckDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
  namespace: kube-system
spec:
  replicas: 1
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      nodeSelector: {no-such-label: "true"}
      containers:
        - name: app
          image: registry.example.org/stuck:1
`

// TestRehearsals rehearses three changes of the reference config repo in
// one scratch cluster, on the real control plane with moto for AWS: a good
// change, a change whose Deployment never becomes healthy, and a change
// whose test Job fails.
func TestRehearsals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cp := controlplane.Start(t)
	git := gitserver.Start(t)
	aws := moto.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "eu-central-1")
	for _, n := range []string{"node-a", "node-b"} {
		_, err := cp.AddNode(ctx, controlplane.Node{Name: n})
		require.NoError(t, err)
	}
	base, err := git.CreateRepo("config", "../../manifests", "dev", "good", "unhealthy", "failing")
	require.NoError(t, err)
	defaults, err := os.ReadFile("../../manifests/config-defaults.yaml")
	require.NoError(t, err)
	good, err := git.Commit("config", "good", "a bigger default memory limit, and a smoke test", map[string][]byte{
		"config-defaults.yaml": bytes.Replace(defaults, []byte(`default_container_memory_limit: "512Mi"`), []byte(`default_container_memory_limit: "768Mi"`), 1),
		"tests/smoke.yaml":     []byte(smokeTest),
	})
	require.NoError(t, err)
	_, err = git.Commit("config", "unhealthy", "a Deployment that fits no node", map[string][]byte{
		"kubernetes/overlays/test/kustomization.yaml": []byte(stuckOverlay),
		"kubernetes/overlays/test/stuck.yaml":         []byte(stuckDeployment),
		"tests/smoke.yaml":                            []byte(smokeTest),
	})
	require.NoError(t, err)
	_, err = git.Commit("config", "failing", "a test that fails", map[string][]byte{
		"tests/smoke.yaml": []byte(smokeTest),
		"tests/dns.yaml":   []byte(failingTest),
	})
	require.NoError(t, err)

	ctrllog.SetLogger(logr.Discard())
	kube, err := client.New(cp.Config, client.Options{})
	require.NoError(t, err)
	rehearse := func(t *testing.T, to string) *Result {
		t.Helper()
		var progress []Step
		res, err := Run(ctx, Options{
			Kube: cp.Config, Assignment: assignment(git.RepoURL("config")), From: "dev", To: to,
			Git: configrepo.Credentials{Username: git.User, Password: git.Password}, AWSEndpoint: aws.Endpoint,
			Timeout: 20 * time.Second, Version: "test", Log: logr.FromSlogHandler(slog.NewTextHandler(testWriter{t}, nil)),
			Progress: func(s Step) { progress = append(progress, s) },
		})
		require.NoError(t, err)
		assert.Equal(t, res.Steps, progress, "each step is reported as it ends")
		assert.Equal(t, base, res.From)
		return res
	}

	t.Run("a good change passes", func(t *testing.T) {
		res := rehearse(t, "good")
		assert.Equal(t, good, res.To)
		require.True(t, res.Passed(), "%+v", res.Steps)
		names := []string{}
		for _, s := range res.Steps {
			names = append(names, s.Name)
		}
		assert.Equal(t, []string{"converge to the base, " + base[:7], "converge to the head, " + good[:7], "test tests/smoke.yaml: Job caravan-rehearsal/smoke"}, names)
		lr := &corev1.LimitRange{}
		require.NoError(t, kube.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default-container-resources"}, lr))
		assert.Equal(t, "768Mi", lr.Spec.Limits[0].Default.Memory().String(), "the scratch cluster is at the head")

		var junit junitSuite
		var out bytes.Buffer
		require.NoError(t, res.WriteJUnit(&out))
		require.NoError(t, xml.Unmarshal(out.Bytes(), &junit))
		assert.Equal(t, 3, junit.Tests)
		assert.Zero(t, junit.Failures)
	})

	t.Run("a Deployment that never becomes healthy fails the head's converge", func(t *testing.T) {
		res := rehearse(t, "unhealthy")
		require.False(t, res.Passed())
		require.Len(t, res.Steps, 2, "no test runs after a failed converge: %+v", res.Steps)
		assert.Empty(t, res.Steps[0].Failure, "the base converges")
		assert.Contains(t, res.Steps[1].Failure, "Applied objects did not become healthy")
		assert.Contains(t, res.Steps[1].Failure, "stuck")

		var junit junitSuite
		var out bytes.Buffer
		require.NoError(t, res.WriteJUnit(&out))
		require.NoError(t, xml.Unmarshal(out.Bytes(), &junit))
		assert.Equal(t, 1, junit.Failures)
		require.NotNil(t, junit.Cases[1].Failure)
		assert.Contains(t, junit.Cases[1].Failure.Message, "stuck")
	})

	t.Run("a test Job that fails fails the rehearsal with its reason", func(t *testing.T) {
		res := rehearse(t, "failing")
		require.False(t, res.Passed())
		failures := map[string]string{}
		for _, s := range res.Steps {
			failures[s.Name] = s.Failure
		}
		require.Len(t, failures, 4, "two converges and two tests: %+v", res.Steps)
		assert.Empty(t, failures["test tests/smoke.yaml: Job caravan-rehearsal/smoke"], "the other test passes")
		why := failures["test tests/dns.yaml: Job caravan-rehearsal/dns-resolves"]
		assert.Contains(t, why, "BackoffLimitExceeded")
		assert.Contains(t, why, "container check exited with code 3")
	})
}

func assignment(repoURL string) api.Assignment {
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: "aws:123456789012:eu-central-1:kube-1", LocalID: "kube-1", Alias: "kube-1",
			InfrastructureAccount: "aws:123456789012", Region: "eu-central-1", APIServerURL: "https://kube-1.example.org",
			Environment: "test", Provider: "aws", CriticalityLevel: 1, LifecycleStatus: api.LifecycleReady},
		Channel:     api.AssignedChannel{Name: "dev", Branch: "dev", RepositoryURL: repoURL},
		ConfigItems: map[string]string{api.ConfigUpdateWindows: "Mon 03:00-03:01 UTC"},
		Blocks:      []api.Block{{ID: "b1", ClusterID: "aws:123456789012:eu-central-1:kube-1", Reason: "the real cluster's block"}},
		NodePools:   []api.AssignedNodePool{},
	}
}

// testWriter sends the reconciles' logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}
