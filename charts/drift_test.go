package charts_test

import (
	"io/fs"
	"os"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	agentrender "github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/charts"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// baseEnvironment names an overlay, added to the reference config repo for
// this test, that is the base alone: the test and production overlays
// patch the agent per environment.
const baseEnvironment = "base-only"

// referenceRepo is manifests/, the reference config repo, with the
// base-only overlay.
func referenceRepo(t *testing.T) fs.FS {
	repo := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS("../manifests"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(os.DirFS("../manifests"), p)
		repo[p] = &fstest.MapFile{Data: data}
		return err
	})
	require.NoError(t, err)
	repo["kubernetes/overlays/"+baseEnvironment+"/kustomization.yaml"] = &fstest.MapFile{Data: []byte("resources:\n  - ../../base\n")}
	return repo
}

// referenceAgent renders the reference config repo as the agent of the test
// cluster does, config item defaults included, and returns its objects.
func referenceAgent(t *testing.T) *rendered {
	t.Helper()
	a := api.Assignment{
		Cluster: api.AssignedCluster{ID: testClusterID, LocalID: "kube-1", Alias: "kube-1", Region: "eu-central-1",
			Environment: baseEnvironment, Provider: "aws", CriticalityLevel: 1},
		Channel: api.AssignedChannel{Name: "dev", Branch: "dev"},
	}
	res, err := agentrender.Render(referenceRepo(t), a)
	require.NoError(t, err)
	return &rendered{t: t, objects: res.Objects}
}

// The agent keeps itself up to date from the config repo once the chart
// installed it: the chart's default render and the reference repo's copy
// must describe the same agent, or the first sync changes it.
func TestChartAndReferenceRepoDescribeTheSameAgent(t *testing.T) {
	repo := referenceAgent(t)
	chart := render(t, charts.Agent, agentRelease, agentValues(nil))

	fromChart := decode[appsv1.Deployment](chart, "Deployment", "caravan-agent")
	fromRepo := decode[appsv1.Deployment](repo, "Deployment", "caravan-agent")
	// Only the chart knows when its settings change; the repo's copy reads
	// the same settings from the chart's ConfigMap.
	delete(fromChart.Spec.Template.Annotations, "checksum/settings")
	if len(fromChart.Spec.Template.Annotations) == 0 {
		fromChart.Spec.Template.Annotations = nil
	}
	assert.Equal(t, fromRepo.Namespace, fromChart.Namespace)
	assert.Equal(t, fromRepo.Spec, fromChart.Spec)

	assert.Equal(t, decode[policyv1.PodDisruptionBudget](repo, "PodDisruptionBudget", "caravan-agent").Spec,
		decode[policyv1.PodDisruptionBudget](chart, "PodDisruptionBudget", "caravan-agent").Spec)
	assert.Equal(t, decode[rbacv1.ClusterRole](repo, "ClusterRole", "caravan-agent").Rules,
		decode[rbacv1.ClusterRole](chart, "ClusterRole", "caravan-agent").Rules)
	repoBinding := decode[rbacv1.ClusterRoleBinding](repo, "ClusterRoleBinding", "caravan-agent")
	chartBinding := decode[rbacv1.ClusterRoleBinding](chart, "ClusterRoleBinding", "caravan-agent")
	assert.Equal(t, repoBinding.RoleRef, chartBinding.RoleRef)
	assert.Equal(t, repoBinding.Subjects, chartBinding.Subjects)
	assert.Equal(t, repo.find("ServiceAccount", "caravan-agent").GetNamespace(), chart.find("ServiceAccount", "caravan-agent").GetNamespace())
}

// The chart installs the CRD the agent would install itself: the same one.
func TestChartCRDIsTheAgents(t *testing.T) {
	agentCRD, err := os.ReadFile("../agent/clusterconfig/crd.yaml")
	require.NoError(t, err)
	chartCRD, err := os.ReadFile("caravan-agent/crds/clusterconfig.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(agentCRD), string(chartCRD), "copy agent/clusterconfig/crd.yaml to charts/caravan-agent/crds/clusterconfig.yaml")
}
