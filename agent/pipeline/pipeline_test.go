package pipeline

import (
	"context"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func assignment() api.Assignment {
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: "aws:123456789012:eu-central-1:kube-1", LocalID: "kube-1", Alias: "kube-one",
			InfrastructureAccount: "aws:123456789012", Region: "eu-central-1", APIServerURL: "https://kube-1.example.org",
			Environment: "test", Provider: "aws", CriticalityLevel: 1},
		Channel:     api.AssignedChannel{Name: "dev", Branch: "dev"},
		ConfigItems: map[string]string{"team": "platform"},
		NodePools: []api.AssignedNodePool{
			{Name: "system", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 4, DiscountStrategy: api.DiscountNone},
			{Name: "workers", Profile: "worker-default", InstanceTypes: []string{"m6i.xlarge"}, MinSize: 1, MaxSize: 20, DiscountStrategy: api.DiscountSpot},
		},
	}
}

func TestTheReferenceRepoRendersManifestsAndEveryStack(t *testing.T) {
	got, err := Render(context.Background(), os.DirFS("../../manifests"), assignment(), Options{})
	require.NoError(t, err)
	assert.NotEmpty(t, got.Manifests.Objects)
	require.NotNil(t, got.Cluster)
	assert.Equal(t, "kube-1", got.Cluster.Name)
	require.Len(t, got.NodePools, 2, "one stack per pool")
	assert.Equal(t, "nodepool-system-kube-1", got.NodePools[0].Name)
	assert.Equal(t, "nodepool-workers-kube-1", got.NodePools[1].Name)
	assert.Contains(t, string(got.NodePools[0].Body), "placeholder-NodeSecurityGroupId", "the cluster stack's outputs are placeholders")
	assert.NotEqual(t, got.NodePools[0].Revision, got.NodePools[1].Revision)
}

func TestAnEncryptedItemWithoutKMSFailsTheSecretsStep(t *testing.T) {
	a := assignment()
	a.ConfigItems["password"] = "aws:kms:AQICAHh0ZXN0"
	_, err := Render(context.Background(), os.DirFS("../../manifests"), a, Options{})
	require.Error(t, err)
	assert.Equal(t, StepSecrets, StepOf(err))
	assert.Contains(t, err.Error(), "password")
}

func TestKeepCiphertextRendersWithTheCiphertext(t *testing.T) {
	a := assignment()
	a.ConfigItems["password"] = "aws:kms:AQICAHh0ZXN0"
	got, err := Render(context.Background(), os.DirFS("../../manifests"), a, Options{KeepCiphertext: true})
	require.NoError(t, err)
	assert.Equal(t, "aws:kms:AQICAHh0ZXN0", got.Manifests.ConfigItems["password"])
	assert.Equal(t, "aws:kms:AQICAHh0ZXN0", got.Assignment.ConfigItems["password"])
}

func TestABrokenCommitFailsTheRenderStepNamingTheFile(t *testing.T) {
	repo := fstest.MapFS{
		"kubernetes/overlays/test/kustomization.yaml": {Data: []byte("resources:\n  - cm.yaml\n")},
		"kubernetes/overlays/test/cm.yaml":            {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: ${nope}\n")},
	}
	got, err := Render(context.Background(), repo, assignment(), Options{})
	require.Error(t, err)
	assert.Nil(t, got)
	assert.Equal(t, StepRender, StepOf(err))
	var re *render.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "kubernetes/overlays/test/cm.yaml", re.File)
	assert.Equal(t, 6, re.Line)
}

func TestABrokenPoolTemplateFailsBeforeAnyStackIsApplied(t *testing.T) {
	repo := fstest.MapFS{}
	for _, f := range []string{"cloudformation/cluster.yaml", "config-defaults.yaml"} {
		content, err := os.ReadFile("../../manifests/" + f)
		require.NoError(t, err)
		repo[f] = &fstest.MapFile{Data: content}
	}
	repo["kubernetes/overlays/test/kustomization.yaml"] = &fstest.MapFile{Data: []byte("resources: []\n")}
	repo["cloudformation/node-pool.yaml"] = &fstest.MapFile{Data: []byte("Resources: {{ .Outputs.NoSuchOutput }}\n")}
	_, err := Render(context.Background(), repo, assignment(), Options{})
	require.Error(t, err)
	assert.Equal(t, StepRender, StepOf(err))
	assert.True(t, strings.Contains(err.Error(), "NoSuchOutput"), err.Error())
}

func TestASharedRendererRendersWhatARenderAloneDoes(t *testing.T) {
	repo := os.DirFS("../../manifests")
	alone, err := Render(context.Background(), repo, assignment(), Options{})
	require.NoError(t, err)
	shared, err := Render(context.Background(), repo, assignment(), Options{Renderer: render.NewRenderer(repo)})
	require.NoError(t, err)
	assert.Equal(t, alone, shared)
}
