package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/runtime/leaderelection"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

const clusterID = "aws:123456789012:eu-central-1:kube-1"

// fleet is one cluster with its registry, config repo and agent, all real.
type fleet struct {
	t      *testing.T
	ctx    context.Context
	cp     *controlplane.ControlPlane
	git    *gitserver.Server
	reg    *registry.Client
	kube   client.Client
	cancel context.CancelFunc
	done   chan error
}

func startFleet(t *testing.T) *fleet {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	f := &fleet{t: t, ctx: ctx, cp: controlplane.Start(t), git: gitserver.Start(t)}
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		_, err := f.cp.AddNode(ctx, controlplane.Node{Name: n})
		require.NoError(t, err)
	}
	_, err := f.git.CreateRepo("config", "../manifests", "dev", "stable")
	require.NoError(t, err)

	central := centraltest.Start(t)
	f.reg, err = registry.New(central.URL, central.AdminToken)
	require.NoError(t, err)
	_, _, err = f.reg.PatchChannel(ctx, "dev", map[string]any{"repository_url": f.git.RepoURL("config")}, "")
	require.NoError(t, err)
	_, _, err = f.reg.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{ID: "aws:123456789012", Name: "a", Owner: "team", Environment: "test"})
	require.NoError(t, err)
	_, _, err = f.reg.CreateCluster(ctx, &api.Cluster{ID: clusterID, InfrastructureAccount: "aws:123456789012", Region: "eu-central-1",
		APIServerURL: "https://kube-1.example.org", Environment: "test", Channel: "dev", LifecycleStatus: "ready"})
	require.NoError(t, err)

	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, clusterconfig.AddToScheme(s))
	f.kube, err = client.New(f.cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)
	require.NoError(t, f.kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "caravan-system"}}))
	require.NoError(t, f.kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git", Namespace: "caravan-system"},
		StringData: map[string]string{"username": f.git.User, "password": f.git.Password}}))
	f.startAgent(central.Token(t, api.RoleAgent, clusterID), central.URL)
	return f
}

func (f *fleet) startAgent(token, url string) {
	agentCtx, cancel := context.WithCancel(f.ctx)
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() {
		f.done <- agent.Run(agentCtx, agent.Config{
			ClusterID: clusterID, RegistryURL: url, RegistryToken: token, Kube: f.cp.Config, Namespace: "caravan-system",
			GitSecret: "git", Interval: 2 * time.Second, HealthTimeout: time.Minute, MetricsAddr: "0", HealthAddr: "0",
			LeaderElection: leaderelection.Options{}, Version: "test", Log: logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	f.t.Cleanup(f.stopAgent)
}

func (f *fleet) stopAgent() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	err := <-f.done
	if err != nil && !errors.Is(err, context.Canceled) {
		f.t.Errorf("agent stopped with: %v", err)
	}
	f.cancel = nil
}

// eventually waits for cond, saying what it waited for.
func (f *fleet) eventually(what string, cond func() bool) {
	f.t.Helper()
	require.Eventually(f.t, cond, 2*time.Minute, 250*time.Millisecond, what)
}

func (f *fleet) status() *api.ClusterStatus {
	st, _, err := f.reg.GetClusterStatus(f.ctx, clusterID)
	if err != nil {
		return &api.ClusterStatus{}
	}
	return st
}

func (f *fleet) clusterConfig() *clusterconfig.ClusterConfig {
	cc := &clusterconfig.ClusterConfig{}
	_ = f.kube.Get(f.ctx, client.ObjectKey{Name: clusterconfig.Name}, cc)
	return cc
}

func (f *fleet) configMap(name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := f.kube.Get(f.ctx, client.ObjectKey{Namespace: "default", Name: name}, cm)
	return cm, err
}

func (f *fleet) commit(message string, files map[string][]byte) string {
	sha, err := f.git.Commit("config", "dev", message, files)
	require.NoError(f.t, err)
	return sha
}

func (f *fleet) atCommit(sha string) func() bool {
	return func() bool {
		st := f.status()
		return strings.HasPrefix(st.CurrentVersion, sha+"#") && st.Phase == api.PhaseIdle
	}
}

const base = "kubernetes/base/kustomization.yaml"

func addResource(t *testing.T, name string) []byte {
	b, err := os.ReadFile("../manifests/" + base)
	require.NoError(t, err)
	return []byte(strings.Replace(string(b), "  - kube-state-metrics.yaml\n", "  - kube-state-metrics.yaml\n  - "+name+"\n", 1))
}

func TestAgentConvergesOnItsChannel(t *testing.T) {
	f := startFleet(t)

	// First apply of manifests/ into an empty cluster.
	f.eventually("the first version is applied and reported", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	cc := f.clusterConfig()
	assert.True(t, conditions.IsReady(cc), "ClusterConfig is Ready: %+v", cc.Status.Conditions)
	assert.NotEmpty(t, cc.Status.Inventory)
	dns := &appsv1.Deployment{}
	require.NoError(t, f.kube.Get(f.ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, dns))
	assert.EqualValues(t, 2, *dns.Spec.Replicas)

	// A commit on the channel branch is applied within one poll.
	sha := f.commit("add settings", map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  zone: ${cluster_alias}.example.org\n"),
		base:                            addResource(t, "settings.yaml"),
	})
	f.eventually("the new commit is applied", f.atCommit(sha))
	cm, err := f.configMap("settings")
	require.NoError(t, err)
	assert.Equal(t, "kube-1.example.org", cm.Data["zone"])
	assert.Equal(t, cc.Status.CurrentVersion, f.status().LastVersion, "the previous version is the last version")

	// A config item change re-renders without a new commit.
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"coredns_replicas": "3"}}, "")
	require.NoError(t, err)
	f.eventually("the config item reaches the Deployment", func() bool {
		d := &appsv1.Deployment{}
		return f.kube.Get(f.ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, d) == nil && *d.Spec.Replicas == 3
	})

	// A broken commit applies nothing and names the file; the next good one recovers.
	good := f.status().CurrentVersion
	broken := f.commit("broken", map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  zone: changed\n  extra: ${not_defined}\n"),
	})
	f.eventually("the broken commit is reported", func() bool {
		st := f.status()
		return st.Phase == api.PhaseFailed && len(st.Problems) > 0 && strings.Contains(st.Problems[0].Detail, "kubernetes/base/settings.yaml")
	})
	assert.Equal(t, good, f.status().CurrentVersion, "the cluster stays on the last good version")
	cm, err = f.configMap("settings")
	require.NoError(t, err)
	assert.Equal(t, "kube-1.example.org", cm.Data["zone"], "nothing of the broken commit was applied")
	cc = f.clusterConfig()
	assert.True(t, conditions.IsStalled(cc))
	assert.Contains(t, cc.Status.FailedVersion, broken)

	b, err := os.ReadFile("../manifests/" + base)
	require.NoError(t, err)
	recovered := f.commit("drop settings", map[string][]byte{"kubernetes/base/settings.yaml": nil, base: b})
	f.eventually("the next good commit recovers", f.atCommit(recovered))
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "the object that left the config is pruned")
	assert.True(t, conditions.IsReady(f.clusterConfig()))
}
