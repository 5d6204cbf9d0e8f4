// Package agent runs the in-cluster agent: a controller-runtime manager
// with leader election, probes and metrics, whose leader runs the reconcile
// loop.
package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcd/pkg/runtime/events"
	"github.com/fluxcd/pkg/runtime/leaderelection"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/drift"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// Config is how the agent runs.
type Config struct {
	ClusterID string
	// RegistryURL is the registry's URL, or its replicas' separated by
	// commas.
	RegistryURL    string
	RegistryToken  string
	Kube           *rest.Config
	Namespace      string
	GitSecret      string
	Interval       time.Duration
	HealthTimeout  time.Duration
	LeaderElection leaderelection.Options
	MetricsAddr    string
	HealthAddr     string
	// PprofAddr serves Go's profiles (/debug/pprof/); "0" or empty
	// disables it.
	PprofAddr string
	// AWSEndpoint overrides the AWS endpoints, for emulators.
	AWSEndpoint string
	Version     string
	Log         logr.Logger
}

func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, clusterconfig.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// processMetrics registers the agent's metrics once per process, in
// controller-runtime's registry, which the manager serves.
var (
	processMetrics       = sync.OnceValue(func() *reconciler.Metrics { return reconciler.NewMetrics(metrics.Registry) })
	processSourceMetrics = sync.OnceValue(func() *reconciler.SourceMetrics { return reconciler.NewSourceMetrics(metrics.Registry) })
)

// setLogger gives controller-runtime's global logger the first Run's: it
// takes one logger per process, and tests run several agents in one.
var setLogger sync.Once

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	s, err := scheme()
	if err != nil {
		return err
	}
	setLogger.Do(func() { ctrl.SetLogger(cfg.Log) })
	mgr, err := ctrl.NewManager(cfg.Kube, ctrl.Options{
		Scheme:                        s,
		Logger:                        cfg.Log,
		LeaderElection:                cfg.LeaderElection.Enable,
		LeaderElectionID:              "caravan-agent",
		LeaderElectionNamespace:       cfg.Namespace,
		LeaderElectionReleaseOnCancel: cfg.LeaderElection.ReleaseOnCancel,
		LeaseDuration:                 &cfg.LeaderElection.LeaseDuration,
		RenewDeadline:                 &cfg.LeaderElection.RenewDeadline,
		RetryPeriod:                   &cfg.LeaderElection.RetryPeriod,
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:        cfg.HealthAddr,
		PprofBindAddress:              cfg.PprofAddr,
	})
	if err != nil {
		return fmt.Errorf("building the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	recorder, err := events.NewRecorder(cfg.Log, "", "caravan-agent", events.WithManager(mgr))
	if err != nil {
		return fmt.Errorf("building the event recorder: %w", err)
	}
	m := processMetrics()
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return lead(ctx, cfg, s, recorder, m) })); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// lead runs on the elected leader only: it installs what the agent needs
// and runs the loop.
func lead(ctx context.Context, cfg Config, s *runtime.Scheme, recorder events.Recorder, m *reconciler.Metrics) error {
	kube, err := client.New(cfg.Kube, client.Options{Scheme: s})
	if err != nil {
		return err
	}
	if err := ensureNamespace(ctx, kube, cfg.Namespace); err != nil {
		return err
	}
	if err := clusterconfig.Install(ctx, kube, apply.FieldManager); err != nil {
		return err
	}
	// Few, short retries: the loop itself polls again soon, and with the
	// registry down it goes on with the last good assignment without waiting.
	// A retry goes to the next replica at once when there are several.
	reg, err := registry.New(cfg.RegistryURL, cfg.RegistryToken, registry.WithUserAgent("caravan-agent/"+cfg.Version),
		registry.WithRetryMax(1), registry.WithRetryWait(500*time.Millisecond, 2*time.Second))
	if err != nil {
		return err
	}
	applier, err := apply.New(cfg.Kube)
	if err != nil {
		return err
	}
	creds, err := gitCredentials(ctx, kube, cfg.Namespace, cfg.GitSecret)
	if err != nil {
		return err
	}
	aws, err := cloud.LoadAWS(ctx, cfg.AWSEndpoint)
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(cfg.Kube)
	if err != nil {
		return fmt.Errorf("building the metadata client: %w", err)
	}
	tracker := driftTracker(ctx, cfg, kube, meta, applier, recorder, m)
	keeper := assignment.New(reg, kube, cfg.ClusterID, cfg.Namespace)
	rc := reconciler.New(reconciler.Config{ClusterID: cfg.ClusterID, AgentVersion: cfg.Version, Interval: cfg.Interval,
		HealthTimeout: cfg.HealthTimeout, Git: creds}, keeper, reg, kube, applier, recorder, cfg.Log, m).
		WithInfrastructure(reconciler.Infrastructure{AWS: aws, Trigger: nodes.NewTrigger(cfg.Kube, cfg.Log.WithName("trigger"))}).
		WithDrift(tracker).
		WithConfigWatch(ctx, meta).
		WithSourceMetrics(processSourceMetrics())
	cfg.Log.Info("leading: reconciling", "cluster", cfg.ClusterID, "registry", reg.Endpoint())
	return rc.Run(ctx)
}

// driftTracker watches the managed objects' metadata; it runs as long as
// this replica leads.
func driftTracker(ctx context.Context, cfg Config, kube client.Client, meta metadata.Interface, applier *apply.Applier, recorder events.Recorder, m *reconciler.Metrics) *drift.Tracker {
	return drift.New(ctx, drift.Options{Applier: applier, Metadata: meta, Mapper: kube.RESTMapper(), Kube: kube,
		Recorder: recorder, Log: cfg.Log.WithName("drift"), Metrics: m.Drift()})
}

func ensureNamespace(ctx context.Context, kube client.Client, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := kube.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// gitCredentials reads the config repo's credentials from a Secret with the
// keys username and password, or bearerToken, or identity (an SSH private
// key) and known_hosts.
func gitCredentials(ctx context.Context, kube client.Client, namespace, name string) (configrepo.Credentials, error) {
	if name == "" {
		return configrepo.Credentials{}, nil
	}
	s := &corev1.Secret{}
	if err := kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		return configrepo.Credentials{}, fmt.Errorf("reading the git credentials Secret %s/%s: %w", namespace, name, err)
	}
	return configrepo.Credentials{
		Username: string(s.Data["username"]), Password: string(s.Data["password"]), BearerToken: string(s.Data["bearerToken"]),
		SSHKey: s.Data["identity"], KnownHosts: s.Data["known_hosts"],
	}, nil
}
