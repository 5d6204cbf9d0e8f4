package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// statusSeen is one state of the ClusterConfig, as kstatus reads it and
// with the reasons of its conditions.
type statusSeen struct {
	Status      kstatus.Status
	Reconciling string
	Ready       metav1.ConditionStatus
	ReadyReason string
}

func (s statusSeen) String() string {
	return fmt.Sprintf("%s (Reconciling: %q, Ready: %s %q)", s.Status, s.Reconciling, s.Ready, s.ReadyReason)
}

// statusWatch records every write of the ClusterConfig's status the loop
// makes, as a watch delivers each write: a stage that lasts a moment is
// seen as surely as a long one, where a poll could miss it.
type statusWatch struct {
	mu   sync.Mutex
	seen []statusSeen
	last *clusterconfig.ClusterConfig
}

// watchStatus records from the ClusterConfig as it is now; the watch ends
// with the test.
func (f *fleet) watchStatus() *statusWatch {
	kube, err := client.NewWithWatch(f.cp.Config, client.Options{Scheme: f.kube.Scheme()})
	require.NoError(f.t, err)
	ctx, cancel := context.WithCancel(f.ctx)
	f.t.Cleanup(cancel)
	start := f.clusterConfig()
	w, err := watchtools.NewRetryWatcherWithContext(ctx, start.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.Watch(ctx, &clusterconfig.ClusterConfigList{}, &client.ListOptions{Raw: &o})
		}})
	require.NoError(f.t, err)
	s := &statusWatch{last: start}
	go func() {
		defer w.Stop()
		for e := range w.ResultChan() {
			if cc, ok := e.Object.(*clusterconfig.ClusterConfig); ok && e.Type == watch.Modified {
				s.record(f.t, cc)
			}
		}
	}()
	return s
}

// record keeps a write that changed more than the drift tracker's part of
// the status, which it writes on its own. It runs in the watch's
// goroutine: it asserts, never requires.
func (s *statusWatch) record(t *testing.T, cc *clusterconfig.ClusterConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before, after := s.last.Status, cc.Status
	before.Drift, after.Drift = nil, nil
	s.last = cc
	b, errB := json.Marshal(before)
	a, errA := json.Marshal(after)
	if errB == nil && errA == nil && string(a) == string(b) {
		return
	}
	seen, err := read(cc)
	assert.NoError(t, err)
	s.seen = append(s.seen, seen)
}

// read is how kstatus reads cc, with its conditions' reasons.
func read(cc *clusterconfig.ClusterConfig) (statusSeen, error) {
	cc = cc.DeepCopyObject().(*clusterconfig.ClusterConfig)
	cc.SetGroupVersionKind(clusterconfig.GroupVersion.WithKind("ClusterConfig"))
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cc)
	if err != nil {
		return statusSeen{}, err
	}
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return statusSeen{}, err
	}
	s := statusSeen{Status: res.Status, Reconciling: conditions.GetReason(cc, reconciler.ReconcilingCondition)}
	if ready := conditions.Get(cc, reconciler.ReadyCondition); ready != nil {
		s.Ready, s.ReadyReason = ready.Status, ready.Reason
	}
	return s, nil
}

// Seen lists the states recorded so far, in order.
func (s *statusWatch) Seen() []statusSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]statusSeen(nil), s.seen...)
}

// lastIs says whether the last state recorded has this Reconciling reason.
func (s *statusWatch) lastIs(reconciling reconciler.Reason) func() bool {
	return func() bool {
		seen := s.Seen()
		return len(seen) > 0 && seen[len(seen)-1].Reconciling == string(reconciling)
	}
}

// While a version is applied, the ClusterConfig says what the agent is
// doing, as kstatus (Flux, Argo CD, kubectl wait) reads it: InProgress
// with the reason of each stage, written once as the stage begins, then
// Current once the version is healthy.
func TestTheClusterConfigSaysWhatAVersionIsDoing(t *testing.T) {
	f := startFleet(t)
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"health_timeout": "10m"}}, "")
	require.NoError(t, err)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	f.eventually("kstatus reads the ClusterConfig as Current", func() bool { return f.kstatus() == kstatus.CurrentStatus })
	seen := f.watchStatus()

	template, err := os.ReadFile("../manifests/cloudformation/cluster.yaml")
	require.NoError(t, err)
	withMarker := strings.Replace(string(template), "Resources:\n", "Resources:\n  StatusMarker:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: a change of the cluster stack\n      VpcId: {Ref: VPC}\n", 1)
	require.NotEqual(t, string(template), withMarker)
	sha := f.commit("a stack change and a Deployment that waits for the test", map[string][]byte{
		"cloudformation/cluster.yaml": []byte(withMarker),
		"kubernetes/base/stuck.yaml":  []byte(stuckDeployment),
		base:                          addResource(t, "stuck.yaml"),
	})
	f.eventually("the agent waits for the Deployment to become healthy", seen.lastIs(reconciler.ReasonWaitingForHealth))
	assert.Equal(t, kstatus.InProgressStatus, f.kstatus(), "InProgress while the version waits for health")
	assert.Equal(t, api.PhaseApplying, f.status().Phase)
	assert.False(t, strings.HasPrefix(f.status().CurrentVersion, sha+"#"), "the version is not current before it is healthy")

	// The first node its selector matches lets the Deployment become ready.
	_, err = f.cp.AddNode(f.ctx, controlplane.Node{Name: "node-none", Labels: map[string]string{"pool": "none"}})
	require.NoError(t, err)
	f.eventually("the version is applied once the Deployment is ready", f.atCommit(sha))
	f.eventually("the next pass finds the cluster up to date", func() bool {
		s := seen.Seen()
		return len(s) > 0 && s[len(s)-1].ReadyReason == string(reconciler.ReasonUpToDate)
	})
	assert.True(t, f.hasEvent("stack kube-1: update for version "+sha), "the cluster stack was updated")

	progressing, infrastructure, health := string(reconciler.ReasonProgressing), string(reconciler.ReasonUpdatingInfrastructure), string(reconciler.ReasonWaitingForHealth)
	assert.Equal(t, []statusSeen{
		{kstatus.InProgressStatus, progressing, metav1.ConditionUnknown, progressing}, // rendering
		{kstatus.InProgressStatus, infrastructure, metav1.ConditionUnknown, infrastructure},
		{kstatus.InProgressStatus, progressing, metav1.ConditionUnknown, progressing}, // applying
		{kstatus.InProgressStatus, health, metav1.ConditionUnknown, health},
		{kstatus.CurrentStatus, "", metav1.ConditionTrue, string(reconciler.ReasonApplied)},
		{kstatus.CurrentStatus, "", metav1.ConditionTrue, string(reconciler.ReasonUpToDate)},
	}, seen.Seen(), "one status write as each stage begins, one as the version is applied, one as the next pass finds nothing to do")
}

// statusReports stands between the agents and their registry and records
// which agent sent each status report.
type statusReports struct {
	mu     sync.Mutex
	agents []string
}

// recordStatusReports sends the agents the fleet starts from now on
// through a statusReports.
func (f *fleet) recordStatusReports() *statusReports {
	target, err := url.Parse(f.central.URL)
	require.NoError(f.t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	r := &statusReports{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/status") {
			r.record(f.t, req)
		}
		proxy.ServeHTTP(w, req)
	}))
	f.t.Cleanup(srv.Close)
	f.central.URL = srv.URL
	return r
}

// record is called by the proxy's goroutines: it asserts, never requires.
func (r *statusReports) record(t *testing.T, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	assert.NoError(t, err)
	req.Body = io.NopCloser(strings.NewReader(string(body)))
	var st api.ClusterStatus
	assert.NoError(t, json.Unmarshal(body, &st), "a status report")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agents = append(r.agents, st.AgentVersion)
}

// Agents lists the agent version of each report so far, in order.
func (r *statusReports) Agents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.agents...)
}
