// Package cfnlint checks the reference CloudFormation templates, rendered
// by the agent's own render functions for a matrix of clusters, with
// cfn-lint (PyPI, pinned in test/moto/requirements.txt): what real
// CloudFormation takes, which moto, the tests' AWS, does not tell.
//
// It is a package of its own rather than a test of agent/render so that
// the render package's tests stay pure and fast, and this one, which needs
// the Python venv of `make test-deps`, sits with the other tests of real
// outside tools under test/.
package cfnlint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// Binary is the venv's cfn-lint.
func Binary() (string, error) {
	return controlplane.VenvBinary("cfn-lint", "the CloudFormation template checks")
}

// config is the checked-in cfn-lint configuration: the rules it ignores,
// each with its reason.
func config(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	require.NoError(t, err)
	return filepath.Join(root, "manifests", "cloudformation", ".cfnlintrc.yaml")
}

// outputs are what a real cluster stack gives its pools: IDs and names in
// the shapes AWS makes them.
func outputs(local, region string, zones int) map[string]string {
	var public, private []string
	for i := range zones {
		public = append(public, fmt.Sprintf("subnet-0a1b2c3d4e5f6071%d", i))
		private = append(private, fmt.Sprintf("subnet-0f1e2d3c4b5a6978%d", i))
	}
	return map[string]string{
		"VpcId":                          "vpc-0123456789abcdef0",
		"PublicSubnetIds":                strings.Join(public, ","),
		"PrivateSubnetIds":               strings.Join(private, ","),
		"NodeSecurityGroupId":            "sg-0a1b2c3d4e5f60718",
		"ControlPlaneSecurityGroupId":    "sg-0f1e2d3c4b5a69788",
		"WorkerInstanceProfileArn":       "arn:aws:iam::123456789012:instance-profile/" + local + "-WorkerInstanceProfile-1A2B3C4D5E6F",
		"ControlPlaneInstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/" + local + "-ControlPlaneInstanceProfile-6F5E4D3C2B1A",
		"APIServerLoadBalancerName":      local + "-APIServe-1Q2W3E4R5T6Y",
		"APIServerLoadBalancerDNSName":   local + "-APIServe-1Q2W3E4R5T6Y-1234567890." + "eu-central-1.elb.amazonaws.com",
	}
}

func cluster(local, region, env string, items map[string]string, pools ...api.AssignedNodePool) api.Assignment {
	id := "aws:123456789012:" + region + ":" + local
	for i := range pools {
		pools[i].ConfigItems = items
	}
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: id, LocalID: local, Alias: local, InfrastructureAccount: "aws:123456789012", Region: region,
			APIServerURL: "https://" + local + ".example.org", Environment: env, Provider: "aws", CriticalityLevel: 2},
		Channel:     api.AssignedChannel{Name: "stable", Branch: "stable"},
		ConfigItems: items,
		NodePools:   pools,
	}
}

func pool(name, profile, discount string, types ...string) api.AssignedNodePool {
	return api.AssignedNodePool{Name: name, Profile: profile, InstanceTypes: types, MinSize: 1, MaxSize: 10, DiscountStrategy: discount,
		Labels: map[string]string{}, Taints: []api.Taint{}}
}

// gpuPool is a spot pool as a machine-learning platform runs it: forty
// GPU instance types (as many as a group's overrides may list), the
// labels node-feature-discovery would put on its nodes, registered at
// boot so that pods land on the right hardware from the start, and taints
// that keep other work off. Its template is over 51,200 bytes, the most
// CloudFormation takes inline: the agent uploads it to S3.
func gpuPool() api.AssignedNodePool {
	p := pool("gpu-training", "worker-gpu", api.DiscountSpot)
	for _, family := range []string{"g4dn", "g5", "g6", "p3", "p4d", "g4ad", "g5g", "p5"} {
		for _, size := range []string{"xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge"} {
			p.InstanceTypes = append(p.InstanceTypes, family+"."+size)
		}
	}
	for _, feature := range []string{"AVX", "AVX2", "AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL", "AVX512VNNI",
		"AESNI", "FMA3", "SHA", "VAES", "VPCLMULQDQ", "ADX", "BMI1", "BMI2", "MOVBE", "POPCNT", "SSE4", "SSE42"} {
		p.Labels["feature.node.kubernetes.io/cpu-cpuid."+feature] = "true"
	}
	for i := range 140 {
		p.Labels[fmt.Sprintf("feature.node.kubernetes.io/pci-10de-%04x.present", 0x1db0+i)] = "true"
		p.Labels[fmt.Sprintf("nvidia.com/gpu.product-variant-%03d", i)] = fmt.Sprintf("Tesla-V100-SXM2-16GB-rev%03d", i)
	}
	p.Labels["nvidia.com/gpu.present"] = "true"
	p.Taints = []api.Taint{
		{Key: "nvidia.com/gpu", Value: "present", Effect: "NoSchedule"},
		{Key: "example.org/dedicated", Value: "ml-training", Effect: "NoSchedule"},
		{Key: "example.org/spot", Effect: "PreferNoSchedule"},
	}
	return p
}

// fleet is the matrix: production and test, on-demand and spot, control
// plane and worker pools, one to three zones, with and without DNS.
func fleet() []api.Assignment {
	master := pool("master", "master-default", api.DiscountNone, "m6i.large")
	master.MinSize, master.MaxSize = 3, 3
	system := pool("system", "worker-default", api.DiscountNone, "m6i.xlarge")
	system.Labels["caravan.io/role"] = "system"
	system.Taints = []api.Taint{{Key: "dedicated", Value: "system", Effect: "NoSchedule"}}
	return []api.Assignment{
		cluster("prod-eu-1", "eu-central-1", "production",
			map[string]string{"hosted_zone": "example.org", "vpc_cidr": "10.10.0.0/16", "node_volume_size": "100"},
			master, system,
			pool("workers", "worker", api.DiscountNone, "m6i.2xlarge"),
			pool("workers-spot", "worker-default", api.DiscountSpot, "m6i.2xlarge", "m5.2xlarge", "m5a.2xlarge", "m6a.2xlarge")),
		cluster("test-us-1", "us-east-1", "test",
			map[string]string{"availability_zones": "a,b", "node_volume_type": "gp2"},
			pool("master", "master", api.DiscountNone, "t3.large"),
			pool("workers", "worker-default", api.DiscountSpot, "t3.large", "t3a.large"),
			gpuPool()),
		cluster("test-eu-2", "eu-west-1", "test",
			map[string]string{"availability_zones": "c", "api_server_allowed_cidr": "203.0.113.0/24"},
			pool("default", "worker-default", api.DiscountNone, "m6i.large")),
	}
}

// renderInto renders a cluster's stacks as its agent would, and writes them.
func renderInto(t *testing.T, dir string, a api.Assignment) []string {
	t.Helper()
	repo := os.DirFS("../../manifests")
	items, err := render.ConfigItems(repo, a)
	require.NoError(t, err)
	clusterStack, _, err := render.Stacks(repo, a, items)
	require.NoError(t, err)
	stacks := []*render.Stack{clusterStack}
	for _, p := range a.NodePools {
		s, err := render.NodePoolStack(repo, a, items, p, outputs(a.Cluster.LocalID, a.Cluster.Region, len(strings.Split(items["availability_zones"], ","))))
		require.NoError(t, err)
		stacks = append(stacks, s)
	}
	var files []string
	for _, s := range stacks {
		file := filepath.Join(dir, s.Name+".yaml")
		require.NoError(t, os.WriteFile(file, s.Body, 0o600))
		files = append(files, file)
	}
	return files
}

// Every template of every cluster of the matrix passes cfn-lint, with the
// rules the checked-in configuration ignores (each with its reason).
func TestRenderedTemplatesPassCfnLint(t *testing.T) {
	bin, err := Binary()
	require.NoError(t, err)
	cfg := config(t)
	require.FileExists(t, cfg)

	largest := 0
	for _, a := range fleet() {
		dir := t.TempDir()
		files := renderInto(t, dir, a)
		for _, f := range files {
			info, err := os.Stat(f)
			require.NoError(t, err)
			largest = max(largest, int(info.Size()))
		}
		t.Run(a.Cluster.LocalID, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			args := append([]string{"--config-file", cfg, "--regions", a.Cluster.Region, "--format", "parseable", "--"}, files...)
			cmd := exec.CommandContext(ctx, bin, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				// cfn-lint's exit status is a bit mask: 2 errors, 4
				// warnings, 8 informational; 1 is its own failure.
				t.Fatalf("cfn-lint found problems in the templates of %s (exit %d):\n%s", a.Cluster.ID, exit.ExitCode(), out.String())
			}
			require.NoError(t, err, out.String())
			assert.Empty(t, strings.TrimSpace(out.String()))
		})
	}
	assert.Greater(t, largest, cloud.MaxTemplateBody, "one template of the matrix is larger than CloudFormation takes inline")
}

// Without cfn-lint the check fails, saying how to install it: a missing
// tool must never pass for clean templates.
func TestMissingCfnLintFails(t *testing.T) {
	t.Setenv("CARAVAN_VENV", t.TempDir())
	_, err := Binary()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "make test-deps")
	assert.ErrorIs(t, err, os.ErrNotExist)
}
