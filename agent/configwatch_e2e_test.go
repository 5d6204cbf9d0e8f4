package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/apicount"
)

// The loop learns whether the ClusterConfig moved from a watch: the
// reconciles that change nothing ask the API server nothing of it, which
// a roll's frequent passes would otherwise do at each one, and a change of
// its spec is still seen at the next reconcile.
func TestTheLoopWatchesTheClusterConfigInsteadOfReadingIt(t *testing.T) {
	f := startFleet(t)
	proxy, err := apicount.Start(f.cp.Config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	f.agentKube = proxy.Config()
	addr := metricsAddr(t)
	f.startAgentWithMetrics("test", false, addr)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })

	from := time.Now()
	runs := labelledMetric(t, addr, "caravan_agent_reconcile_duration_seconds", "", "")
	f.eventually("three more reconciles", func() bool {
		return labelledMetric(t, addr, "caravan_agent_reconcile_duration_seconds", "", "") >= runs+3
	})
	var reads []string
	for _, r := range proxy.Requests(from, time.Time{}) {
		if r.Resource == "clusterconfigs" && (r.Verb == "get" || r.Verb == "list") {
			reads = append(reads, r.Verb+" "+r.Path)
		}
	}
	assert.Empty(t, reads, "reconciles that changed nothing read the ClusterConfig")

	cc := f.clusterConfig()
	cc.Spec.Block = &clusterconfig.Block{Reason: "database migration"}
	require.NoError(t, f.kube.Update(f.ctx, cc))
	f.eventually("the in-cluster block is seen", func() bool {
		st := f.status()
		return st.Phase == api.PhaseBlocked && len(st.Problems) > 0 && strings.Contains(st.Problems[0].Title, "database migration")
	})
}
