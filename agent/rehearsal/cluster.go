package rehearsal

import (
	"context"
	"fmt"
	"sync"

	fluxevents "github.com/fluxcd/pkg/runtime/events"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// agentNamespace is where the agent keeps its state, in a scratch cluster
// as in a real one.
const agentNamespace = "caravan-system"

// cluster is the scratch cluster, set up as an agent sets up its own.
type cluster struct {
	kube    client.Client
	applier *apply.Applier
	events  fluxevents.Recorder
	aws     *cloud.AWS
	status  *statusLog
}

func newCluster(ctx context.Context, o Options) (*cluster, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, clusterconfig.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	kube, err := client.New(o.Kube, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("reaching the scratch cluster: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}}
	if err := kube.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s in the scratch cluster: %w", agentNamespace, err)
	}
	if err := clusterconfig.Install(ctx, kube, apply.FieldManager); err != nil {
		return nil, fmt.Errorf("installing the ClusterConfig CRD in the scratch cluster: %w", err)
	}
	applier, err := apply.New(o.Kube)
	if err != nil {
		return nil, err
	}
	events, err := eventRecorder(o, s)
	if err != nil {
		return nil, err
	}
	aws, err := cloud.LoadAWS(ctx, o.AWSEndpoint)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	return &cluster{kube: kube, applier: applier, events: events, aws: aws, status: &statusLog{}}, nil
}

// eventRecorder writes the reconciles' Events into the scratch cluster,
// where they help to find out why a rehearsal failed.
func eventRecorder(o Options, s *runtime.Scheme) (fluxevents.Recorder, error) {
	clientset, err := kubernetes.NewForConfig(o.Kube)
	if err != nil {
		return nil, err
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clientset.CoreV1().Events("")})
	return fluxevents.NewRecorder(o.Log, "", "caravan-rehearse", fluxevents.WithScheme(s),
		fluxevents.WithLegacyEventRecorder(broadcaster.NewRecorder(s, corev1.EventSource{Component: "caravan-rehearse"})))
}

// statusLog takes the reports a reconcile sends to the registry. The
// registry holds the real cluster's status, which a rehearsal must not
// touch.
type statusLog struct {
	mu   sync.Mutex
	last *api.ClusterStatus
}

func (l *statusLog) PutClusterStatus(_ context.Context, _ string, st *api.ClusterStatus) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = st
	return nil
}

func (l *statusLog) PutPlan(context.Context, string, string, *api.PlanReport) error { return nil }

func (l *statusLog) lastPhase() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return "none"
	}
	return l.last.Phase
}
