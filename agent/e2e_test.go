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
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
	"github.com/caravan-gitops/caravan/test/moto"
)

const clusterID = "aws:123456789012:eu-central-1:kube-1"

// fleet is one cluster with its registry, config repo and agent, all real.
type fleet struct {
	t       *testing.T
	central *centraltest.Server
	token   string
	ctx     context.Context
	cp      *controlplane.ControlPlane
	git     *gitserver.Server
	reg     *registry.Client
	kube    client.Client
	aws     *moto.Server
	// awsEndpoint is where the agent sends its AWS calls: moto, or a proxy
	// in front of it.
	awsEndpoint string
	// agentKube is how the agent reaches the API server: the control
	// plane's config, or a proxy's in front of it.
	agentKube *rest.Config
}

func startFleet(t *testing.T) *fleet {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	f := &fleet{t: t, ctx: ctx, cp: controlplane.Start(t), git: gitserver.Start(t), aws: moto.Start(t)}
	// The agent takes AWS credentials from the SDK's default chain.
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "eu-central-1")
	f.awsEndpoint, f.agentKube = f.aws.Endpoint, f.cp.Config
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		_, err := f.cp.AddNode(ctx, controlplane.Node{Name: n})
		require.NoError(t, err)
	}
	_, err := f.git.CreateRepo("config", "../manifests", "dev", "stable")
	require.NoError(t, err)

	// The registry reads the channels' heads from the fleet's git server,
	// as a production one does: agents learn commits from it.
	central := centraltest.Start(t, readsHeadsOf(f.git))
	f.central = central
	f.reg, err = registry.New(central.URL, central.AdminToken, registry.WithRetryMax(0))
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
	f.token = central.Token(t, api.RoleAgent, clusterID)
	return f
}

// runningAgent is one agent process, run in the test's process.
type runningAgent struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

func (f *fleet) startAgent(version string, leaderElection bool) *runningAgent {
	return f.startAgentWithMetrics(version, leaderElection, "0")
}

// startAgentWithMetrics starts an agent that serves its metrics at addr.
func (f *fleet) startAgentWithMetrics(version string, leaderElection bool, metricsAddr string) *runningAgent {
	le := leaderelection.Options{}
	if leaderElection {
		le = leaderelection.Options{Enable: true, ReleaseOnCancel: true, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}
	}
	ctx, cancel := context.WithCancel(f.ctx)
	a := &runningAgent{t: f.t, cancel: cancel, done: make(chan error, 1)}
	go func() {
		a.done <- agent.Run(ctx, agent.Config{
			ClusterID: clusterID, RegistryURL: f.central.URL, RegistryToken: f.token, Kube: f.agentKube, Namespace: "caravan-system",
			GitSecret: "git", Interval: 2 * time.Second, HealthTimeout: time.Minute, MetricsAddr: metricsAddr, HealthAddr: "0", AWSEndpoint: f.awsEndpoint,
			LeaderElection: le, Version: version, Log: testLog(),
		})
	}()
	f.t.Cleanup(a.stop)
	return a
}

// testLog discards the agent's log unless CARAVAN_TEST_LOG is set, for
// a developer reading one test's run.
func testLog() logr.Logger {
	out := io.Discard
	if os.Getenv("CARAVAN_TEST_LOG") != "" {
		out = os.Stderr
	}
	return logr.FromSlogHandler(slog.NewTextHandler(out, nil))
}

// stop ends the agent, as a pod's termination would; safe to call twice.
func (a *runningAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	if err := <-a.done; err != nil && !errors.Is(err, context.Canceled) {
		a.t.Errorf("agent stopped with: %v", err)
	}
	a.cancel = nil
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

// stuckDeployment never becomes ready: no node matches its selector,
// unless a test adds one labelled pool=none.
const stuckDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
  namespace: default
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {pool: none}
      containers: [{name: app, image: app}]
`

func addResource(t *testing.T, name string) []byte {
	b, err := os.ReadFile("../manifests/" + base)
	require.NoError(t, err)
	return []byte(strings.Replace(string(b), "  - kube-state-metrics.yaml\n", "  - kube-state-metrics.yaml\n  - "+name+"\n", 1))
}

func TestAgentConvergesOnItsChannel(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)

	// First apply of manifests/ into an empty cluster.
	f.eventually("the first version is applied and reported", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	cc := f.clusterConfig()
	assert.True(t, conditions.IsReady(cc), "ClusterConfig is Ready: %+v", cc.Status.Conditions)
	assert.NotEmpty(t, cc.Status.Inventory)
	dns := &appsv1.Deployment{}
	require.NoError(t, f.kube.Get(f.ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, dns))
	assert.EqualValues(t, 2, *dns.Spec.Replicas)
	f.eventually("an Event on the ClusterConfig says what was applied", func() bool { return f.hasEvent("Deployment/kube-system/coredns created") })

	// The agent's token reads its own assignment only.
	_, _, err := f.reg.CreateCluster(f.ctx, &api.Cluster{ID: "aws:123456789012:eu-central-1:other", InfrastructureAccount: "aws:123456789012",
		Region: "eu-central-1", APIServerURL: "https://other.example.org", Environment: "test", Channel: "dev"})
	require.NoError(t, err)
	asAgent, err := registry.New(f.central.URL, f.token, registry.WithRetryMax(0))
	require.NoError(t, err)
	_, err = asAgent.GetAssignment(f.ctx, "aws:123456789012:eu-central-1:other", registry.AssignmentOptions{})
	assert.Equal(t, 403, registry.StatusCode(err), "another cluster's assignment is forbidden")

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

	// A commit that changes nothing the render reads, and one that changes
	// no object, are taken without an apply.
	inventory := f.clusterConfig().Status.Inventory
	docs := f.commit("docs only", map[string][]byte{"README.md": []byte("# notes\n")})
	f.eventually("the docs commit is the current version", f.atCommit(docs))
	assert.True(t, f.hasEvent(docs, "renders the same objects as the last one; nothing to apply"))
	assert.Equal(t, inventory, f.clusterConfig().Status.Inventory)
	comment := f.commit("a comment", map[string][]byte{base: append([]byte("# kustomize drops comments\n"), b...)})
	f.eventually("the comment commit is the current version", f.atCommit(comment))
	assert.True(t, f.hasEvent(comment, "renders the same objects as the last one; nothing to apply"))
	assert.Equal(t, inventory, f.clusterConfig().Status.Inventory)

	// In the steady state the agent writes nothing to the cluster.
	f.eventually("the ClusterConfig says up to date", func() bool {
		return conditions.GetReason(f.clusterConfig(), "Ready") == "UpToDate"
	})
	rv := f.clusterConfig().ResourceVersion
	// Two reports after rv was read: the pass that made the second began
	// after the first had ended, so a whole pass ran since.
	f.heartbeatAfter(f.heartbeatAfter(time.Now()).Heartbeat)
	assert.Equal(t, rv, f.clusterConfig().ResourceVersion, "two polls with nothing new leave the ClusterConfig alone")
}

// hasEvent says whether an Event on the ClusterConfig says all of parts.
func (f *fleet) hasEvent(parts ...string) bool {
	list := &corev1.EventList{}
	if f.kube.List(f.ctx, list) != nil {
		return false
	}
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "ClusterConfig" && containsAll(e.Message, parts) {
			return true
		}
	}
	return false
}

func TestRegistryDownKeepsTheLastAssignmentAcrossRestarts(t *testing.T) {
	f := startFleet(t)
	// Without its registry the agent lists the branch itself, at this pace.
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"git_poll_interval": "1s"}}, "")
	require.NoError(t, err)
	first := f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	f.central.Stop(t)

	sha := f.commit("add settings while the registry is down", map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  cluster: ${cluster_id}\n"),
		base:                            addResource(t, "settings.yaml"),
	})
	f.eventually("the commit is applied with the last assignment", func() bool {
		cm, err := f.configMap("settings")
		return err == nil && cm.Data["cluster"] == clusterID
	})

	first.stop()
	next := f.commit("change settings while the registry is down and the agent restarts", map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  cluster: ${cluster_id}\n  restarted: \"yes\"\n"),
	})
	f.startAgent("test", false)
	f.eventually("a restarted agent goes on from the assignment kept in its Secret", func() bool {
		cm, err := f.configMap("settings")
		cc := f.clusterConfig()
		return err == nil && cm.Data["restarted"] == "yes" && strings.HasPrefix(cc.Status.CurrentVersion, next+"#") && conditions.IsReady(cc)
	})
	assert.NotEqual(t, sha, next)
}

func TestBlocksStopChanges(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })

	_, _, err := f.reg.CreateBlock(f.ctx, clusterID, registry.BlockRequest{Reason: "incident 7"})
	require.NoError(t, err)
	f.eventually("the registry block shows as the phase", func() bool { return f.status().Phase == api.PhaseBlocked })
	assert.Contains(t, f.status().Problems[0].Title, "incident 7")
	sha := f.commit("blocked change", map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n"),
		base:                            addResource(t, "settings.yaml"),
	})
	// An Event names the commit the block holds; had the block not held
	// it, its ConfigMap would show instead.
	f.eventually("the agent saw the commit", func() bool {
		_, err := f.configMap("settings")
		return err == nil || f.hasEvent("incident 7", "version "+sha+"#")
	})
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "nothing changes while blocked")

	blocks, err := f.reg.ListBlocks(f.ctx, clusterID, registry.Page{})
	require.NoError(t, err)
	require.NoError(t, f.reg.DeleteBlock(f.ctx, clusterID, blocks.Items[0].ID, ""))
	f.eventually("unblocked, the commit is applied", f.atCommit(sha))

	cc := f.clusterConfig()
	cc.Spec.Block = &clusterconfig.Block{Reason: "database migration"}
	require.NoError(t, f.kube.Update(f.ctx, cc))
	f.eventually("an in-cluster block shows too", func() bool {
		return f.status().Phase == api.PhaseBlocked && strings.Contains(f.status().Problems[0].Title, "database migration")
	})
	assert.False(t, conditions.IsReady(f.clusterConfig()))
}

func TestOnlyTheLeaderApplies(t *testing.T) {
	f := startFleet(t)
	reports := f.recordStatusReports()
	f.startAgent("replica-a", true)
	f.startAgent("replica-b", true)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	leader := f.status().AgentVersion
	// Four more reports of the leader's, one per poll: the other replica
	// would have reported meanwhile, had it reconciled.
	sent := len(reports.Agents())
	f.eventually("the leader reports four more times", func() bool { return len(reports.Agents()) >= sent+4 })
	for _, sender := range reports.Agents() {
		require.Equal(t, leader, sender, "only the leader reports")
	}
	lease := &coordinationv1.Lease{}
	require.NoError(t, f.kube.Get(f.ctx, client.ObjectKey{Namespace: "caravan-system", Name: "caravan-agent"}, lease))
	assert.NotEmpty(t, *lease.Spec.HolderIdentity)
}

func TestANewerCommitCancelsTheHealthWait(t *testing.T) {
	f := startFleet(t)
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"health_timeout": "10m"}}, "")
	require.NoError(t, err)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })

	f.commit("a Deployment that never becomes ready", map[string][]byte{"kubernetes/base/stuck.yaml": []byte(stuckDeployment), base: addResource(t, "stuck.yaml")})
	f.eventually("the agent waits for health", func() bool { return f.status().Phase == api.PhaseApplying })
	start := time.Now()
	b, err := os.ReadFile("../manifests/" + base)
	require.NoError(t, err)
	fix := f.commit("drop it", map[string][]byte{"kubernetes/base/stuck.yaml": nil, base: b})
	f.eventually("the fix is applied long before the 10m health timeout", f.atCommit(fix))
	assert.Less(t, time.Since(start), time.Minute)
}

func TestABlockStopsAnUpdatePartWay(t *testing.T) {
	f := startFleet(t)
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"health_timeout": "10m"}}, "")
	require.NoError(t, err)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	good := f.status().CurrentVersion

	f.commit("a Deployment that never becomes ready", map[string][]byte{"kubernetes/base/stuck.yaml": []byte(stuckDeployment), base: addResource(t, "stuck.yaml")})
	f.eventually("the update is under way", func() bool { return f.status().Phase == api.PhaseApplying })
	start := time.Now()
	_, _, err = f.reg.CreateBlock(f.ctx, clusterID, registry.BlockRequest{Reason: "stop the rollout"})
	require.NoError(t, err)
	f.eventually("the block stops the update part way", func() bool { return f.status().Phase == api.PhaseBlocked })
	assert.Less(t, time.Since(start), time.Minute, "long before the 10m health timeout")
	assert.Equal(t, good, f.status().CurrentVersion, "the unfinished version never became current")
	assert.Contains(t, f.status().Problems[len(f.status().Problems)-1].Title, "stop the rollout")
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
