package charts_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/leaderelection"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/caravan-gitops/caravan/agent"
	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/charts"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// installed is a real control plane with kwok nodes, into which the tests
// install the charts with the Helm SDK.
type installed struct {
	t       *testing.T
	ctx     context.Context
	cp      *controlplane.ControlPlane
	cluster charts.Cluster
}

func startControlPlane(t *testing.T) *installed {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cp := controlplane.Start(t)
	for _, n := range []string{"node-a", "node-b"} {
		_, err := cp.AddNode(ctx, controlplane.Node{Name: n})
		require.NoError(t, err)
	}
	return &installed{t: t, ctx: ctx, cp: cp, cluster: charts.Cluster{Kubeconfig: cp.Kubeconfig}}
}

func (in *installed) apply(t *testing.T, chartName string, rel charts.Release, values map[string]any) int {
	t.Helper()
	r, err := charts.Apply(in.ctx, in.cluster, chartName, rel, values, charts.ApplyOptions{Timeout: 3 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, "deployed", r.Info.Status.String())
	return len(r.Hooks)
}

// impersonating is a client acting as the ServiceAccount, as the agent's
// pod would.
func (in *installed) impersonating(serviceAccount string) *rest.Config {
	cfg := rest.CopyConfig(in.cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + charts.AgentNamespace + ":" + serviceAccount}
	return cfg
}

func TestChartsInstallIntoAControlPlane(t *testing.T) {
	in := startControlPlane(t)
	t.Run("central on SQLite", in.installCentral)
	f := startSmokeFleet(t, in.ctx)
	t.Run("agent with cluster-admin rights", func(t *testing.T) { in.installAgent(t, f) })
	t.Run("agent with restricted rights", func(t *testing.T) { in.restrictAgent(t, f) })
}

// installCentral installs the registry chart and upgrades it: the first
// admin token's Secret is made once and keeps its value, and the registry
// takes that value with --admin-token-file.
func (in *installed) installCentral(t *testing.T) {
	// The test control plane has no storage provisioner: the volume an
	// administrator would provide.
	_, err := in.cp.Client.CoreV1().PersistentVolumes().Create(in.ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "central-data"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: t.TempDir()}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	assert.Zero(t, in.apply(t, charts.Central, centralRelease, map[string]any{}), "no hooks")
	d, err := in.cp.Client.AppsV1().Deployments("caravan").Get(in.ctx, "caravan-caravan-central", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(1), d.Status.ReadyReplicas, "kwok runs the registry's pod")
	pvc, err := in.cp.Client.CoreV1().PersistentVolumeClaims("caravan").Get(in.ctx, "caravan-caravan-central-data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.ClaimBound, pvc.Status.Phase)
	first, err := in.cp.Client.CoreV1().Secrets("caravan").Get(in.ctx, "caravan-caravan-central-admin-token", metav1.GetOptions{})
	require.NoError(t, err)
	token := string(first.Data["token"])
	assert.Regexp(t, `^cvn_[A-Za-z0-9]{40}$`, token)
	assertRegistryTakesAdminToken(t, token)

	assert.Zero(t, in.apply(t, charts.Central, centralRelease, map[string]any{"logLevel": "debug"}), "no hooks")
	kept, err := in.cp.Client.CoreV1().Secrets("caravan").Get(in.ctx, first.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, token, string(kept.Data["token"]), "an upgrade keeps the token")
	assert.Equal(t, first.UID, kept.UID)
}

// assertRegistryTakesAdminToken serves caravan-central as the chart's pod
// does, with the token in the file of --admin-token-file, and uses the
// admin token it makes.
func assertRegistryTakesAdminToken(t *testing.T, token string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(file, []byte(token), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := central.Command()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"serve", "--listen", addr, "--database", "sqlite://" + filepath.Join(dir, "caravan.db"), "--admin-token-file", file})
		done <- cmd.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	reg, err := registry.New("http://"+addr, token, registry.WithRetryMax(0))
	require.NoError(t, err)
	var tokens *api.List[api.Token]
	require.Eventually(t, func() bool {
		tokens, err = reg.ListTokens(ctx, registry.Page{})
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the registry accepts the token")
	require.Len(t, tokens.Items, 1)
	assert.Equal(t, central.AdminTokenName, tokens.Items[0].Name)
	assert.Equal(t, api.RoleAdmin, tokens.Items[0].Role)
}

// smokeFleet is the registry and config repo that the agent's smoke run
// converges on: a namespace with a ConfigMap and a Deployment.
type smokeFleet struct {
	central *centraltest.Server
	git     *gitserver.Server
	reg     *registry.Client
	// commit is the head of the channel's branch.
	commit string
}

const smokeManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: smoke
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: smoke
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: smoke
spec:
  replicas: 1
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      containers: [{name: app, image: app}]
`

func startSmokeFleet(t *testing.T, ctx context.Context) *smokeFleet {
	repo := t.TempDir()
	for name, content := range map[string]string{
		"kubernetes/overlays/test/kustomization.yaml": "resources:\n  - ../../base\n",
		"kubernetes/base/kustomization.yaml":          "resources:\n  - smoke.yaml\n",
		"kubernetes/base/smoke.yaml":                  smokeManifest,
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(repo, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644))
	}
	f := &smokeFleet{central: centraltest.Start(t), git: gitserver.Start(t)}
	var err error
	f.commit, err = f.git.CreateRepo("config", repo, "dev")
	require.NoError(t, err)
	f.reg, err = registry.New(f.central.URL, f.central.AdminToken, registry.WithRetryMax(0))
	require.NoError(t, err)
	_, _, err = f.reg.PatchChannel(ctx, "dev", map[string]any{"repository_url": f.git.RepoURL("config")}, "")
	require.NoError(t, err)
	_, _, err = f.reg.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{ID: "aws:123456789012", Name: "a", Owner: "team", Environment: "test"})
	require.NoError(t, err)
	_, _, err = f.reg.CreateCluster(ctx, &api.Cluster{ID: testClusterID, InfrastructureAccount: "aws:123456789012", Region: "eu-central-1",
		APIServerURL: "https://kube-1.example.org", Environment: "test", Channel: "dev", LifecycleStatus: "ready"})
	require.NoError(t, err)
	return f
}

// agentValues install the agent of the smoke fleet's cluster, with a new
// agent token.
func (f *smokeFleet) agentValues(t *testing.T) map[string]any {
	return agentValues(map[string]any{
		"registry": map[string]any{"url": f.central.URL, "token": f.central.Token(t, api.RoleAgent, testClusterID)},
		"git":      map[string]any{"credentialsSecret": "git"},
	})
}

// installAgent installs the agent chart with its default, cluster-admin
// rights, then runs the agent as the chart's ServiceAccount.
func (in *installed) installAgent(t *testing.T, f *smokeFleet) {
	_, err := in.cp.Client.CoreV1().Namespaces().Create(in.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: charts.AgentNamespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = in.cp.Client.CoreV1().Secrets(charts.AgentNamespace).Create(in.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git"},
		StringData: map[string]string{"username": f.git.User, "password": f.git.Password}}, metav1.CreateOptions{})
	require.NoError(t, err)

	in.apply(t, charts.Agent, agentRelease, f.agentValues(t))
	d, err := in.cp.Client.AppsV1().Deployments(charts.AgentNamespace).Get(in.ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(2), d.Status.ReadyReplicas, "kwok runs both replicas")

	cfg := in.impersonating("caravan-agent")
	in.assertAgentWork(t, in.runAgent(t, f, cfg), "hello")
	in.assertNodeWork(t, cfg)
	as, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	_, err = as.CoreV1().ServiceAccounts("smoke").Apply(in.ctx, corev1ac.ServiceAccount("anything", "smoke"), metav1.ApplyOptions{FieldManager: "caravan", Force: true})
	require.NoError(t, err, "cluster-admin rights apply any kind")
}

// restrictAgent upgrades the release to the agent's own rules and the
// config repo's kinds, and runs the agent again with them.
func (in *installed) restrictAgent(t *testing.T, f *smokeFleet) {
	rules := []any{
		map[string]any{"apiGroups": []any{""}, "resources": []any{"namespaces"}, "verbs": []any{"patch", "update", "delete"}},
		map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"}, "verbs": []any{"get", "list", "watch", "create", "patch", "update", "delete"}},
		map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"get", "list", "watch", "create", "patch", "update", "delete"}},
	}
	anywhere := map[string]any{"cidrs": []any{"0.0.0.0/0"}}
	values := f.agentValues(t)
	values["rbac"] = map[string]any{"clusterAdmin": false, "rules": rules}
	values["networkPolicy"] = map[string]any{"enabled": true, "registry": anywhere, "git": anywhere, "aws": anywhere, "apiServer": anywhere}
	in.apply(t, charts.Agent, agentRelease, values)
	var err error
	f.commit, err = f.git.Commit("config", "dev", "a new greeting", map[string][]byte{
		"kubernetes/base/smoke.yaml": []byte(strings.Replace(smokeManifest, "greeting: hello", "greeting: bonjour", 1)),
	})
	require.NoError(t, err)

	cfg := in.impersonating("caravan-agent")
	in.assertAgentWork(t, in.runAgent(t, f, cfg), "bonjour")
	in.assertNodeWork(t, cfg)
	as, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	_, err = as.CoreV1().ServiceAccounts("smoke").Apply(in.ctx, corev1ac.ServiceAccount("outside-the-rules", "smoke"), metav1.ApplyOptions{FieldManager: "caravan", Force: true})
	assert.True(t, apierrors.IsForbidden(err), "a kind outside the rules is refused: %v", err)
	_, err = as.CoreV1().Secrets("smoke").Get(in.ctx, "anything", metav1.GetOptions{})
	assert.True(t, apierrors.IsForbidden(err), "Secrets beyond the agent's own are refused: %v", err)
}

// runAgent runs the agent in the test with the chart's settings and the
// given identity until it reports the config repo's head as applied, and
// returns that version.
func (in *installed) runAgent(t *testing.T, f *smokeFleet, kube *rest.Config) string {
	t.Helper()
	settings, err := in.cp.Client.CoreV1().ConfigMaps(charts.AgentNamespace).Get(in.ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(t, err)
	token, err := in.cp.Client.CoreV1().Secrets(charts.AgentNamespace).Get(in.ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(in.ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{
			ClusterID: testClusterID, RegistryURL: settings.Data["CARAVAN_REGISTRY_URL"], RegistryToken: string(token.Data["registry-token"]),
			GitSecret: settings.Data["CARAVAN_GIT_SECRET"], Kube: kube, Namespace: charts.AgentNamespace,
			Interval: time.Second, HealthTimeout: time.Minute, MetricsAddr: "0", HealthAddr: "0",
			LeaderElection: leaderelection.Options{Enable: true, ReleaseOnCancel: true, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
			Version:        "test", Log: logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent stopped with: %v", err)
		}
	})
	var status *api.ClusterStatus
	require.Eventually(t, func() bool {
		status, _, err = f.reg.GetClusterStatus(in.ctx, testClusterID)
		return err == nil && status.Phase == api.PhaseIdle && strings.HasPrefix(status.CurrentVersion, f.commit+"#")
	}, 2*time.Minute, 250*time.Millisecond, "the agent applies commit %s and reports it", f.commit)
	assert.Empty(t, status.Problems)
	return status.CurrentVersion
}

// assertAgentWork checks what the agent's smoke run did in the cluster
// with its rights: its ClusterConfig, lease, Secret and Events, and the
// config repo's objects applied.
func (in *installed) assertAgentWork(t *testing.T, version, greeting string) {
	t.Helper()
	cm, err := in.cp.Client.CoreV1().ConfigMaps("smoke").Get(in.ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, greeting, cm.Data["greeting"])
	_, err = in.cp.Client.AppsV1().Deployments("smoke").Get(in.ctx, "app", metav1.GetOptions{})
	require.NoError(t, err)
	lease, err := in.cp.Client.CoordinationV1().Leases(charts.AgentNamespace).Get(in.ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotEmpty(t, *lease.Spec.HolderIdentity)
	_, err = in.cp.Client.CoreV1().Secrets(charts.AgentNamespace).Get(in.ctx, assignment.SecretName, metav1.GetOptions{})
	require.NoError(t, err, "the last good assignment is kept")
	require.Eventually(t, func() bool {
		events, err := in.cp.Client.EventsV1().Events("default").List(in.ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, e := range events.Items {
			if e.Regarding.Kind == "ClusterConfig" && strings.Contains(e.Note, version) {
				return true
			}
		}
		return false
	}, time.Minute, 250*time.Millisecond, "an Event on the ClusterConfig names the applied version")
}

// assertNodeWork checks, as the identity, what replacing nodes takes: list
// and mark nodes, evict a pod, record an Event.
func (in *installed) assertNodeWork(t *testing.T, cfg *rest.Config) {
	t.Helper()
	as, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	nodes, err := as.CoreV1().Nodes().List(in.ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, nodes.Items)
	_, err = as.CoreV1().Nodes().Patch(in.ctx, nodes.Items[0].Name, types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"caravan.io/rbac-check":"ok"}}}`), metav1.PatchOptions{})
	require.NoError(t, err, "patch a node")

	var pod corev1.Pod
	require.Eventually(t, func() bool {
		pods, err := in.cp.Client.CoreV1().Pods("smoke").List(in.ctx, metav1.ListOptions{LabelSelector: "app=smoke"})
		require.NoError(t, err)
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				pod = p
				return true
			}
		}
		return false
	}, time.Minute, 250*time.Millisecond, "a running pod to evict")
	_, err = as.PolicyV1().PodDisruptionBudgets("smoke").List(in.ctx, metav1.ListOptions{})
	require.NoError(t, err, "list PodDisruptionBudgets")
	err = as.CoreV1().Pods("smoke").EvictV1(in.ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: "smoke"}})
	require.NoError(t, err, "evict a pod")

	_, err = as.EventsV1().Events("default").Create(in.ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "rbac-check-"}, EventTime: metav1.NowMicro(), Reason: "Check", Action: "Check",
		Type: corev1.EventTypeNormal, ReportingController: "caravan.io/agent", ReportingInstance: "rbac-check",
		Regarding: corev1.ObjectReference{Kind: "Node", Name: nodes.Items[0].Name, APIVersion: "v1"},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "create an Event")
}
