package cli

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

const clusterRegistryURL = "https://caravan.example.org"

func decodeStream(t *testing.T, stream string) []*unstructured.Unstructured {
	t.Helper()
	var objects []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(stream), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objects
		}
		require.NoError(t, err)
		if len(u.Object) > 0 {
			objects = append(objects, u)
		}
	}
}

func findObject(t *testing.T, objects []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, u := range objects {
		if u.GetKind() == kind && u.GetName() == name {
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into))
			return
		}
	}
	t.Fatalf("no %s %s in the output", kind, name)
}

// assertAgentToken checks that token is a working agent token of the
// cluster: the registry hands it the cluster's assignment.
func (e *e2e) assertAgentToken(token string) {
	e.t.Helper()
	agent, err := registry.New(e.server.URL, token, registry.WithRetryMax(0))
	require.NoError(e.t, err)
	res, err := agent.GetAssignment(context.Background(), e2eCluster, registry.AssignmentOptions{})
	require.NoError(e.t, err)
	assert.Equal(e.t, e2eCluster, res.Assignment.Cluster.ID)
}

func (e *e2e) tokens() []api.Token {
	e.t.Helper()
	cl, err := registry.New(e.server.URL, e.server.AdminToken)
	require.NoError(e.t, err)
	list, err := cl.ListTokens(context.Background(), registry.Page{})
	require.NoError(e.t, err)
	return list.Items
}

func TestE2EBootstrapPrintsTheInstall(t *testing.T) {
	e := startE2E(t)
	e.seed()

	code, stdout, stderr := e.try("", "clusters", "bootstrap", e2eCluster, "--registry-url", clusterRegistryURL,
		"--set", "aws.roleARN=arn:aws:iam::123456789012:role/caravan agent")
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stderr, "its secret is shown only in this output")

	heredoc := stdout[strings.Index(stdout, "<<'EOF'\n")+len("<<'EOF'\n") : strings.Index(stdout, "\nEOF\n")]
	objects := decodeStream(t, heredoc)
	var secret corev1.Secret
	findObject(t, objects, "Secret", "caravan-agent", &secret)
	assert.Equal(t, "caravan-system", secret.Namespace)
	e.assertAgentToken(secret.StringData["registry-token"])
	findObject(t, objects, "Namespace", "caravan-system", &corev1.Namespace{})

	assert.Contains(t, stdout, "helm upgrade --install caravan-agent charts/caravan-agent --namespace caravan-system"+
		" --set clusterID=aws:123456789012:eu-central-1:kube-1 --set registry.url=https://caravan.example.org"+
		" --set 'aws.roleARN=arn:aws:iam::123456789012:role/caravan agent' --wait\n")
}

func TestE2EBootstrapPrintsManifests(t *testing.T) {
	e := startE2E(t)
	e.seed()

	// Without --registry-url, the cluster reaches the registry where caravan does.
	objects := decodeStream(t, e.run("clusters", "bootstrap", e2eCluster, "-o", "manifests", "--set", "rbac.clusterAdmin=false"))
	var secret corev1.Secret
	findObject(t, objects, "Secret", "caravan-agent", &secret)
	e.assertAgentToken(string(secret.Data["registry-token"]))
	var settings corev1.ConfigMap
	findObject(t, objects, "ConfigMap", "caravan-agent", &settings)
	assert.Equal(t, e.server.URL, settings.Data["CARAVAN_REGISTRY_URL"])
	var d appsv1.Deployment
	findObject(t, objects, "Deployment", "caravan-agent", &d)
	assert.Contains(t, d.Spec.Template.Spec.Containers[0].Args, "--cluster-id="+e2eCluster)
	findObject(t, objects, "Role", "caravan-agent", &unstructured.Unstructured{})
	findObject(t, objects, "CustomResourceDefinition", "clusterconfigs.caravan.io", &unstructured.Unstructured{})
}

func TestE2EBootstrapOfAnUnknownClusterIssuesNoToken(t *testing.T) {
	e := startE2E(t)
	e.seed()
	before := len(e.tokens())

	code, _, stderr := e.try("", "clusters", "bootstrap", "aws:123456789012:eu-central-1:kube-9")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, `cluster "aws:123456789012:eu-central-1:kube-9": not found`)
	assert.Len(t, e.tokens(), before)
}

func TestBootstrapUsageErrors(t *testing.T) {
	e := startE2E(t)
	e.seed()
	before := len(e.tokens())
	for args, says := range map[string]string{
		"not-a-cluster-id":                            "cluster id must look like",
		e2eCluster + " -o json":                       "--output must be helm or manifests",
		e2eCluster + " --apply -o manifests":          "give --apply or --output manifests, not both",
		e2eCluster + " --kube-context kube-1":         "--kubeconfig and --kube-context are for --apply",
		e2eCluster + " --set replicas":                "--set replicas",
		e2eCluster + " --set replicas=two":            "/replicas",
		e2eCluster + " --set networkPolicy.enabled=1": "/networkPolicy/enabled",
		e2eCluster + " --registry-url caravan.local":  "/registry/url",
	} {
		code, _, stderr := e.try("", append([]string{"clusters", "bootstrap"}, strings.Fields(args)...)...)
		assert.Equal(t, ExitUsage, code, args)
		assert.Contains(t, stderr, says, args)
	}
	assert.Len(t, e.tokens(), before, "no token is issued for a command line the chart refuses")
}

func TestE2EBootstrapAppliesTheAgent(t *testing.T) {
	e := startE2E(t)
	e.seed()
	cp := controlplane.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, n := range []string{"node-a", "node-b"} {
		_, err := cp.AddNode(ctx, controlplane.Node{Name: n})
		require.NoError(t, err)
	}

	out := e.run("clusters", "bootstrap", e2eCluster, "--apply", "--kubeconfig", cp.Kubeconfig, "--registry-url", clusterRegistryURL)
	assert.Equal(t, "release caravan-agent revision 1: the agent of "+e2eCluster+" runs in namespace caravan-system\n", out)
	d, err := cp.Client.AppsV1().Deployments("caravan-system").Get(ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(2), d.Status.AvailableReplicas, "--apply waits for the agent to be ready")
	first := e.agentTokenIn(ctx, cp)
	e.assertAgentToken(first)
	settings, err := cp.Client.CoreV1().ConfigMaps("caravan-system").Get(ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, clusterRegistryURL, settings.Data["CARAVAN_REGISTRY_URL"])

	// Again: an upgrade of the release with a new token, which restarts the agent.
	out = e.run("clusters", "bootstrap", e2eCluster, "--apply", "--kubeconfig", cp.Kubeconfig, "--registry-url", clusterRegistryURL)
	assert.Contains(t, out, "release caravan-agent revision 2")
	second := e.agentTokenIn(ctx, cp)
	assert.NotEqual(t, first, second)
	e.assertAgentToken(second)
}

func (e *e2e) agentTokenIn(ctx context.Context, cp *controlplane.ControlPlane) string {
	e.t.Helper()
	s, err := cp.Client.CoreV1().Secrets("caravan-system").Get(ctx, "caravan-agent", metav1.GetOptions{})
	require.NoError(e.t, err)
	return string(s.Data["registry-token"])
}

// Several registry URLs reach the chart as one value: helm --set splits
// at unescaped commas.
func TestInstallScriptKeepsSeveralRegistryURLsWhole(t *testing.T) {
	var out strings.Builder
	f := bootstrapFlags{chart: "charts/caravan-agent", namespace: "caravan-system", registryURL: "https://a.example.org,https://b.example.org"}
	require.NoError(t, writeInstallScript(&out, "aws:123456789012:eu-central-1:kube-1", &api.Token{Secret: "s"}, map[string]any{}, f))
	assert.Contains(t, out.String(), `--set 'registry.url=https://a.example.org\,https://b.example.org'`)
}
