package api

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validCluster() Cluster {
	c := Cluster{
		ID: "aws:123456789012:eu-central-1:kube-1", InfrastructureAccount: "aws:123456789012", Region: "eu-central-1",
		APIServerURL: "https://kube-1.example.org", Environment: "test", Channel: "dev",
		NodePools: []NodePool{{Name: "default", Profile: "worker", InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 3}},
	}
	c.Normalize()
	return c
}

// fields returns the names of the invalid fields of err.
func fields(t *testing.T, err error) []string {
	t.Helper()
	var v *ValidationError
	require.True(t, errors.As(err, &v), "want a ValidationError, got %v", err)
	var out []string
	for _, e := range v.Errors {
		out = append(out, e.Field)
	}
	return out
}

func TestClusterDefaults(t *testing.T) {
	c := validCluster()
	require.NoError(t, c.Validate())
	assert.Equal(t, "kube-1", c.Alias, "the alias defaults to the local id")
	assert.Equal(t, ProviderAWS, c.Provider)
	assert.Equal(t, LifecycleRequested, c.LifecycleStatus)
	assert.Equal(t, 1, c.CriticalityLevel)
	assert.Equal(t, DiscountNone, c.NodePools[0].DiscountStrategy)
}

func TestClusterValidationNamesTheField(t *testing.T) {
	cases := map[string]struct {
		change func(*Cluster)
		field  string
	}{
		"malformed id":             {func(c *Cluster) { c.ID = "kube-1" }, "id"},
		"id of another account":    {func(c *Cluster) { c.InfrastructureAccount = "aws:999999999999" }, "infrastructure_account"},
		"id of another region":     {func(c *Cluster) { c.Region = "eu-west-1" }, "region"},
		"bad region":               {func(c *Cluster) { c.ID, c.Region = "aws:123456789012:Europe:kube-1", "Europe" }, "id"},
		"bad alias":                {func(c *Cluster) { c.Alias = "Kube_1" }, "alias"},
		"relative api server url":  {func(c *Cluster) { c.APIServerURL = "kube-1.example.org" }, "api_server_url"},
		"bad environment":          {func(c *Cluster) { c.Environment = "Prod" }, "environment"},
		"no channel":               {func(c *Cluster) { c.Channel = "" }, "channel"},
		"other provider":           {func(c *Cluster) { c.Provider = "gcp" }, "provider"},
		"criticality out of range": {func(c *Cluster) { c.CriticalityLevel = 7 }, "criticality_level"},
		"unknown lifecycle":        {func(c *Cluster) { c.LifecycleStatus = "running" }, "lifecycle_status"},
		"bad config key":           {func(c *Cluster) { c.ConfigItems["Bad-Key"] = "x" }, "config_items"},
		"pool min above max":       {func(c *Cluster) { c.NodePools[0].MinSize = 5 }, "node_pools[0].max_size"},
		"pool without types":       {func(c *Cluster) { c.NodePools[0].InstanceTypes = nil }, "node_pools[0].instance_types"},
		"pool bad type":            {func(c *Cluster) { c.NodePools[0].InstanceTypes = []string{"large"} }, "node_pools[0].instance_types[0]"},
		"pool bad discount":        {func(c *Cluster) { c.NodePools[0].DiscountStrategy = "cheap" }, "node_pools[0].discount_strategy"},
		"pool bad taint effect": {func(c *Cluster) {
			c.NodePools[0].Taints = []Taint{{Key: "a", Effect: "Never"}}
		}, "node_pools[0].taints[0].effect"},
		"pool bad label": {func(c *Cluster) { c.NodePools[0].Labels = map[string]string{"a b": "x"} }, "node_pools[0].labels"},
		"duplicate pool": {func(c *Cluster) { c.NodePools = append(c.NodePools, c.NodePools[0]) }, "node_pools[default].name"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := validCluster()
			tc.change(&c)
			assert.Contains(t, fields(t, c.Validate()), tc.field)
		})
	}
}

func TestParseClusterID(t *testing.T) {
	acc, region, local, ok := ParseClusterID("aws:123456789012:us-east-2:prod-eu-1")
	require.True(t, ok)
	assert.Equal(t, []string{"aws:123456789012", "us-east-2", "prod-eu-1"}, []string{acc, region, local})
	for _, bad := range []string{"", "aws:12345678901:eu-central-1:a", "gcp:123456789012:eu-central-1:a", "aws:123456789012:eu-central-1:", "aws:123456789012:eu-central-1:-a"} {
		_, _, _, ok := ParseClusterID(bad)
		assert.False(t, ok, bad)
	}
}

func TestAccountChannelBlockTokenValidation(t *testing.T) {
	a := InfrastructureAccount{ID: "aws:123456789012", Name: "n", Owner: "o", Environment: "production"}
	a.Normalize()
	require.NoError(t, a.Validate())
	a.ID, a.Owner = "123456789012", ""
	assert.ElementsMatch(t, []string{"id", "owner"}, fields(t, a.Validate()))

	ch := Channel{Name: "beta", Branch: "release/beta", Position: 2, RepositoryURL: "git@github.com:org/config.git"}
	require.NoError(t, ch.Validate())
	ch.Branch, ch.RepositoryURL = "a..b", "ftp://x"
	assert.ElementsMatch(t, []string{"branch", "repository_url"}, fields(t, ch.Validate()))

	since := time.Unix(100, 0)
	before := since.Add(-time.Hour)
	b := Block{Reason: "", Since: since, Until: &before, NodePool: "Bad"}
	assert.ElementsMatch(t, []string{"reason", "until", "node_pool"}, fields(t, b.Validate()))

	require.NoError(t, ValidateToken("kube-1-agent", RoleAgent, "aws:123456789012:eu-central-1:kube-1"))
	assert.Equal(t, []string{"cluster_id"}, fields(t, ValidateToken("a", RoleAgent, "")))
	assert.Equal(t, []string{"cluster_id"}, fields(t, ValidateToken("a", RoleAdmin, "aws:123456789012:eu-central-1:kube-1")))
	assert.Equal(t, []string{"role"}, fields(t, ValidateToken("a", "root", "")))
	assert.Equal(t, []string{"name"}, fields(t, ValidateToken("", RoleReader, "")))
}

func TestStatusValidation(t *testing.T) {
	s := ClusterStatus{Phase: PhaseApplying, NodePools: []NodePoolProgress{{Name: "a", NodesTotal: 3}}}
	require.NoError(t, s.Validate())
	s.Phase = "dancing"
	s.Problems = []StatusProblem{{Title: "no type"}}
	s.NodePools = append(s.NodePools, NodePoolProgress{Name: "a", Outdated: -1})
	assert.ElementsMatch(t, []string{"phase", "problems[0].type", "node_pools[1].name", "node_pools[1]"}, fields(t, s.Validate()))

	for _, phase := range []string{PhaseDecommissioning, PhaseDecommissioned} {
		s := ClusterStatus{Phase: phase}
		assert.NoError(t, s.Validate(), phase)
	}
}

func TestPhasesOrder(t *testing.T) {
	assert.Equal(t, []string{
		"idle", "rendering", "updating-infrastructure", "applying", "rolling-nodes",
		"decommissioning", "decommissioned", "blocked", "failed", "waiting-for-window",
	}, Phases, "a reconcile's phases, a decommission's, those that stop either, then the wait for a window")
}

func TestDecommissionConfirmationIsCarriedOrDropped(t *testing.T) {
	confirmed := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	old := validCluster()
	old.LifecycleStatus = LifecycleDecommissionRequested
	old.DecommissionConfirmedAt = &confirmed
	sent := confirmed.Add(time.Hour)
	for status, kept := range map[string]bool{
		LifecycleDecommissionRequested: true,
		LifecycleDecommissioned:        true,
		LifecycleReady:                 false,
		LifecycleRequested:             false,
	} {
		c := validCluster()
		c.LifecycleStatus = status
		c.DecommissionConfirmedAt = &sent
		c.CarryDecommissionConfirmation(old)
		if kept {
			assert.Equal(t, &confirmed, c.DecommissionConfirmedAt, "%s keeps the confirmation, whatever the write sent", status)
		} else {
			assert.Nil(t, c.DecommissionConfirmedAt, "%s drops the confirmation", status)
		}
	}
	c := validCluster()
	c.LifecycleStatus = LifecycleDecommissionRequested
	c.DecommissionConfirmedAt = &sent
	c.CarryDecommissionConfirmation(validCluster())
	assert.Nil(t, c.DecommissionConfirmedAt, "a write never confirms a decommission by itself")
}

func TestWindowConfigItemsMustParse(t *testing.T) {
	const good = "Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC"
	const bad = "Mon-Fri 08:00-17:00 Europe/Berlin; Mnn 00:00-06:00 UTC"

	c := validCluster()
	c.ConfigItems[ConfigUpdateWindows] = good
	c.ConfigItems[ConfigNodeUpdateWindows] = ""
	c.NodePools[0].ConfigItems[ConfigNodeUpdateWindows] = "daily 01:00-05:00 UTC"
	require.NoError(t, c.Validate(), "good windows and the empty one (always) are taken")

	c.ConfigItems[ConfigUpdateWindows] = bad
	c.NodePools[0].ConfigItems[ConfigNodeUpdateWindows] = "Sun 25:00-02:00 UTC"
	var v *ValidationError
	require.ErrorAs(t, c.Validate(), &v)
	got := map[string]string{}
	for _, e := range v.Errors {
		got[e.Field] = e.Detail
	}
	require.Contains(t, got, "config_items.update_windows")
	assert.Contains(t, got["config_items.update_windows"], "position 36", "the detail names the (1-based) position of the error")
	assert.Contains(t, got["config_items.update_windows"], "Mnn")
	assert.Contains(t, got, "node_pools[0].config_items.node_update_windows", "a node pool's windows are checked too")

	a := InfrastructureAccount{ID: "aws:123456789012", Name: "n", Owner: "o", Environment: "production",
		ConfigItems: map[string]string{ConfigNodeUpdateWindows: "   ;  "}}
	a.Normalize()
	assert.Equal(t, []string{"config_items.node_update_windows"}, fields(t, a.Validate()), "an account's windows are checked, and blanks are no window")

	p := NodePool{Name: "default", Profile: "worker", InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 1,
		ConfigItems: map[string]string{ConfigUpdateWindows: "Mon 08:00-17:00 Local"}}
	p.Normalize()
	assert.Equal(t, []string{"config_items.update_windows"}, fields(t, p.Validate()), "a node pool alone too")

	c = validCluster()
	c.ConfigItems["other_item"] = "Mnn 99:99"
	assert.NoError(t, c.Validate(), "other items are not windows")
}

func TestFreezeValidation(t *testing.T) {
	since := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	valid := func() Freeze {
		return Freeze{Reason: "cyber week", Channel: "stable", Since: since, Until: since.Add(8 * 24 * time.Hour)}
	}
	f := valid()
	require.NoError(t, f.Validate())
	for _, ok := range []func(*Freeze){
		func(f *Freeze) { f.Channel, f.All = "", true },
		func(f *Freeze) { f.Channel, f.Environment = "", "production" },
		func(f *Freeze) { f.Environment = "production" },
		func(f *Freeze) { f.Until = since.AddDate(1, 0, 0) },
		func(f *Freeze) { f.Reason = strings.Repeat("r", 1024) },
	} {
		f := valid()
		ok(&f)
		assert.NoError(t, f.Validate(), "%+v", f)
	}
	cases := map[string]struct {
		change func(*Freeze)
		fields []string
	}{
		"no reason":              {func(f *Freeze) { f.Reason = " \t" }, []string{"reason"}},
		"long reason":            {func(f *Freeze) { f.Reason = strings.Repeat("r", 1025) }, []string{"reason"}},
		"no scope":               {func(f *Freeze) { f.Channel = "" }, []string{"all"}},
		"all with a channel":     {func(f *Freeze) { f.All = true }, []string{"channel"}},
		"all with environment":   {func(f *Freeze) { f.Channel, f.Environment, f.All = "", "test", true }, []string{"environment"}},
		"bad channel":            {func(f *Freeze) { f.Channel = "Stable!" }, []string{"channel"}},
		"bad environment":        {func(f *Freeze) { f.Environment = "Prod" }, []string{"environment"}},
		"no end":                 {func(f *Freeze) { f.Until = time.Time{} }, []string{"until"}},
		"end before start":       {func(f *Freeze) { f.Until = since.Add(-time.Second) }, []string{"until"}},
		"end at start":           {func(f *Freeze) { f.Until = since }, []string{"until"}},
		"longer than a year":     {func(f *Freeze) { f.Until = since.AddDate(1, 0, 0).Add(time.Second) }, []string{"until"}},
		"several fields at once": {func(f *Freeze) { f.Reason, f.Channel = "", "" }, []string{"reason", "all"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := valid()
			tc.change(&f)
			assert.ElementsMatch(t, tc.fields, fields(t, f.Validate()))
		})
	}
}

// A node pool's profile is one the reference templates know, a name of
// [a-z0-9-] parts: node-pool.yaml puts it in node labels and in the node's
// boot script, and picks control plane pools by it.
func TestNodePoolProfileIsAKnownName(t *testing.T) {
	for _, ok := range []string{"master", "worker", "master-default", "worker-default", "worker-gpu", "worker-gpu-a100", "master-etcd-2"} {
		p := NodePool{Name: "default", Profile: ok, InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 1}
		p.Normalize()
		assert.NoError(t, p.Validate(), "%q", ok)
	}
	for _, bad := range []string{"", " ", "-", "worker-", "-worker", "worker--gpu", "Worker", "worker_gpu", "gpu", "default",
		"worker default", "worker\n", "worker-$(reboot)", "worker'", "master-é", "workers"} {
		p := NodePool{Name: "default", Profile: bad, InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 1}
		p.Normalize()
		err := p.Validate()
		assert.Equal(t, []string{"profile"}, fields(t, err), "%q", bad)
		assert.Contains(t, err.Error(), "worker-default", "the detail shows what a profile looks like")
	}
	c := validCluster()
	c.NodePools[0].Profile = "-"
	assert.Equal(t, []string{"node_pools[0].profile"}, fields(t, c.Validate()), "a cluster's pools too")
}
