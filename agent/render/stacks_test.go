package render

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"text/template"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// stackAssignment is a cluster with an on-demand and a spot pool.
func stackAssignment() api.Assignment {
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: "aws:123456789012:eu-central-1:kube-1", LocalID: "kube-1", Alias: "kube-one",
			InfrastructureAccount: "aws:123456789012", Region: "eu-central-1", APIServerURL: "https://kube-1.example.org",
			Environment: "test", Provider: "aws", CriticalityLevel: 1},
		Channel:     api.AssignedChannel{Name: "dev", Branch: "dev"},
		ConfigItems: map[string]string{"team": "platform"},
		NodePools: []api.AssignedNodePool{
			{Name: "system", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 4,
				DiscountStrategy: api.DiscountNone, ConfigItems: map[string]string{"team": "platform"},
				Labels: map[string]string{"caravan.io/role": "system"}, Taints: []api.Taint{{Key: "dedicated", Value: "system", Effect: "NoSchedule"}}},
			{Name: "workers", Profile: "worker-default", InstanceTypes: []string{"m6i.xlarge", "m5.xlarge"}, MinSize: 1, MaxSize: 20,
				DiscountStrategy: api.DiscountSpot, ConfigItems: map[string]string{"team": "platform", "node_volume_size": "100"}},
		},
	}
}

// clusterOutputs are what the reference cluster stack gives node pools.
var clusterOutputs = map[string]string{
	"VpcId": "vpc-1", "PublicSubnetIds": "subnet-p1,subnet-p2,subnet-p3", "PrivateSubnetIds": "subnet-1,subnet-2,subnet-3",
	"NodeSecurityGroupId": "sg-node", "ControlPlaneSecurityGroupId": "sg-cp",
	"WorkerInstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/worker", "ControlPlaneInstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/cp",
	"APIServerLoadBalancerName": "kube-1-api", "APIServerLoadBalancerDNSName": "kube-1-api.elb.amazonaws.com",
}

func referenceStacks(t *testing.T, a api.Assignment) (*Stack, map[string]*Stack) {
	t.Helper()
	repo := os.DirFS("../../manifests")
	items, err := ConfigItems(repo, a)
	require.NoError(t, err)
	cluster, err := ClusterStack(repo, a, items)
	require.NoError(t, err)
	pools := map[string]*Stack{}
	for _, p := range a.NodePools {
		pools[p.Name], err = NodePoolStack(repo, a, items, p, clusterOutputs)
		require.NoError(t, err)
	}
	return cluster, pools
}

// resources parses a rendered template as CloudFormation reads it.
func resources(t *testing.T, s *Stack) map[string]map[string]any {
	t.Helper()
	var tmpl struct {
		Resources map[string]map[string]any `json:"Resources"`
	}
	require.NoError(t, yaml.Unmarshal(s.Body, &tmpl), string(s.Body))
	return tmpl.Resources
}

func properties(t *testing.T, s *Stack, resource string) map[string]any {
	t.Helper()
	r, ok := resources(t, s)[resource]
	require.True(t, ok, "%s has a %s", s.Name, resource)
	return r["Properties"].(map[string]any)
}

func TestReferenceStacksRender(t *testing.T) {
	a := stackAssignment()
	cluster, pools := referenceStacks(t, a)

	require.NotNil(t, cluster)
	assert.Equal(t, "kube-1", cluster.Name)
	assert.Empty(t, cluster.NodePool)
	sum := sha256.Sum256(cluster.Body)
	assert.Equal(t, hex.EncodeToString(sum[:]), cluster.Digest)
	types := map[string]int{}
	for _, r := range resources(t, cluster) {
		types[r["Type"].(string)]++
	}
	for _, typ := range []string{"AWS::EC2::VPC", "AWS::EC2::SecurityGroup", "AWS::IAM::Role", "AWS::IAM::InstanceProfile", "AWS::ElasticLoadBalancing::LoadBalancer"} {
		assert.Positive(t, types[typ], "the cluster stack has a %s", typ)
	}
	assert.Equal(t, 3, types["AWS::EC2::Subnet"]/2, "a public and a private subnet per zone")
	assert.Zero(t, types["AWS::Route53::RecordSet"], "no DNS record without hosted_zone")
	names, err := OutputNames(cluster)
	require.NoError(t, err)
	for name := range clusterOutputs {
		assert.Contains(t, names, name, "what the test gives pools is what the cluster stack declares")
	}
	assert.Len(t, names, len(clusterOutputs))

	system, workers := pools["system"], pools["workers"]
	assert.Equal(t, "nodepool-system-kube-1", system.Name)
	assert.Equal(t, "system", system.NodePool)
	assert.Equal(t, "nodepool-workers-kube-1", workers.Name)
	assert.Regexp(t, "^[0-9a-f]{16}$", system.Revision)
	assert.NotEqual(t, system.Revision, workers.Revision)

	for _, s := range []*Stack{system, workers} {
		group := resources(t, s)["AutoScalingGroup"]
		assert.NotContains(t, group, "UpdatePolicy", "the agent replaces nodes, not CloudFormation")
		assert.NotContains(t, group["Properties"], "DesiredCapacity", "an update must not undo scaling")
		assert.Equal(t, []any{"subnet-1", "subnet-2", "subnet-3"}, group["Properties"].(map[string]any)["VPCZoneIdentifier"])
		data := properties(t, s, "LaunchTemplate")["LaunchTemplateData"].(map[string]any)
		assert.Contains(t, data["TagSpecifications"], map[string]any{"ResourceType": "instance", "Tags": []any{
			map[string]any{"Key": "Name", "Value": s.Name},
			map[string]any{"Key": "caravan.io/cluster-id", "Value": a.Cluster.ID},
			map[string]any{"Key": "caravan.io/node-pool", "Value": s.NodePool},
			map[string]any{"Key": "caravan.io/node-pool-revision", "Value": s.Revision},
			map[string]any{"Key": "kubernetes.io/cluster/kube-1", "Value": "owned"},
		}}, "every instance carries the revision")
	}

	onDemand := properties(t, system, "AutoScalingGroup")
	assert.Equal(t, "2", onDemand["MinSize"])
	assert.Equal(t, "4", onDemand["MaxSize"])
	assert.NotContains(t, onDemand, "MixedInstancesPolicy")
	// The launch template's latest version, as CloudFormation asks: it
	// documents $Latest as unsupported in a group's LaunchTemplate.
	latest := map[string]any{"Fn::GetAtt": []any{"LaunchTemplate", "LatestVersionNumber"}}
	assert.Equal(t, map[string]any{"LaunchTemplateId": map[string]any{"Ref": "LaunchTemplate"}, "Version": latest}, onDemand["LaunchTemplate"])
	assert.Contains(t, onDemand["Tags"], map[string]any{"Key": "k8s.io/cluster-autoscaler/kube-1", "Value": "owned", "PropagateAtLaunch": false})

	spot := properties(t, workers, "AutoScalingGroup")
	assert.NotContains(t, spot, "LaunchTemplate")
	policy := spot["MixedInstancesPolicy"].(map[string]any)
	assert.EqualValues(t, 0, policy["InstancesDistribution"].(map[string]any)["OnDemandPercentageAboveBaseCapacity"])
	assert.Equal(t, map[string]any{
		"LaunchTemplateSpecification": map[string]any{"LaunchTemplateId": map[string]any{"Ref": "LaunchTemplate"}, "Version": latest},
		"Overrides":                   []any{map[string]any{"InstanceType": "m6i.xlarge"}, map[string]any{"InstanceType": "m5.xlarge"}},
	}, policy["LaunchTemplate"])

	data := properties(t, system, "LaunchTemplate")["LaunchTemplateData"].(map[string]any)
	assert.Equal(t, "m6i.large", data["InstanceType"])
	userData, err := base64.StdEncoding.DecodeString(data["UserData"].(string))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"cluster_id":  "aws:123456789012:eu-central-1:kube-1",
		"node_pool":   "system",
		"node_labels": "caravan.io/node-pool=system,caravan.io/profile=worker-default,caravan.io/role=system",
		"node_taints": "dedicated=system:NoSchedule",
		"api_server":  "https://kube-1.example.org",
		"kubelet_args": "--node-labels=caravan.io/node-pool=system,caravan.io/profile=worker-default,caravan.io/role=system" +
			" --cluster-dns=10.0.0.10 --cluster-domain=cluster.local --register-with-taints=dedicated=system:NoSchedule",
	}, bootVariables(t, string(userData)), "the pool's identity, as bash reads the boot script")
	assert.EqualValues(t, 100, properties(t, workers, "LaunchTemplate")["LaunchTemplateData"].(map[string]any)["BlockDeviceMappings"].([]any)[0].(map[string]any)["Ebs"].(map[string]any)["VolumeSize"],
		"a pool's own config item")
}

func TestReferenceClusterStackOptions(t *testing.T) {
	a := stackAssignment()
	a.ConfigItems = map[string]string{"hosted_zone": "example.org", "vpc_cidr": "10.20.0.0/16", "availability_zones": "a,b"}
	a.NodePools = append(a.NodePools, api.AssignedNodePool{Name: "master", Profile: "master-default", InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 1})
	cluster, pools := referenceStacks(t, a)

	record := properties(t, cluster, "APIServerRecord")
	assert.Equal(t, "example.org.", record["HostedZoneName"])
	assert.Equal(t, "kube-1.example.org.", record["Name"], "the host of the API server's URL")
	assert.Equal(t, "10.20.16.0/20", properties(t, cluster, "PublicSubnetB")["CidrBlock"])
	assert.Equal(t, "10.20.128.0/18", properties(t, cluster, "PrivateSubnetB")["CidrBlock"])
	assert.NotContains(t, resources(t, cluster), "PrivateSubnetC")

	master := properties(t, pools["master"], "AutoScalingGroup")
	assert.Equal(t, []any{"kube-1-api"}, master["LoadBalancerNames"], "control plane nodes serve the API")
	assert.NotContains(t, properties(t, pools["system"], "AutoScalingGroup"), "LoadBalancerNames")
	data := properties(t, pools["master"], "LaunchTemplate")["LaunchTemplateData"].(map[string]any)
	assert.Equal(t, []any{"sg-node", "sg-cp"}, data["SecurityGroupIds"])
}

func TestNodePoolRevisionFollowsWhatShapesANode(t *testing.T) {
	repo := os.DirFS("../../manifests")
	render := func(change func(a *api.Assignment, p *api.AssignedNodePool)) *Stack {
		a := stackAssignment()
		if change != nil {
			change(&a, &a.NodePools[0])
		}
		items, err := ConfigItems(repo, a)
		require.NoError(t, err)
		s, err := NodePoolStack(repo, a, items, a.NodePools[0], clusterOutputs)
		require.NoError(t, err)
		return s
	}
	base := render(nil)
	assert.Equal(t, base.Revision, render(nil).Revision, "stable")
	assert.Equal(t, base.Digest, render(nil).Digest, "stable")

	cases := map[string]struct {
		change  func(a *api.Assignment, p *api.AssignedNodePool)
		reshape bool
	}{
		"instance type": {change: func(_ *api.Assignment, p *api.AssignedNodePool) { p.InstanceTypes = []string{"m6i.xlarge"} }, reshape: true},
		"image, at the pool": {change: func(_ *api.Assignment, p *api.AssignedNodePool) {
			p.ConfigItems = map[string]string{"team": "platform", "node_image_id": "ami-0123456789abcdef0"}
		}, reshape: true},
		"image, at the cluster": {change: func(a *api.Assignment, _ *api.AssignedNodePool) {
			a.ConfigItems["node_image_id"] = "ami-0123456789abcdef0"
		}, reshape: true},
		"labels": {change: func(_ *api.Assignment, p *api.AssignedNodePool) {
			p.Labels = map[string]string{"caravan.io/role": "ingress"}
		}, reshape: true},
		"taints":                {change: func(_ *api.Assignment, p *api.AssignedNodePool) { p.Taints = nil }, reshape: true},
		"max size":              {change: func(_ *api.Assignment, p *api.AssignedNodePool) { p.MaxSize = 40 }},
		"min size":              {change: func(_ *api.Assignment, p *api.AssignedNodePool) { p.MinSize = 0 }},
		"another pool's change": {change: func(a *api.Assignment, _ *api.AssignedNodePool) { a.NodePools[1].InstanceTypes = []string{"c6i.large"} }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := render(tc.change)
			if tc.reshape {
				assert.NotEqual(t, base.Revision, s.Revision)
				assert.Contains(t, string(s.Body), `Value: "`+s.Revision+`"`, "the new revision is on the instances")
			} else {
				assert.Equal(t, base.Revision, s.Revision)
			}
		})
	}
	assert.NotEqual(t, base.Digest, render(cases["max size"].change).Digest, "the stack changes all the same")
}

// minimalPool is a pool template that shapes nodes with one launch template.
const minimalPool = `Resources:
  LaunchTemplate:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        InstanceType: {{ index .NodePool.InstanceTypes 0 }}
        SubnetId: {{ .Outputs.SubnetId }}
        TagSpecifications: [{ResourceType: instance, Tags: [{Key: caravan.io/node-pool-revision, Value: "{{ .NodePool.Revision }}"}]}]
`

const minimalCluster = "Resources:\n  VPC:\n    Type: AWS::EC2::VPC\n    Properties: {CidrBlock: {{ .Cluster.ConfigItems.vpc_cidr }}}\nOutputs:\n  SubnetId: {Value: x}\n"

func stackRepo(files map[string]string) fstest.MapFS {
	repo := fstest.MapFS{}
	for name, content := range map[string]string{ClusterTemplate: minimalCluster, NodePoolTemplate: minimalPool} {
		repo[name] = &fstest.MapFile{Data: []byte(content)}
	}
	for name, content := range files {
		if content == "" {
			delete(repo, name)
			continue
		}
		repo[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return repo
}

func TestBrokenTemplatesNameTheFileAndLine(t *testing.T) {
	items := map[string]string{"vpc_cidr": "10.0.0.0/16"}
	cases := map[string]struct {
		files map[string]string
		file  string
		line  int
		says  []string
	}{
		"misspelt config item": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Type: AWS::EC2::VPC\n    Properties: {CidrBlock: {{ .Cluster.ConfigItems.vpc_cdir }}}\n"},
			file:  ClusterTemplate, line: 4, says: []string{`"vpc_cdir"`, ".Cluster.ConfigItems.vpc_cdir"},
		},
		"misspelt field": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Type: AWS::EC2::VPC\n    Properties: {Region: {{ .Cluster.Regoin }}}\n"},
			file:  ClusterTemplate, line: 4, says: []string{"Regoin"},
		},
		"node pool in the cluster template": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Type: {{ .NodePool.Name }}\n"},
			file:  ClusterTemplate, line: 3, says: []string{".NodePool.Name"},
		},
		"unclosed action": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Type: AWS::EC2::VPC\n    Properties: {CidrBlock: {{ .Cluster.ConfigItems.vpc_cidr }\n"},
			file:  ClusterTemplate, line: 4, says: []string{"unexpected"},
		},
		"unknown function": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Type: {{ frobnicate 1 }}\n"},
			file:  ClusterTemplate, line: 3, says: []string{`"frobnicate" not defined`},
		},
		"bad yaml after render": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: {{ .Cluster.ConfigItems.vpc_cidr }}\n    Tags: a: b\n"},
			file:  ClusterTemplate, says: []string{"line 6 of the rendered output", `"Tags: a: b"`},
		},
		"no resources": {
			files: map[string]string{ClusterTemplate: "Description: {{ .Cluster.ID }}\n"},
			file:  ClusterTemplate, says: []string{"no Resources"},
		},
		"resource without type": {
			files: map[string]string{ClusterTemplate: "Resources:\n  VPC:\n    Properties: {}\n"},
			file:  ClusterTemplate, says: []string{"VPC", "no Type"},
		},
		"output the cluster stack lacks": {
			files: map[string]string{NodePoolTemplate: strings.Replace(minimalPool, ".Outputs.SubnetId", ".Outputs.SubnetIds", 1)},
			file:  NodePoolTemplate, line: 7, says: []string{"node pool system", `"SubnetIds"`},
		},
		"bad yaml in a pool template": {
			files: map[string]string{NodePoolTemplate: minimalPool + "  Group: [{{ .NodePool.Name }}\n"},
			file:  NodePoolTemplate, says: []string{"node pool system", "rendered output"},
		},
		"error in a define": {
			files: map[string]string{NodePoolTemplate: minimalPool + "{{ define \"x\" }}\n{{ .NodePool.Nmae }}\n{{ end }}{{ template \"x\" . }}\n"},
			file:  NodePoolTemplate, line: 10, says: []string{"Nmae"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			repo := stackRepo(tc.files)
			a := stackAssignment()
			cluster, err := ClusterStack(repo, a, items)
			if err == nil {
				outputs, oerr := OutputNames(cluster)
				require.NoError(t, oerr)
				_, err = PlaceholderNodePoolStacks(repo, a, items, outputs)
			} else {
				assert.Nil(t, cluster, "nothing of a broken template is returned")
			}
			require.Error(t, err)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.file, e.File, e.Error())
			assert.Equal(t, tc.line, e.Line, e.Error())
			for _, says := range tc.says {
				assert.Contains(t, e.Error(), says)
			}
			assert.True(t, IsRenderError(err))
		})
	}
}

func TestPlaceholderNodePoolStacksFindABrokenPoolTemplateBeforeTheClusterStackChanges(t *testing.T) {
	repo := os.DirFS("../../manifests")
	a := stackAssignment()
	items, err := ConfigItems(repo, a)
	require.NoError(t, err)
	cluster, err := ClusterStack(repo, a, items)
	require.NoError(t, err)
	names, err := OutputNames(cluster)
	require.NoError(t, err)
	pools, err := PlaceholderNodePoolStacks(repo, a, items, names)
	require.NoError(t, err, "the reference templates fit together")
	require.Len(t, pools, len(a.NodePools))
	assert.Contains(t, string(pools[0].Body), "placeholder-NodeSecurityGroupId")

	// A pool template that reads an output the cluster template dropped, or
	// that fails for the second pool only.
	dropped := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "PrivateSubnetIds" })
	_, err = PlaceholderNodePoolStacks(repo, a, items, dropped)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"PrivateSubnetIds"`)
	assert.Contains(t, err.Error(), NodePoolTemplate)

	broken := stackRepo(map[string]string{NodePoolTemplate: minimalPool + "{{ if .NodePool.Spot }}{{ .NodePool.ConfigItems.spot_price }}{{ end }}\n"})
	_, err = PlaceholderNodePoolStacks(broken, a, items, []string{"SubnetId"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "node pool workers")
	assert.Contains(t, err.Error(), "spot_price")
}

func TestNoCloudFormationMeansNoStacks(t *testing.T) {
	repo := stackRepo(map[string]string{ClusterTemplate: "", NodePoolTemplate: ""})
	a := stackAssignment()
	cluster, err := ClusterStack(repo, a, nil)
	assert.NoError(t, err)
	assert.Nil(t, cluster)
	pool, err := NodePoolStack(repo, a, nil, a.NodePools[0], nil)
	assert.NoError(t, err)
	assert.Nil(t, pool)
	names, err := OutputNames(cluster)
	assert.NoError(t, err)
	assert.Empty(t, names)
	pools, err := PlaceholderNodePoolStacks(repo, a, nil, names)
	assert.NoError(t, err)
	assert.Empty(t, pools)

	// A cluster stack without pool template is fine too.
	cluster, err = ClusterStack(stackRepo(map[string]string{NodePoolTemplate: ""}), a, map[string]string{"vpc_cidr": "10.0.0.0/16"})
	require.NoError(t, err)
	assert.NotNil(t, cluster)
}

func TestTemplateFunctions(t *testing.T) {
	cases := map[string]struct {
		template string
		want     string
	}{
		"base64":                    {`{{ "ab" | base64 }}`, "YWI="},
		"indent":                    {`{{ "a\nb" | indent 2 }}`, "  a\n  b"},
		"nindent":                   {`x:{{ "a: 1" | nindent 2 }}`, "x:\n  a: 1"},
		"toYAML":                    {`{{ toYAML .Cluster.ConfigItems }}`, "a: \"1\"\nb: x"},
		"toJSON":                    {`{{ toJSON .Cluster.ConfigItems }}`, `{"a":"1","b":"x"}`},
		"sha256":                    {`{{ sha256 "" }}`, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		"split trims, drops empty":  {`{{ range split "," " a, b,," }}[{{ . }}]{{ end }}`, "[a][b]"},
		"split of nothing":          {`{{ len (split "," "") }}`, "0"},
		"join":                      {`{{ split "," "a,b" | join "-" }}`, "a-b"},
		"quote":                     {`{{ quote "true" }} {{ quote 12 }} {{ quote "a\"b" }}`, `"true" "12" "a\"b"`},
		"lower upper trim":          {`{{ lower "Ab" }}{{ upper "c" }}{{ trim "  d " }}`, "abCd"},
		"replace":                   {`{{ "a.b.c" | replace "." "-" }}`, "a-b-c"},
		"default of a missing item": {`{{ default "x" (index .Cluster.ConfigItems "missing") }}`, "x"},
		"default of a set item":     {`{{ default "y" .Cluster.ConfigItems.b }}`, "x"},
		"hasKey":                    {`{{ hasKey .Cluster.ConfigItems "a" }} {{ hasKey .Cluster.ConfigItems "c" }}`, "true false"},
		"account id":                {`{{ .Cluster.AccountID }} {{ .Cluster.Channel }}`, "123456789012 dev"},
		"shellQuote":                {`{{ shellQuote "it's $(x)" }}`, `'it'\''s $(x)'`},
		"number":                    {`{{ .Cluster.ConfigItems.a | number "a" }}`, "1"},
		"match":                     {`{{ .Cluster.ConfigItems.b | match "b" "[a-z]+" }}`, "x"},
	}
	a := stackAssignment()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tmpl, err := template.New("t").Option("missingkey=error").Funcs(templateFuncs).Parse(tc.template)
			require.NoError(t, err)
			var out strings.Builder
			require.NoError(t, tmpl.Execute(&out, templateData{Cluster: newClusterData(a, map[string]string{"a": "1", "b": "x"})}))
			assert.Equal(t, tc.want, out.String())
		})
	}
}
