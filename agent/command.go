package agent

import (
	"errors"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/fluxcd/pkg/runtime/logger"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/caravan-gitops/caravan/pkg/flagenv"
	"github.com/caravan-gitops/caravan/pkg/version"
)

// Command is the caravan-agent command line.
func Command() *cobra.Command {
	cfg := Config{}
	var kubeconfig string
	logOpts := logger.Options{}
	cmd := &cobra.Command{
		Use:   "caravan-agent",
		Short: "The Caravan agent: converges its cluster on its channel",
		Long: `caravan-agent runs inside a cluster. It long-polls its assignment from the
registry, which names its channel's head commit, and when either changed it fetches
the branch, checks that it holds the commit (a commit it does not hold is reported
and not applied), renders it (config defaults, KMS-encrypted config items decrypted in memory,
CloudFormation templates, kustomize, ${VAR} substitution), updates the cluster's
CloudFormation stacks (the cluster stack, then one per node pool), applies the objects
that changed with server-side apply, prunes what left the config, waits for health,
retires node pools that left the registry (drain, then stack deletion), replaces
outdated nodes one at a time
under the drain SLA, and reports: to the registry, in the ClusterConfig object "cluster",
as Events and as metrics. Between versions it watches the metadata of what it applied
and puts back what someone else changed or deleted (config item drift_correction:
enabled, report or disabled), and leaves alone an object another field manager keeps
changing back, reporting the fight. A new version starts only inside the registry's
update_windows, a node is drained only inside its pool's node_update_windows, and a
freeze holds the cluster like a block; windows are evaluated with this agent's clock,
and a clock over a minute off the registry's is reported. With the registry down it goes
on with the last good assignment, kept in a Secret. It lists the branch itself only while
the registry names no head or cannot be reached, at most every git_poll_interval (a
config item, 10m by default), and then takes the listed head unless the channel's gate is
enforced. --registry-url may name several replicas of the registry, separated by commas:
the agent sticks to one while it answers and moves to the next when it cannot be reached
or answers 502, 503 or 504.
Every flag can also be set as CARAVAN_<FLAG>, dashes written as underscores.
The Go garbage collector runs with GOGC=50 unless GOGC is set: a smaller peak heap
for a little CPU in the agent's short bursts of work.`,
		Example: `  caravan-agent --cluster-id aws:123456789012:eu-central-1:kube-1 \
    --registry-url https://caravan.example.org --enable-leader-election`,
		Version:       version.String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PreRunE:       func(c *cobra.Command, _ []string) error { return flagenv.Apply(c.Flags()) },
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.ClusterID == "" || cfg.RegistryURL == "" {
				return errors.New("--cluster-id and --registry-url are required")
			}
			if cfg.RegistryToken == "" {
				cfg.RegistryToken = os.Getenv("CARAVAN_REGISTRY_TOKEN")
			}
			kube, err := kubeConfig(kubeconfig)
			if err != nil {
				return err
			}
			cfg.Kube, cfg.Version, cfg.Log = kube, version.String(), logger.NewLogger(logOpts)
			lowerGCTarget()
			ctx, cancel := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return Run(ctx, cfg)
		},
	}
	cmd.SetVersionTemplate(version.Template)
	fs := cmd.Flags()
	fs.StringVar(&cfg.ClusterID, "cluster-id", "", "this cluster's id in the registry, such as aws:123456789012:eu-central-1:kube-1")
	fs.StringVar(&cfg.RegistryURL, "registry-url", "", "the registry's URL, or its replicas' separated by commas (https://a.example.org,https://b.example.org)")
	fs.StringVar(&cfg.RegistryToken, "registry-token", "", "this cluster's agent token (better given as CARAVAN_REGISTRY_TOKEN)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to use; in-cluster configuration when empty")
	fs.StringVar(&cfg.Namespace, "namespace", "caravan-system", "namespace of the agent's Secrets and leader election lease")
	fs.StringVar(&cfg.GitSecret, "git-secret", "", "Secret in --namespace with the config repo's credentials (username/password, bearerToken, or identity and known_hosts)")
	fs.DurationVar(&cfg.Interval, "interval", 30*time.Second, "longest wait of one assignment long-poll; a new commit or assignment answers it at once")
	fs.DurationVar(&cfg.HealthTimeout, "health-timeout", 10*time.Minute, "longest wait for applied objects to become healthy, unless the config item health_timeout says otherwise")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&cfg.HealthAddr, "health-addr", ":9440", "address of /healthz and /readyz; 0 disables them")
	fs.StringVar(&cfg.PprofAddr, "pprof-addr", "0", "address of Go's profiles (/debug/pprof/), for finding where time and memory go; 0 disables it")
	fs.StringVar(&cfg.AWSEndpoint, "aws-endpoint", "", "endpoint of every AWS service, for an emulator; AWS's own endpoints when empty (credentials come from the SDK's default chain: IRSA, pod identity, environment)")
	cfg.LeaderElection.BindFlags(fs)
	logOpts.BindFlags(fs)
	flagenv.Annotate(fs)
	return cmd
}

// defaultGCPercent is the agent's GOGC unless the environment sets one.
// Its work comes in bursts (a render, an apply) between long idle waits, and
// a cluster pays for its peak in memory requests: a heap allowed to grow to
// 1.5 times what is live rather than twice costs a little CPU in the
// bursts and lowers that peak. Prometheus lowers its default the same way.
const defaultGCPercent = 50

func lowerGCTarget() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// kubeConfig gives both paths the same client-side rate limit: none, as
// controller-runtime's GetConfig sets in a pod; a kubeconfig alone would
// get client-go's 5 requests per second, minutes for a large first apply.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		return ctrl.GetConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, err
	}
	cfg.QPS = -1
	return cfg, nil
}
