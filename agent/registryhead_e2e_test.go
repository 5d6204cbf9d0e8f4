package agent_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// registryProxy stands between the agent and its registry. It passes
// everything on, unless the test makes it unreachable (connections are
// dropped) or has it publish another head commit or gate in the
// assignments it passes on: a forged assignment, or a gate the registry
// does not set yet.
type registryProxy struct {
	*httptest.Server
	mu     sync.Mutex
	down   bool
	commit string
	gate   string
}

func startRegistryProxy(t *testing.T, target string) *registryProxy {
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &registryProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = p.rewrite
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.unreachable() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *registryProxy) unreachable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

func (p *registryProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// publish makes the assignments name commit and gate; "" passes the
// registry's own on.
func (p *registryProxy) publish(commit, gate string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.commit, p.gate = commit, gate
}

func (p *registryProxy) rewrite(resp *http.Response) error {
	p.mu.Lock()
	commit, gate := p.commit, p.gate
	p.mu.Unlock()
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Request.URL.Path, "/assignment") || commit == "" && gate == "" {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	var a map[string]any
	if err := json.Unmarshal(body, &a); err != nil {
		return err
	}
	channel := a["channel"].(map[string]any)
	if commit != "" {
		channel["commit"] = commit
	}
	if gate != "" {
		channel["gate"] = gate
	}
	if body, err = json.Marshal(a); err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// readsHeadsOf makes caravan-central read the channels' heads from the git
// server every second, with its credentials (as --git-* and --git-refresh
// do), and publish them in the assignments.
func readsHeadsOf(git *gitserver.Server) centraltest.Option {
	return func(c *central.Config) {
		c.Git, c.GitRefresh = gitauth.Credentials{Username: git.User, Password: git.Password}, time.Second
	}
}

// readHeadsFromGit restarts the fleet's registry, on its database, as one
// that reads the channels' heads from the fleet's git server. Agents then
// reach it through a registryProxy.
func (f *fleet) readHeadsFromGit() *registryProxy {
	f.central.Stop(f.t)
	f.central = centraltest.Start(f.t, centraltest.WithDatabase(f.central.Database), readsHeadsOf(f.git))
	var err error
	f.reg, err = registry.New(f.central.URL, f.central.AdminToken, registry.WithRetryMax(0))
	require.NoError(f.t, err)
	proxy := startRegistryProxy(f.t, f.central.URL)
	// The agents the fleet starts go through the proxy.
	f.central.URL = proxy.URL
	return proxy
}

// publishedHead is the head of dev the registry publishes now.
func (f *fleet) publishedHead() string {
	a, err := f.reg.GetAssignment(f.ctx, clusterID, registry.AssignmentOptions{})
	if err != nil {
		return ""
	}
	return a.Assignment.Channel.Commit
}

// touch changes a config item at the registry: its long-polls answer.
func (f *fleet) touch(value string) {
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"touched": value}}, "")
	require.NoError(f.t, err)
}

// agentCounter reads a counter of the agents this test process runs:
// controller-runtime's registry, which they share; 0 before any counted.
func agentCounter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	require.NoError(t, err)
	for _, fam := range families {
		if fam.GetName() == name {
			return fam.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

const (
	listingsMetric       = "caravan_agent_git_ref_listings_total"
	heldBackMetric       = "caravan_agent_unpublished_heads_total"
	registryErrorsMetric = "caravan_agent_registry_errors_total"
)

func settingsAt(value string) []byte {
	return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  value: " + value + "\n")
}

func (f *fleet) settingsValue() string {
	cm, err := f.configMap("settings")
	if err != nil {
		return ""
	}
	return cm.Data["value"]
}

// problemTitled reports whether the ClusterConfig's status has a problem
// whose title holds all of parts.
func (f *fleet) problemTitled(parts ...string) bool {
	for _, p := range f.clusterConfig().Status.Problems {
		if containsAll(p.Title, parts) {
			return true
		}
	}
	return false
}

// A new commit reaches the agent through the head the registry publishes
// in the assignment: the agent applies it without listing the branch once.
// A commit in the assignment that the branch does not hold (a forged
// assignment naming a commit of another branch of the same repository) is
// reported, in the ClusterConfig and at the registry, and nothing of it is
// applied; the registry's own head is taken again afterwards.
func TestCommitsReachTheAgentThroughTheRegistry(t *testing.T) {
	f := startFleet(t)
	proxy := f.readHeadsFromGit()
	f.eventually("the registry publishes the head of dev", func() bool { return f.publishedHead() != "" })
	listings := agentCounter(t, listingsMetric)
	f.startAgent("test", false)
	f.eventually("the first version is applied", f.atCommit(f.publishedHead()))

	sha := f.commit("add settings", map[string][]byte{"kubernetes/base/settings.yaml": settingsAt("one"), base: addResource(t, "settings.yaml")})
	f.eventually("the new commit is applied", f.atCommit(sha))
	assert.Equal(t, "one", f.settingsValue())
	assert.Equal(t, sha, f.publishedHead())
	assert.Zero(t, agentCounter(t, listingsMetric)-listings, "the agent learnt of both commits from the registry and never listed the branch")

	current := f.status().CurrentVersion
	forged, err := f.git.Commit("config", "stable", "a commit of another branch", map[string][]byte{
		"kubernetes/base/forged.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: forged\n  namespace: default\n"),
		base:                          addResource(t, "forged.yaml"),
	})
	require.NoError(t, err)
	proxy.publish(forged, "")
	f.touch("forged")
	title := []string{"Commit " + configrepo.Short(forged) + " is not on branch dev", "nothing of it was applied"}
	f.eventually("the ClusterConfig names the commit the branch does not hold", func() bool { return f.problemTitled(title...) })
	f.eventually("so does the registry's status", func() bool {
		st := f.status()
		return st.Phase == api.PhaseFailed && len(st.Problems) > 0 && containsAll(st.Problems[0].Title, title)
	})
	cc := f.clusterConfig()
	assert.Equal(t, current, cc.Status.CurrentVersion, "the cluster stays at its version")
	assert.Empty(t, cc.Status.NextVersion, "no version of the forged commit was started")
	assert.Contains(t, cc.Status.Problems[0].Detail, forged)
	_, err = f.configMap("forged")
	assert.True(t, apierrors.IsNotFound(err), "nothing of the forged commit was applied")

	proxy.publish("", "")
	f.touch("genuine")
	f.eventually("the registry's head is taken again", func() bool {
		cc := f.clusterConfig()
		return strings.HasPrefix(cc.Status.CurrentVersion, sha+"#") && cc.Status.CurrentVersion != current && len(cc.Status.Problems) == 0
	})
	assert.True(t, conditions.IsReady(f.clusterConfig()))
	_, err = f.configMap("forged")
	assert.True(t, apierrors.IsNotFound(err))
}

// While its registry cannot be reached, the agent lists its branch itself
// every git_poll_interval: under an advisory gate it takes the new head;
// under an enforced one it keeps the head the registry published last,
// counting the head it holds back, until the registry publishes it.
func TestAnUnreachableRegistryFallsBackToTheBranchUnlessTheGateIsEnforced(t *testing.T) {
	f := startFleet(t)
	proxy := f.readHeadsFromGit()
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"git_poll_interval": "2s"}}, "")
	require.NoError(t, err)
	first := f.commit("add settings", map[string][]byte{"kubernetes/base/settings.yaml": settingsAt("one"), base: addResource(t, "settings.yaml")})
	f.eventually("the registry publishes the head of dev", func() bool { return f.publishedHead() == first })
	listings, held := agentCounter(t, listingsMetric), agentCounter(t, heldBackMetric)
	f.startAgent("test", false)
	f.eventually("the first version is applied", f.atCommit(first))
	assert.Zero(t, agentCounter(t, listingsMetric)-listings, "no listing while the registry answers")

	// Advisory: the registry's gate says nothing (an older registry).
	failedPolls := agentCounter(t, registryErrorsMetric)
	proxy.setDown(true)
	f.eventually("the agent finds the registry unreachable", func() bool { return agentCounter(t, registryErrorsMetric) > failedPolls })
	advisory := f.commit("settings two", map[string][]byte{"kubernetes/base/settings.yaml": settingsAt("two")})
	f.eventually("the agent lists the branch and applies its new head", func() bool {
		return strings.HasPrefix(f.clusterConfig().Status.CurrentVersion, advisory+"#") && f.settingsValue() == "two"
	})
	assert.Positive(t, agentCounter(t, listingsMetric)-listings)
	whileDown := f.clusterConfig().Status.CurrentVersion

	// Enforced: the registry is back and publishes its head under an
	// enforced gate; then it goes away again and the branch moves on.
	proxy.publish("", api.GateEnforced)
	proxy.setDown(false)
	f.touch("enforced")
	f.eventually("the agent takes the registry's assignment with the enforced gate", func() bool {
		st := f.status()
		return strings.HasPrefix(st.CurrentVersion, advisory+"#") && st.CurrentVersion != whileDown && st.Phase == api.PhaseIdle
	})
	enforcedVersion := f.status().CurrentVersion
	failedPolls = agentCounter(t, registryErrorsMetric)
	proxy.setDown(true)
	f.eventually("the agent finds the registry unreachable", func() bool { return agentCounter(t, registryErrorsMetric) > failedPolls })
	unpublished := f.commit("settings three", map[string][]byte{"kubernetes/base/settings.yaml": settingsAt("three")})
	f.eventually("the agent lists the new head and holds it back", func() bool { return agentCounter(t, heldBackMetric) > held })
	assert.Equal(t, enforcedVersion, f.clusterConfig().Status.CurrentVersion, "the cluster stays at the published head")
	assert.Equal(t, "two", f.settingsValue(), "nothing of the unpublished head was applied")

	proxy.setDown(false)
	f.eventually("the registry publishes the new head, and the agent takes it", func() bool {
		return strings.HasPrefix(f.clusterConfig().Status.CurrentVersion, unpublished+"#") && f.settingsValue() == "three"
	})
}
