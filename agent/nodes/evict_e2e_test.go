package nodes_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/moto"
)

// The roll's eviction edge cases on real parts: a kube-apiserver whose
// Eviction API and disruption controller answer, and auto scaling groups
// in moto. Each test drives nodes.Roller through its exported API, as the
// agent does.

const (
	rigRegion  = "eu-central-1"
	rigCluster = "aws:" + moto.AccountID + ":" + rigRegion + ":kube-1"
	// Every instance of a rig's group has this revision; the roll asks for
	// another, so every node is outdated.
	oldRevision = "old"
)

// holdingSLA refuses no force for a known reason in the test's time: a
// refused pod waits out the grace period, an hour, with its forecast.
var holdingSLA = nodes.SLA{GracePeriod: time.Hour}

// rig is a cluster on real parts for the Roller: a control plane whose
// pool Nodes stand for the instances of auto scaling groups in moto.
type rig struct {
	t        *testing.T
	ctx      context.Context
	cp       *controlplane.ControlPlane
	kube     client.WithWatch
	aws      aws.Config
	endpoint string
	subnet   string
}

func newRig(t *testing.T, opts ...controlplane.Option) *rig {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx, cp: controlplane.Start(t, opts...)}
	srv := moto.Start(t)
	r.aws, r.endpoint = srv.AWSConfig(rigRegion), srv.Endpoint
	var err error
	r.kube, err = client.NewWithWatch(r.cp.Config, client.Options{Scheme: clientgoscheme.Scheme})
	require.NoError(t, err)
	ec2c := ec2.NewFromConfig(r.aws)
	vpc, err := ec2c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	require.NoError(t, err)
	subnet, err := ec2c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.1.0.0/20"),
		AvailabilityZone: aws.String(rigRegion + "a")})
	require.NoError(t, err)
	r.subnet = aws.ToString(subnet.Subnet.SubnetId)
	return r
}

// pool makes a node pool of one instance of oldRevision: a group in moto,
// tagged as the reference node-pool.yaml's, and the instance's Node, Ready.
func (r *rig) pool(name string) *corev1.Node {
	lt, err := ec2.NewFromConfig(r.aws).CreateLaunchTemplate(r.ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-04681a1dbd79675a5"), InstanceType: ec2types.InstanceTypeM6iLarge,
			TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{{ResourceType: ec2types.ResourceTypeInstance,
				Tags: []ec2types.Tag{{Key: aws.String(nodes.TagRevision), Value: aws.String(oldRevision)}}}}}})
	require.NoError(r.t, err)
	asg := autoscaling.NewFromConfig(r.aws)
	_, err = asg.CreateAutoScalingGroup(r.ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String(name),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(2), DesiredCapacity: aws.Int32(1), VPCZoneIdentifier: aws.String(r.subnet),
		LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")},
		Tags:           []astypes.Tag{{Key: aws.String(nodes.TagClusterID), Value: aws.String(rigCluster)}, {Key: aws.String(nodes.TagNodePool), Value: aws.String(name)}}})
	require.NoError(r.t, err)
	groups, err := asg.DescribeAutoScalingGroups(r.ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	require.NoError(r.t, err)
	require.Len(r.t, groups.AutoScalingGroups, 1)
	require.Len(r.t, groups.AutoScalingGroups[0].Instances, 1)
	inst := groups.AutoScalingGroups[0].Instances[0]
	node, err := r.cp.AddNode(r.ctx, controlplane.Node{Name: name + "-1", Labels: map[string]string{nodes.PoolLabel: name},
		ProviderID: "aws:///" + aws.ToString(inst.AvailabilityZone) + "/" + aws.ToString(inst.InstanceId)})
	require.NoError(r.t, err)
	return node
}

// roller is a Roller as the agent makes it, talking to the cluster
// through kube and to moto, its Events recorded in the cluster and its
// metrics in a registry of its own.
func (r *rig) roller(kube client.Client) (*nodes.Roller, *prometheus.Registry) {
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: r.cp.Client.EventsV1()})
	require.NoError(r.t, broadcaster.StartRecordingToSinkWithContext(r.ctx))
	r.t.Cleanup(broadcaster.Shutdown)
	reg := prometheus.NewRegistry()
	fleet := (&cloud.AWS{Config: r.aws, Endpoint: r.endpoint}).Fleet(rigCluster, rigRegion)
	recorder := broadcaster.NewRecorder(clientgoscheme.Scheme, "caravan-agent")
	return nodes.NewRoller(kube, fleet, recorder, testr.NewWithOptions(r.t, testr.Options{Verbosity: 1}), nodes.NewMetrics(reg)), reg
}

// rollOf is a roll of the pools to a new revision, without surge: the
// first pass selects each pool's node and asks its pods to leave.
func rollOf(sla nodes.SLA, pools ...string) nodes.RollConfig {
	cfg := nodes.RollConfig{TaintEffect: corev1.TaintEffectPreferNoSchedule, Poll: time.Second}
	for _, p := range pools {
		cfg.Pools = append(cfg.Pools, nodes.PoolSpec{Name: p, Revision: "new", SLA: sla})
	}
	return cfg
}

// podOn makes a bare pod on a node; it ends as soon as it is deleted.
func (r *rig) podOn(node, name string, labels map[string]string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	require.NoError(r.t, r.kube.Create(r.ctx, pod))
	return pod
}

// budget makes a PodDisruptionBudget that keeps all the pods it selects
// and waits until the disruption controller counts them healthy: from
// then on it refuses every eviction.
func (r *rig) budget(name string, selector map[string]string, pods int) {
	all := intstr.FromInt32(int32(pods))
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &all, Selector: &metav1.LabelSelector{MatchLabels: selector}}}
	require.NoError(r.t, r.kube.Create(r.ctx, pdb))
	require.Eventually(r.t, func() bool {
		got := &policyv1.PodDisruptionBudget{}
		return r.kube.Get(r.ctx, client.ObjectKeyFromObject(pdb), got) == nil && got.Status.ObservedGeneration == got.Generation &&
			got.Status.CurrentHealthy == int32(pods) && got.Status.DisruptionsAllowed == 0
	}, 30*time.Second, 100*time.Millisecond, "budget %s counts its %d pods healthy", name, pods)
}

// pod reads a pod that must be there.
func (r *rig) pod(name string) *corev1.Pod {
	pod := &corev1.Pod{}
	require.NoError(r.t, r.kube.Get(r.ctx, client.ObjectKey{Namespace: "default", Name: name}, pod), "pod %s is there", name)
	return pod
}

func (r *rig) node(name string) *corev1.Node {
	n := &corev1.Node{}
	require.NoError(r.t, r.kube.Get(r.ctx, client.ObjectKey{Name: name}, n))
	return n
}

// forecastOf is the forecast a pod refused on a node whose drain started
// at the annotation's time is given under holdingSLA.
func forecastOf(t *testing.T, node *corev1.Node) string {
	start, err := time.Parse(time.RFC3339Nano, node.Annotations[nodes.DrainStartAnnotation])
	require.NoError(t, err, "node %s has its drain start", node.Name)
	value, ok := nodes.ForecastAnnotation(nodes.Decision{Action: nodes.Wait, At: start.Add(holdingSLA.GracePeriod)})
	require.True(t, ok)
	return value
}

// podEvent waits for an Event of the reason on the pod, and returns its
// note.
func (r *rig) podEvent(pod, reason string) string {
	var note string
	require.Eventually(r.t, func() bool {
		list := &corev1.EventList{}
		if r.kube.List(r.ctx, list, client.InNamespace("default")) != nil {
			return false
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.Name == pod && e.Reason == reason {
				note = e.Message
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "an Event %s on pod %s", reason, pod)
	return note
}

// counter is the value of a counter the Roller's metrics registered, the
// sum over its series with the label's value (all of them for "").
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	families, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == label && l.GetValue() == value
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// A PodDisruptionBudget's refusal is decided on in the same pass, with the
// pod's forecast written: the 429 that names the DisruptionBudget cause,
// and the 500 of a pod two budgets select, which the Eviction API cannot
// decide on.
func TestABudgetsRefusalIsDecidedOn(t *testing.T) {
	r := newRig(t)
	node := r.pool("workers")
	r.podOn(node.Name, "one-budget", map[string]string{"app": "one-budget"})
	r.podOn(node.Name, "two-budgets", map[string]string{"app": "two-budgets", "tier": "guarded"})
	r.budget("one-budget", map[string]string{"app": "one-budget"}, 1)
	r.budget("two-budgets", map[string]string{"app": "two-budgets"}, 1)
	r.budget("tier", map[string]string{"tier": "guarded"}, 1)
	roller, reg := r.roller(r.kube)

	_, err := roller.Pass(r.ctx, rollOf(holdingSLA, "workers"), nil)
	require.NoError(t, err, "a 500 from two budgets is a refusal, not an error")

	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_evictions_total", "result", "refused"), "both answers are refusals")
	assert.Zero(t, counter(t, reg, "caravan_agent_evictions_total", "result", "throttled"))
	assert.Zero(t, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""))
	want := forecastOf(t, r.node(node.Name))
	for _, name := range []string{"one-budget", "two-budgets"} {
		pod := r.pod(name)
		assert.Nil(t, pod.DeletionTimestamp, "pod %s is not forced under the grace period", name)
		assert.Equal(t, want, pod.Annotations[nodes.ForceEvictAfterAnnotation], "pod %s is told when it may be forced", name)
		assert.Contains(t, r.podEvent(name, nodes.ReasonForceEvictionScheduled), "not before "+want+" (held by "+nodes.RuleGracePeriod+")")
	}
	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_force_waits_total", "rule", nodes.RuleGracePeriod))
}

// A 429 of the API server's own (API Priority and Fairness rejecting the
// roller's evictions) is no refusal: nothing is decided or forecast, and
// the pod is asked again at the next pass, when its budget's refusal is
// decided on.
func TestAThrottledEvictionIsAskedAgainNotDecidedOn(t *testing.T) {
	r := newRig(t, controlplane.WithPriorityAndFairness())
	node := r.pool("workers")
	labels := map[string]string{"app": "guarded"}
	for _, name := range []string{"guarded-1", "guarded-2"} {
		r.podOn(node.Name, name, labels)
	}
	r.budget("guarded", labels, 2)
	apf := throttleOnAPIServer(t, r.cp)
	roller, reg := r.roller(apf.roller)

	apf.throttle(t)
	res, err := roller.Pass(r.ctx, rollOf(holdingSLA, "workers"), nil)
	require.NoError(t, err)
	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_evictions_total", "result", "throttled"), "both evictions were throttled")
	assert.Zero(t, counter(t, reg, "caravan_agent_evictions_total", "result", "refused"))
	assert.Zero(t, counter(t, reg, "caravan_agent_force_waits_total", "", ""), "a throttled pod is not decided on")
	for _, name := range []string{"guarded-1", "guarded-2"} {
		pod := r.pod(name)
		assert.Nil(t, pod.DeletionTimestamp)
		assert.NotContains(t, pod.Annotations, nodes.ForceEvictAfterAnnotation, "a throttled pod %s gets no forecast", name)
	}

	apf.release(t)
	_, err = roller.Pass(r.ctx, rollOf(holdingSLA, "workers"), res.Rolls)
	require.NoError(t, err)
	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_evictions_total", "result", "refused"), "the throttled pods were asked again")
	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_evictions_total", "result", "throttled"))
	want := forecastOf(t, r.node(node.Name))
	for _, name := range []string{"guarded-1", "guarded-2"} {
		assert.Equal(t, want, r.pod(name).Annotations[nodes.ForceEvictAfterAnnotation], "the budget's refusal of %s is decided on", name)
	}
}

// throttlingAPIServer is the control plane's kube-apiserver, run with API
// Priority and Fairness (controlplane.WithPriorityAndFairness). It admits
// the roller's service account's evictions one at a time, in a priority
// level of no concurrency that never queues: while a held eviction of that
// account waits in a webhook, every other one is rejected with a 429.
type throttlingAPIServer struct {
	// roller is a client of the roller's service account on this server.
	roller  client.Client
	admin   client.Client
	probe   *http.Client
	host    string
	webhook *holdingWebhook
	schema  types.UID
	held    chan error
}

const (
	rollerAccount = "caravan-roller"
	// heldPod is the pod the held eviction names; it need not exist, the
	// webhook answers before the pod is read.
	heldPod = "held"
	// probePod names the evictions that show what the server does with
	// the account's: it does not exist, so one that passes is a 404.
	probePod = "probe"
)

func throttleOnAPIServer(t *testing.T, cp *controlplane.ControlPlane) *throttlingAPIServer {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := client.New(cp.Config, client.Options{Scheme: clientgoscheme.Scheme})
	require.NoError(t, err)
	host := cp.Config.Host

	zero := int32(0)
	require.NoError(t, admin.Create(ctx, &flowcontrolv1.PriorityLevelConfiguration{ObjectMeta: metav1.ObjectMeta{Name: rollerAccount},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{NominalConcurrencyShares: &zero, LendablePercent: &zero, BorrowingLimitPercent: &zero,
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}}}}))
	schema := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: rollerAccount},
		Spec: flowcontrolv1.FlowSchemaSpec{PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: rollerAccount},
			MatchingPrecedence: 100, Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
					ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: "default", Name: rollerAccount}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"create"}, APIGroups: []string{""},
					Resources: []string{"pods/eviction"}, Namespaces: []string{flowcontrolv1.NamespaceEvery}}}}}}}
	require.NoError(t, admin.Create(ctx, schema))

	require.NoError(t, admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: rollerAccount, Namespace: "default"}}))
	require.NoError(t, admin.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: rollerAccount},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: rollerAccount}}}))
	token, err := cp.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, rollerAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	require.NoError(t, err)
	cfg := rest.AnonymousClientConfig(cp.Config)
	cfg.Host, cfg.BearerToken = host, token.Status.Token
	// client-go retries a 429 that carries Retry-After up to ten times,
	// waiting as told (APF's grows to 32 s while it rejects): the roller
	// would hear of the throttle minutes later, or never in this test.
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return withoutRetryAfter{rt} }
	a := &throttlingAPIServer{host: host, admin: admin, webhook: startHoldingWebhook(t, admin), schema: schema.UID, held: make(chan error, 1)}
	a.roller, err = client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	require.NoError(t, err)
	a.probe, err = rest.HTTPClientFor(cfg)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		resp, err := a.evict(ctx, probePod)
		return err == nil && resp.StatusCode == http.StatusNotFound &&
			resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID) == string(a.schema) && a.webhook.reviewed(probePod)
	}, 30*time.Second, 100*time.Millisecond, "the server classifies the account's evictions by the FlowSchema, and the webhook reviews them")
	return a
}

// evict asks for a pod's eviction as the roller's account, and answers
// the server's response.
func (a *throttlingAPIServer) evict(ctx context.Context, pod string) (*http.Response, error) {
	body, err := json.Marshal(&policyv1.Eviction{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"},
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: "default"}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.host+"/api/v1/namespaces/default/pods/"+pod+"/eviction", strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.probe.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// throttle holds an eviction of the roller's account in the webhook and
// returns once the account's next eviction is rejected.
func (a *throttlingAPIServer) throttle(t *testing.T) {
	go func() {
		resp, err := a.evict(context.Background(), heldPod)
		if err == nil && resp.StatusCode != http.StatusForbidden {
			err = fmt.Errorf("the held eviction ended with %s", resp.Status)
		}
		a.held <- err
	}()
	select {
	case <-a.webhook.arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the held eviction never reached the webhook")
	}
	resp, err := a.evict(t.Context(), probePod)
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the account's evictions are throttled while one is held")
}

// release lets the held eviction end and the account's evictions out of
// the priority level of no concurrency, where two at once are one too
// many; it returns once they are classified as any service account's.
func (a *throttlingAPIServer) release(t *testing.T) {
	close(a.webhook.release)
	require.NoError(t, <-a.held)
	require.NoError(t, a.admin.Delete(t.Context(), &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: rollerAccount}}))
	require.Eventually(t, func() bool {
		resp, err := a.evict(t.Context(), probePod)
		return err == nil && resp.StatusCode == http.StatusNotFound && resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID) != string(a.schema)
	}, 20*time.Second, 50*time.Millisecond, "the account's evictions leave the FlowSchema")
}

type withoutRetryAfter struct{ next http.RoundTripper }

func (w withoutRetryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		resp.Header.Del("Retry-After")
	}
	return resp, err
}

// holdingWebhook reviews every pod eviction: it holds the one of heldPod
// until released, then refuses it, and admits the others at once.
type holdingWebhook struct {
	arrived, release chan struct{}
	arrive           sync.Once

	mu   sync.Mutex
	seen map[string]bool
}

func startHoldingWebhook(t *testing.T, admin client.Client) *holdingWebhook {
	h := &holdingWebhook{arrived: make(chan struct{}), release: make(chan struct{}), seen: map[string]bool{}}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(func() {
		h.releaseOnce()
		srv.Close()
	})
	url := srv.URL + "/evictions"
	ignore, none, timeout := admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone, int32(30)
	require.NoError(t, admin.Create(t.Context(), &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "caravan-test-holding"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "holding.test.caravan.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url,
				CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/eviction"}}}},
			FailurePolicy: &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}}}}))
	return h
}

func (h *holdingWebhook) releaseOnce() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func (h *holdingWebhook) reviewed(pod string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[pod]
}

func (h *holdingWebhook) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	review := admissionv1.AdmissionReview{}
	if err := json.NewDecoder(req.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	name := review.Request.Name
	h.mu.Lock()
	h.seen[name] = true
	h.mu.Unlock()
	answer := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if name == heldPod {
		h.arrive.Do(func() { close(h.arrived) })
		select {
		case <-h.release:
		case <-req.Context().Done():
		}
		answer.Allowed, answer.Result = false, &metav1.Status{Code: http.StatusForbidden, Message: "held by the test"}
	}
	review.Request, review.Response = nil, answer
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// replacingClient is the roller's client with a pod replaced under the
// same name, as a StatefulSet replaces its pods, just before the roller's
// call of the kind named reaches the API server: "get" (the force's
// re-read) or "delete" (the force).
type replacingClient struct {
	client.Client
	t    *testing.T
	pod  client.ObjectKey
	call string

	mu          sync.Mutex
	replacement *corev1.Pod
}

func (c *replacingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, isPod := obj.(*corev1.Pod); isPod && key == c.pod && c.call == "get" {
		c.replace(ctx)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *replacingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if _, isPod := obj.(*corev1.Pod); isPod && client.ObjectKeyFromObject(obj) == c.pod && c.call == "delete" {
		c.replace(ctx)
	}
	return c.Client.Delete(ctx, obj, opts...)
}

// replace deletes the pod and makes another one like it, once, not yet
// scheduled: on the draining node, the pass's next round would ask it to
// leave and, its budget refusing and every rule allowing, force it.
func (c *replacingClient) replace(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.replacement != nil {
		return
	}
	old := &corev1.Pod{}
	require.NoError(c.t, c.Client.Get(ctx, c.pod, old))
	require.NoError(c.t, c.Client.Delete(ctx, old, client.GracePeriodSeconds(0), client.Preconditions{UID: &old.UID}))
	next := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: old.Name, Namespace: old.Namespace, Labels: old.Labels},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"example.org/none": "none"}, TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	require.NoError(c.t, c.Client.Create(ctx, next))
	c.replacement = next
}

func (c *replacingClient) replaced() *corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replacement
}

// replacedBeforeForce runs a pass whose force of the only pod meets the
// pod replaced just before the call named, and returns the replacement,
// the roller's metrics and the pass's error.
func replacedBeforeForce(t *testing.T, call string) (*rig, *corev1.Pod, *prometheus.Registry, error) {
	r := newRig(t)
	node := r.pool("workers")
	r.podOn(node.Name, "stateful-0", map[string]string{"app": "stateful"})
	r.budget("stateful", map[string]string{"app": "stateful"}, 1)
	replacing := &replacingClient{Client: r.kube, t: t, pod: client.ObjectKey{Namespace: "default", Name: "stateful-0"}, call: call}
	roller, reg := r.roller(replacing)
	// Every rule of the SLA lets a refused pod go at once.
	_, err := roller.Pass(r.ctx, rollOf(nodes.SLA{}, "workers"), nil)
	replacement := replacing.replaced()
	require.NotNil(t, replacement, "the pass forced the pod, and the pod was replaced before the %s", call)
	return r, replacement, reg, err
}

// A pod replaced under the same name between the pass's read and the
// force's re-read is not the pod decided on: it is left alone.
func TestAPodReplacedBeforeTheReReadIsNotForced(t *testing.T) {
	r, replacement, reg, err := replacedBeforeForce(t, "get")
	require.NoError(t, err)
	got := r.pod(replacement.Name)
	assert.Equal(t, replacement.UID, got.UID, "the new pod is there")
	assert.Nil(t, got.DeletionTimestamp, "and not deleted")
	assert.Zero(t, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""))
}

// A pod replaced under the same name between the force's re-read and its
// delete survives: the delete's UID precondition names the pod decided
// on. The pass goes on as for a pod gone.
func TestAPodReplacedBeforeTheDeleteIsNotForced(t *testing.T) {
	r, replacement, reg, err := replacedBeforeForce(t, "delete")
	got := r.pod(replacement.Name)
	assert.Equal(t, replacement.UID, got.UID, "the new pod is there")
	assert.Nil(t, got.DeletionTimestamp, "and not deleted")
	assert.Zero(t, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""))
	assert.NoError(t, err, "a pod replaced before its force is no failure of the pass")
}

// stampingClient is the roller's client with a force recorded on a
// budget, as another force in it would, just before the force's re-read
// of the budget reaches the API server.
type stampingClient struct {
	client.Client
	t      *testing.T
	budget client.ObjectKey

	mu      sync.Mutex
	stamped string
}

func (c *stampingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, isBudget := obj.(*policyv1.PodDisruptionBudget); isBudget && key == c.budget {
		c.stamp(ctx)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *stampingClient) stamp(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stamped != "" {
		return
	}
	b := &policyv1.PodDisruptionBudget{}
	require.NoError(c.t, c.Client.Get(ctx, c.budget, b))
	patch := client.MergeFrom(b.DeepCopy())
	c.stamped = time.Now().UTC().Format(time.RFC3339Nano)
	b.Annotations = map[string]string{nodes.LastForcedAnnotation: c.stamped}
	require.NoError(c.t, c.Client.Patch(ctx, b, patch))
}

// A force in a pod's budget made after the pass read it (by another
// agent's pass, say) holds the pod's force: the interval counts from it.
func TestAForceInTheBudgetSinceThePlanHoldsTheForce(t *testing.T) {
	r := newRig(t)
	node := r.pool("workers")
	r.podOn(node.Name, "guarded", map[string]string{"app": "guarded"})
	r.budget("guarded", map[string]string{"app": "guarded"}, 1)
	stamping := &stampingClient{Client: r.kube, t: t, budget: client.ObjectKey{Namespace: "default", Name: "guarded"}}
	roller, reg := r.roller(stamping)

	_, err := roller.Pass(r.ctx, rollOf(nodes.SLA{ForceEvictInterval: time.Hour}, "workers"), nil)
	require.NoError(t, err)
	require.NotEmpty(t, stamping.stamped, "the pass forced the pod, and re-read its budget before")
	assert.Nil(t, r.pod("guarded").DeletionTimestamp, "the force is held by the one made since the plan")
	assert.Zero(t, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""))
}

// failingDeleteClient is the roller's client with its deletions of pods
// failing before they reach the API server, as when the agent is killed
// at that moment.
type failingDeleteClient struct {
	client.Client
}

func (c failingDeleteClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if _, isPod := obj.(*corev1.Pod); isPod {
		return fmt.Errorf("the agent stopped before deleting pod %s", obj.GetName())
	}
	return c.Client.Delete(ctx, obj, opts...)
}

// A force is recorded on its node and budgets before the pod is deleted:
// an agent stopped between the two and started again counts the force
// interval from it, and a deletion that never happened only delays the
// next force.
func TestAForceIsRecordedBeforeThePodIsDeleted(t *testing.T) {
	r := newRig(t)
	node := r.pool("workers")
	r.podOn(node.Name, "guarded", map[string]string{"app": "guarded"})
	r.budget("guarded", map[string]string{"app": "guarded"}, 1)
	failing, _ := r.roller(failingDeleteClient{Client: r.kube})
	sla := nodes.SLA{ForceEvictInterval: time.Hour}

	_, err := failing.Pass(r.ctx, rollOf(sla, "workers"), nil)
	require.ErrorContains(t, err, "the agent stopped before deleting pod guarded")
	assert.Nil(t, r.pod("guarded").DeletionTimestamp)
	onNode := r.node(node.Name).Annotations[nodes.LastForcedAnnotation]
	assert.NotEmpty(t, onNode, "the node records the force")
	budget := &policyv1.PodDisruptionBudget{}
	require.NoError(t, r.kube.Get(r.ctx, client.ObjectKey{Namespace: "default", Name: "guarded"}, budget))
	assert.Equal(t, onNode, budget.Annotations[nodes.LastForcedAnnotation], "and so does the budget")

	restarted, reg := r.roller(r.kube)
	_, err = restarted.Pass(r.ctx, rollOf(sla, "workers"), nil)
	require.NoError(t, err)
	assert.Nil(t, r.pod("guarded").DeletionTimestamp, "the next force waits the interval from the one recorded")
	assert.Zero(t, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""))
}

// Two pools each drain a node holding pods of one budget, at the same
// time: forces on the two nodes are never closer than the SLA's force
// interval, which counts per budget across the cluster, not only per node.
func TestForcesInOneBudgetKeepTheIntervalAcrossNodes(t *testing.T) {
	const interval = 3 * time.Second
	r := newRig(t)
	labels := map[string]string{"app": "shared"}
	pods := map[string]string{}
	for _, pool := range []string{"blue", "green"} {
		node := r.pool(pool)
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s-%d", pool, i)
			r.podOn(node.Name, name, labels)
			pods[name] = node.Name
		}
	}
	r.budget("shared", labels, len(pods))
	forces := recordForces(t, r)
	roller, reg := r.roller(r.kube)
	rollUntilGone(t, r, roller, rollOf(nodes.SLA{ForceEvictInterval: interval}, "blue", "green"), labels)

	assert.Equal(t, float64(len(pods)), counter(t, reg, "caravan_agent_forced_deletions_total", "", ""), "every pod was forced")
	byNode := forces.byNode(t, map[string]int{"blue-1": 2, "green-1": 2})
	for _, blue := range byNode["blue-1"] {
		for _, green := range byNode["green-1"] {
			gap := blue.Sub(green).Abs()
			assert.GreaterOrEqual(t, gap, interval, "forces on blue-1 at %s and on green-1 at %s", blue.Format(time.RFC3339Nano), green.Format(time.RFC3339Nano))
		}
	}
	for name, node := range pods {
		assert.Contains(t, r.podEvent(name, nodes.ReasonForcedEviction), "every rule of the drain SLA allows it", "pod %s on %s", name, node)
	}
}

// rollUntilGone runs the roller's passes as the agent's loop does, until
// no pod with the labels is left.
func rollUntilGone(t *testing.T, r *rig, roller *nodes.Roller, cfg nodes.RollConfig, labels map[string]string) {
	trigger := nodes.NewTrigger(r.cp.Config, testr.New(t))
	roller.WatchedBy(trigger)
	trigger.Start(r.ctx)
	t.Cleanup(trigger.Stop)
	var rolls []nodes.RollState
	for {
		res, err := roller.Pass(r.ctx, cfg, rolls)
		require.NoError(t, err)
		rolls = res.Rolls
		list := &corev1.PodList{}
		require.NoError(t, r.kube.List(r.ctx, list, client.MatchingLabels(labels)))
		if len(list.Items) == 0 {
			return
		}
		wake, stop := roller.Wake(trigger, nodes.NextWake(res.Progress), cfg.Poll)
		select {
		case <-wake:
		case <-r.ctx.Done():
			t.Fatalf("%d pods are still to be forced", len(list.Items))
		}
		stop()
	}
}

// slowDeleteClient is the roller's client with its first deletion of a
// pod slowed, as a loaded API server slows it, and the times each
// deletion was sent and answered.
type slowDeleteClient struct {
	client.Client
	delay time.Duration

	mu       sync.Mutex
	sent     []time.Time
	answered []time.Time
}

func (c *slowDeleteClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if _, isPod := obj.(*corev1.Pod); !isPod {
		return c.Client.Delete(ctx, obj, opts...)
	}
	c.mu.Lock()
	first := len(c.sent) == 0
	c.sent = append(c.sent, time.Now())
	c.mu.Unlock()
	if first {
		time.Sleep(c.delay)
	}
	err := c.Client.Delete(ctx, obj, opts...)
	c.mu.Lock()
	c.answered = append(c.answered, time.Now())
	c.mu.Unlock()
	return err
}

// The force interval counts from a force's deletion, not from the time
// recorded just before it: a deletion the API server makes a second late
// delays the next force by as much.
func TestTheForceIntervalCountsFromTheDeletion(t *testing.T) {
	const interval, delay = 2 * time.Second, time.Second
	r := newRig(t)
	node := r.pool("workers")
	labels := map[string]string{"app": "guarded"}
	for _, name := range []string{"guarded-1", "guarded-2"} {
		r.podOn(node.Name, name, labels)
	}
	r.budget("guarded", labels, 2)
	slow := &slowDeleteClient{Client: r.kube, delay: delay}
	roller, reg := r.roller(slow)
	rollUntilGone(t, r, roller, rollOf(nodes.SLA{ForceEvictInterval: interval}, "workers"), labels)

	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""), "both pods were forced")
	slow.mu.Lock()
	defer slow.mu.Unlock()
	require.Len(t, slow.sent, 2)
	// The first deletion was made at the latest when it was answered, the
	// second at the earliest when it was sent.
	gap := slow.sent[1].Sub(slow.answered[0])
	assert.GreaterOrEqual(t, gap, interval, "the second force came %s after the first deletion", gap)
}

// A forecast that moves later by less than a second is left as written.
// Here the node's force interval holds the second pod: its forecast is
// counted first from the pass that forced the other pod, then from when
// that deletion was answered, a few milliseconds later.
func TestAForecastMovedLessThanASecondIsNotWrittenAgain(t *testing.T) {
	const interval = 2 * time.Second
	r := newRig(t)
	node := r.pool("workers")
	guarded := map[string]string{"role": "guarded"}
	for _, name := range []string{"one", "two"} {
		r.podOn(node.Name, name, map[string]string{"role": "guarded", "app": name})
		r.budget(name, map[string]string{"app": name}, 1)
	}
	kube := &podPatchCounter{Client: r.kube, patches: map[string]int{}}
	roller, reg := r.roller(kube)
	rollUntilGone(t, r, roller, rollOf(nodes.SLA{ForceEvictInterval: interval}, "workers"), guarded)

	assert.Equal(t, 2.0, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""), "both pods were forced")
	assert.GreaterOrEqual(t, counter(t, reg, "caravan_agent_force_waits_total", "rule", nodes.RuleForceEvictInterval), 2.0,
		"the second pod was decided on again after the first deletion was answered")
	kube.mu.Lock()
	defer kube.mu.Unlock()
	assert.Len(t, kube.patches, 1, "the pod forced first had no forecast, the other one: %v", kube.patches)
	for pod, n := range kube.patches {
		assert.Equal(t, 1, n, "pod %s's forecast was written once", pod)
	}
}

// podPatchCounter counts the roller's patches of each pod: its forecasts.
type podPatchCounter struct {
	client.Client
	mu      sync.Mutex
	patches map[string]int
}

func (c *podPatchCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if _, isPod := obj.(*corev1.Pod); isPod {
		c.mu.Lock()
		c.patches[obj.GetName()]++
		c.mu.Unlock()
	}
	return c.Client.Patch(ctx, obj, patch, opts...)
}

// forceRecord is the forces on each node, as the cluster shows them: each
// value its last-forced annotation took.
type forceRecord struct {
	w  watch.Interface
	mu sync.Mutex
	at map[string][]time.Time
}

func recordForces(t *testing.T, r *rig) *forceRecord {
	w, err := r.kube.Watch(r.ctx, &corev1.NodeList{}, client.HasLabels{nodes.PoolLabel})
	require.NoError(t, err)
	f := &forceRecord{w: w, at: map[string][]time.Time{}}
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok || n.Annotations[nodes.LastForcedAnnotation] == "" {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, n.Annotations[nodes.LastForcedAnnotation])
			if err != nil {
				continue
			}
			f.mu.Lock()
			if seen := f.at[n.Name]; len(seen) == 0 || !seen[len(seen)-1].Equal(at) {
				f.at[n.Name] = append(seen, at)
			}
			f.mu.Unlock()
		}
	}()
	return f
}

// byNode waits until the record holds the forces expected on each node,
// and returns them.
func (f *forceRecord) byNode(t *testing.T, want map[string]int) map[string][]time.Time {
	out := map[string][]time.Time{}
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for node, n := range want {
			if len(f.at[node]) != n {
				return false
			}
			out[node] = append([]time.Time(nil), f.at[node]...)
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "forces by node: want %v", want)
	return out
}

// joiningClient is the roller's client with a pod joining a budget when
// the force reads the budget again: what a plan made on a cache behind
// the API server would not have seen.
type joiningClient struct {
	client.Client
	t      *testing.T
	budget client.ObjectKey
	node   string
	labels map[string]string

	mu     sync.Mutex
	joined bool
}

func (c *joiningClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, isBudget := obj.(*policyv1.PodDisruptionBudget); isBudget && key == c.budget {
		c.join(ctx)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *joiningClient) join(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.joined {
		return
	}
	c.joined = true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "newcomer", Namespace: "default", Labels: c.labels},
		Spec: corev1.PodSpec{NodeName: c.node, TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	require.NoError(c.t, c.Client.Create(ctx, pod))
}

// A pod that joined the budget after the plan read it stops a force: the
// force reads the budget's pods from the API server again, and the pass
// decides once more on what it shows, here a sibling younger than the
// sibling lifetimes, which holds the pod.
func TestAPodJoiningTheBudgetSinceThePlanStopsTheForce(t *testing.T) {
	r := newRig(t)
	node := r.pool("workers")
	other := r.pool("others")
	labels := map[string]string{"app": "guarded"}
	r.podOn(node.Name, "guarded", labels)
	r.budget("guarded", labels, 1)
	joining := &joiningClient{Client: r.kube, t: t, budget: client.ObjectKey{Namespace: "default", Name: "guarded"}, node: other.Name, labels: labels}
	roller, reg := r.roller(joining)

	sla := nodes.SLA{ForceEvictInterval: time.Hour, MinHealthySiblingLifetime: time.Hour, MinUnhealthySiblingLifetime: time.Hour}
	_, err := roller.Pass(r.ctx, rollOf(sla, "workers"), nil)
	require.NoError(t, err)
	require.True(t, joining.joined, "the pass decided to force the pod, and read its budget again before")
	assert.Zero(t, counter(t, reg, "caravan_agent_forced_deletions_total", "", ""), "no force on a plan behind the API server")
	assert.NotNil(t, r.pod("newcomer"), "the pod that joined is there")
}
