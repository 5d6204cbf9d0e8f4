package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/drift"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// driftRepo adds two ConfigMaps of the agent's own to the config repo's
// base, for the tests to edit and delete.
func (f *fleet) driftRepo() string {
	return f.commit("ConfigMaps to drift", map[string][]byte{
		"kubernetes/base/drift.yaml": []byte(driftYAML("drift-a", "git") + "---\n" + driftYAML("drift-b", "git") + "---\n" + driftYAML("drift-c", "git")),
		base:                         addResource(f.t, "drift.yaml"),
	})
}

// metricsAddr is a free loopback address for an agent's metrics.
func metricsAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// metric reads one sample of the agent's metrics endpoint, by its kind
// label; 0 when absent.
func metric(t *testing.T, addr, name, kind string) float64 {
	return labelledMetric(t, addr, name, "kind", kind)
}

// labelledMetric reads the sample whose label has value, any sample when
// value is empty: counters and gauges, and a histogram's count.
func labelledMetric(t *testing.T, addr, name, label, value string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)
	fam, ok := families[name]
	if !ok {
		return 0
	}
	for _, m := range fam.GetMetric() {
		match := value == ""
		for _, l := range m.GetLabel() {
			match = match || l.GetName() == label && l.GetValue() == value
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
		return m.GetGauge().GetValue()
	}
	return 0
}

// objectEvents counts the Events with reason on one object (Count adds
// the repeats the recorder folded into one Event).
func (f *fleet) objectEvents(kind, namespace, name, reason string, parts ...string) int {
	list := &corev1.EventList{}
	if f.kube.List(f.ctx, list, client.InNamespace(namespace)) != nil {
		return 0
	}
	n := 0
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason && containsAll(e.Message, parts) {
			n += int(max(e.Count, 1))
		}
	}
	return n
}

// drift is the drift status the agent wrote into the ClusterConfig.
func (f *fleet) drift() api.DriftStatus {
	if d := f.clusterConfig().Status.Drift; d != nil {
		return *d
	}
	return api.DriftStatus{}
}

func (f *fleet) corrected(object, action string) bool {
	for _, c := range f.drift().Recent {
		if c.Object == object && c.Action == action {
			return true
		}
	}
	return false
}

func (f *fleet) setData(name, value string) {
	cm, err := f.configMap(name)
	require.NoError(f.t, err)
	cm.Data["mode"] = value
	require.NoError(f.t, f.kube.Update(f.ctx, cm, client.FieldOwner("kubectl-edit")))
}

func (f *fleet) dataIs(name, value string) func() bool {
	return func() bool {
		cm, err := f.configMap(name)
		return err == nil && cm.Data["mode"] == value
	}
}

func (f *fleet) scaleCoreDNS(manager string, replicas int32) error {
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	_, err := f.cp.Client.AppsV1().Deployments("kube-system").UpdateScale(f.ctx, "coredns", scale, metav1.UpdateOptions{FieldManager: manager})
	return err
}

// holdCoreDNS plays a controller that holds coredns at replicas: each time
// a watch shows another count, it scales the Deployment back, until ctx
// ends; the channel closes then.
func (f *fleet) holdCoreDNS(ctx context.Context, manager string, replicas int32) <-chan struct{} {
	deployments := f.cp.Client.AppsV1().Deployments("kube-system")
	current, err := deployments.Get(ctx, "coredns", metav1.GetOptions{})
	require.NoError(f.t, err)
	w, err := watchtools.NewRetryWatcherWithContext(ctx, current.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = "metadata.name=coredns"
			return deployments.Watch(ctx, o)
		}})
	require.NoError(f.t, err)
	hold := func(d *appsv1.Deployment) {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
			_ = f.scaleCoreDNS(manager, replicas)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Stop()
		hold(current)
		for e := range w.ResultChan() {
			if d, ok := e.Object.(*appsv1.Deployment); ok {
				hold(d)
			}
		}
	}()
	return done
}

func (f *fleet) coreDNSReplicas() int32 {
	d, err := f.cp.Client.AppsV1().Deployments("kube-system").Get(f.ctx, "coredns", metav1.GetOptions{})
	if err != nil || d.Spec.Replicas == nil {
		return -1
	}
	return *d.Spec.Replicas
}

func (f *fleet) firstVersion() {
	sha := f.driftRepo()
	f.eventually("the version with the ConfigMaps is applied", f.atCommit(sha))
}

// Hand edits of what Caravan applied go back within seconds: a scaled
// Deployment, a ConfigMap's data, a deleted ConfigMap. What Caravan does
// not set stays: an annotation added by hand, a label another manager
// owns. Each correction shows in an Event on the object and on the
// ClusterConfig, in the status (the ClusterConfig's and the registry's)
// and in the metrics.
func TestHandEditsAreCorrected(t *testing.T) {
	f := startFleet(t)
	addr := metricsAddr(t)
	f.startAgentWithMetrics("test", false, addr)
	f.firstVersion()
	correctedDeployments := metric(t, addr, "caravan_agent_drift_corrected_total", "Deployment")
	correctedConfigMaps := metric(t, addr, "caravan_agent_drift_corrected_total", "ConfigMap")

	require.NoError(t, f.scaleCoreDNS("kubectl", 9))
	f.eventually("the scaled Deployment goes back to its 2 replicas", func() bool { return f.coreDNSReplicas() == 2 })
	f.eventually("an Event on the Deployment names the field and the manager", func() bool {
		return f.objectEvents("Deployment", "kube-system", "coredns", drift.ReasonDriftCorrected, "spec.replicas", "kubectl/scale") > 0
	})
	f.eventually("an Event on the ClusterConfig names the object", func() bool {
		return f.hasEvent("Deployment kube-system/coredns", "spec.replicas")
	})

	f.setData("drift-a", "by-hand")
	f.eventually("the ConfigMap's data goes back", f.dataIs("drift-a", "git"))

	require.NoError(t, f.kube.Delete(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "drift-b", Namespace: "default"}}))
	f.eventually("the deleted ConfigMap is re-created", f.dataIs("drift-b", "git"))
	f.eventually("the status has the three corrections", func() bool { return f.corrected("ConfigMap default/drift-b", api.DriftRecreated) })

	// An annotation by hand and a label of another manager, then a change
	// Caravan corrects on the same object: once that correction is done,
	// the first two were seen and left alone.
	cm, err := f.configMap("drift-c")
	require.NoError(t, err)
	cm.Annotations = map[string]string{"note": "added by hand"}
	require.NoError(t, f.kube.Update(f.ctx, cm, client.FieldOwner("kubectl-annotate")))
	require.NoError(t, f.kube.Patch(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "drift-c", Namespace: "default"}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"payments"}}}`)), client.FieldOwner("labeller")))
	before := f.drift().Corrected
	f.setData("drift-c", "by-hand")
	f.eventually("the data change goes back", f.dataIs("drift-c", "git"))
	f.eventually("the correction is in the status", func() bool { return f.corrected("ConfigMap default/drift-c", api.DriftCorrected) })
	cm, err = f.configMap("drift-c")
	require.NoError(t, err)
	assert.Equal(t, "added by hand", cm.Annotations["note"], "an annotation Caravan does not set stays")
	assert.Equal(t, "payments", cm.Labels["team"], "a label another manager owns stays")
	assert.Equal(t, before+1, f.drift().Corrected, "the annotation and the label were no drift")

	st := f.drift()
	assert.Equal(t, api.DriftEnabled, st.Mode)
	assert.True(t, f.corrected("Deployment kube-system/coredns", api.DriftCorrected))
	assert.True(t, f.corrected("ConfigMap default/drift-a", api.DriftCorrected))
	assert.True(t, f.corrected("ConfigMap default/drift-b", api.DriftRecreated))
	for _, c := range st.Recent {
		if c.Object == "ConfigMap default/drift-a" {
			assert.Equal(t, []string{"data.mode"}, c.Fields)
			assert.Equal(t, "kubectl-edit", c.Manager)
		}
	}
	f.eventually("the registry has the counts", func() bool {
		d := f.status().Drift
		return d != nil && d.Corrected >= 4 && len(d.Recent) >= 4
	})
	assert.Equal(t, correctedDeployments+1, metric(t, addr, "caravan_agent_drift_corrected_total", "Deployment"))
	assert.Equal(t, correctedConfigMaps+3, metric(t, addr, "caravan_agent_drift_corrected_total", "ConfigMap"))
}

// An "HPA" that keeps scaling a Deployment whose manifest sets replicas
// is a fight: after three corrections the agent stops, reports a problem
// naming the other manager and the field, and corrects the object again
// when a version changes it. An object annotated reconcile: disabled is
// left alone.
func TestAFightingManagerIsLeftAloneUntilAVersionChangesTheObject(t *testing.T) {
	f := startFleet(t)
	addr := metricsAddr(t)
	f.startAgentWithMetrics("test", false, addr)
	f.firstVersion()
	fights := metric(t, addr, "caravan_agent_drift_fights", "")

	ctx, stop := context.WithCancel(f.ctx)
	fighting := f.holdCoreDNS(ctx, "hpa-controller", 5)
	f.eventually("the fight is in the status", func() bool { return len(f.drift().Fights) == 1 })
	stop()
	<-fighting
	fight := f.drift().Fights[0]
	assert.Equal(t, "Deployment kube-system/coredns", fight.Object)
	assert.Equal(t, "hpa-controller/scale", fight.Manager)
	assert.Equal(t, []string{"spec.replicas"}, fight.Fields)
	assert.Equal(t, 3, fight.Corrections)
	assert.True(t, fight.Until.After(time.Now().Add(50*time.Minute)), "the default expiry is an hour")
	f.eventually("an Event on the Deployment says so", func() bool {
		return f.objectEvents("Deployment", "kube-system", "coredns", drift.ReasonDriftFight, "hpa-controller/scale", "spec.replicas") > 0
	})
	f.eventually("the registry has the problem", func() bool {
		for _, p := range f.status().Problems {
			if p.Type == api.ProblemDriftFight && strings.Contains(p.Detail, "hpa-controller/scale") {
				return true
			}
		}
		return false
	})
	assert.Equal(t, fights+1, metric(t, addr, "caravan_agent_drift_fights", ""))
	assert.EqualValues(t, 5, f.coreDNSReplicas(), "the agent no longer corrects it")

	// reconcile: disabled on a live object leaves it alone.
	cm, err := f.configMap("drift-a")
	require.NoError(t, err)
	cm.Annotations = map[string]string{"caravan.io/reconcile": "disabled"}
	cm.Data["mode"] = "by-hand"
	require.NoError(t, f.kube.Update(f.ctx, cm, client.FieldOwner("kubectl-edit")))
	f.setData("drift-b", "by-hand")
	f.eventually("another edit made after it is corrected", f.dataIs("drift-b", "git"))
	assert.True(t, f.dataIs("drift-a", "by-hand")(), "the disabled object keeps its edit")
	assert.False(t, f.corrected("ConfigMap default/drift-a", api.DriftCorrected))

	// A version that changes the Deployment ends the fight.
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"coredns_replicas": "3"}}, "")
	require.NoError(t, err)
	f.eventually("the new version sets 3 replicas and ends the fight", func() bool {
		return f.coreDNSReplicas() == 3 && len(f.drift().Fights) == 0
	})
	require.NoError(t, f.scaleCoreDNS("kubectl", 7))
	f.eventually("a hand edit is corrected again", func() bool { return f.coreDNSReplicas() == 3 })
	assert.Equal(t, fights, metric(t, addr, "caravan_agent_drift_fights", ""))
}

// drift_correction: report reports and changes nothing; a block holds
// corrections until it is lifted.
func TestReportModeAndBlocksHoldCorrections(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.firstVersion()
	version := f.status().CurrentVersion

	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{drift.ItemMode: api.DriftReport}}, "")
	require.NoError(t, err)
	f.eventually("the version with report mode is applied", func() bool {
		st := f.status()
		return st.CurrentVersion != version && st.Phase == api.PhaseIdle && f.drift().Mode == api.DriftReport
	})
	f.setData("drift-a", "by-hand")
	f.eventually("the drift is reported with the field and the manager", func() bool {
		return f.objectEvents("ConfigMap", "default", "drift-a", drift.ReasonDriftDetected, "data.mode", "kubectl-edit", "report") > 0
	})
	f.eventually("the status has the report", func() bool { return f.corrected("ConfigMap default/drift-a", api.DriftReported) })
	assert.True(t, f.dataIs("drift-a", "by-hand")(), "report mode changes nothing")
	assert.EqualValues(t, 0, f.drift().Corrected)

	// A plan lists the object that differs from the version now.
	plan, err := f.reg.CreatePlan(f.ctx, clusterID, strings.SplitN(f.status().CurrentVersion, "#", 2)[0])
	require.NoError(t, err)
	f.eventually("the agent answers the plan", func() bool {
		got, err := f.reg.GetPlan(f.ctx, clusterID, plan.ID)
		if err == nil && got.Final() {
			plan = got
		}
		return err == nil && got.Final()
	})
	require.Equal(t, api.PlanDone, plan.State)
	assert.Equal(t, []api.DriftedObject{{Object: "ConfigMap default/drift-a", Fields: []string{"data.mode"}, Manager: "kubectl-edit", Held: api.DriftReport}},
		plan.Result.Drifted)

	// Back to enabled: the new version applies the drifted object too.
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{drift.ItemMode: api.DriftEnabled}}, "")
	require.NoError(t, err)
	f.eventually("the next version puts the drifted object back", f.dataIs("drift-a", "git"))

	cc := f.clusterConfig()
	cc.Spec.Block = &clusterconfig.Block{Reason: "incident 42"}
	require.NoError(t, f.kube.Update(f.ctx, cc))
	f.setData("drift-b", "during-the-incident")
	f.eventually("the held drift is reported", func() bool {
		return f.objectEvents("ConfigMap", "default", "drift-b", drift.ReasonDriftHeld, "incident 42") > 0
	})
	assert.True(t, f.dataIs("drift-b", "during-the-incident")(), "a block holds corrections")
	cc = f.clusterConfig()
	cc.Spec.Block = nil
	require.NoError(t, f.kube.Update(f.ctx, cc))
	f.eventually("lifting the block corrects it", f.dataIs("drift-b", "git"))
}

// Edits made while the agent is stopped are corrected when it starts; an
// edit made right after the API server restarted is corrected too.
func TestNothingIsMissedAcrossRestarts(t *testing.T) {
	f := startFleet(t)
	a := f.startAgent("test", false)
	f.firstVersion()
	a.stop()
	f.setData("drift-a", "while-stopped")
	require.NoError(t, f.kube.Delete(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "drift-b", Namespace: "default"}}))
	f.startAgent("test", false)
	f.eventually("the edit made while the agent was stopped is corrected", f.dataIs("drift-a", "git"))
	f.eventually("the ConfigMap deleted meanwhile is re-created", f.dataIs("drift-b", "git"))

	require.NoError(t, f.cp.RestartAPIServer(f.ctx))
	f.setData("drift-c", "after-the-restart")
	f.eventually("an edit right after the API server is back is corrected", f.dataIs("drift-c", "git"))
}

// With two replicas only the leader watches and corrects.
func TestOnlyTheLeaderCorrects(t *testing.T) {
	f := startFleet(t)
	f.startAgent("replica-a", true)
	f.startAgent("replica-b", true)
	f.firstVersion()
	f.setData("drift-a", "by-hand")
	f.eventually("the edit is corrected", f.dataIs("drift-a", "git"))
	f.setData("drift-b", "by-hand")
	f.eventually("a later edit is corrected", f.dataIs("drift-b", "git"))
	f.eventually("the status counts both", func() bool { return f.drift().Corrected >= 2 })
	assert.Equal(t, 1, f.objectEvents("ConfigMap", "default", "drift-a", drift.ReasonDriftCorrected), "one correction, by one replica")
	assert.EqualValues(t, 2, f.drift().Corrected, "one correction of each edit")
}

// A commit that changes one object applies that object alone: the apply's
// Event names only it.
func TestAVersionAppliesOnlyWhatChanged(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.firstVersion()
	sha := f.commit("one object changes", map[string][]byte{
		"kubernetes/base/drift.yaml": []byte(driftYAML("drift-a", "changed") + "---\n" + driftYAML("drift-b", "git") + "---\n" + driftYAML("drift-c", "git")),
	})
	f.eventually("the commit is applied", f.atCommit(sha))
	f.eventually("the apply's Event names the one object", func() bool {
		return f.hasEvent("applied version "+sha, "ConfigMap/default/drift-a configured")
	})
	for _, e := range f.clusterConfigEvents("applied version " + sha) {
		assert.NotContains(t, e, "coredns", "an unchanged object is not applied")
		assert.Equal(t, 1, strings.Count(e, "configured")+strings.Count(e, "created"), fmt.Sprintf("one object applied: %s", e))
	}
	assert.True(t, f.dataIs("drift-a", "changed")())
}

func driftYAML(name, mode string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\ndata:\n  mode: " + mode + "\n"
}

// clusterConfigEvents are the messages of the ClusterConfig's Events that
// contain part.
func (f *fleet) clusterConfigEvents(part string) []string {
	list := &corev1.EventList{}
	require.NoError(f.t, f.kube.List(f.ctx, list))
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "ClusterConfig" && strings.Contains(e.Message, part) {
			out = append(out, e.Message)
		}
	}
	return out
}
