// Command demo is what `make run` starts: a local fleet made of the real
// parts. caravan-central with the demo fleet, a git server holding the
// config repo (manifests/) with one branch per channel, and two local
// clusters (a control plane each, with kwok nodes) whose agents follow
// different channels, and moto, the AWS emulator, where those agents keep
// their clusters' CloudFormation stacks. A cloud bridge per cluster plays
// cloud-controller-manager: the instances moto launches for a node pool
// become the cluster's Nodes, so a pool change rolls real (kwok) nodes.
// The git server announces every push to the registry's webhook, and the
// demo clusters without an agent are registered but not in service, so
// the promotion gate weighs the live clusters alone. Ctrl-C stops everything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fluxcd/pkg/runtime/leaderelection"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent"
	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
	"github.com/caravan-gitops/caravan/test/moto"
)

// options are the demo's settings.
type options struct {
	// dir holds the demo's state, demo.env and the kubeconfigs.
	dir       string
	listen    string
	manifests string
	// bin holds the caravan command that demo.env puts on PATH.
	bin string
	// devSoak is the promotion_soak of channel dev.
	devSoak time.Duration
	// ready, when set, is called once the fleet runs and demo.env is written.
	ready func()
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", ".caravan", "folder for the demo's state, demo.env and kubeconfigs")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the registry")
	flag.StringVar(&o.manifests, "manifests", "manifests", "the reference config repo to serve")
	flag.StringVar(&o.bin, "bin", "bin", "folder of the caravan command (make build's), which demo.env puts on PATH")
	flag.DurationVar(&o.devSoak, "dev-soak", time.Minute, "promotion_soak of channel dev: how long test-dev runs a commit before it may be promoted to alpha")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return fmt.Errorf("the demo's git server announces pushes to the registry with curl: install curl: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "run")); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	region := liveCluster(liveClusters[0]).Region
	aws, err := startMoto(ctx, region)
	if err != nil {
		return err
	}
	defer aws.Stop()

	git, err := gitserver.Launch(filepath.Join(dir, "run", "git"), "caravan", "demo")
	if err != nil {
		return err
	}
	defer git.Close()
	if err := os.MkdirAll(git.Root, 0o755); err != nil {
		return err
	}
	if _, err := git.CreateRepo("config", o.manifests, "dev", "alpha", "beta", "stable"); err != nil {
		return fmt.Errorf("creating the config repo: %w", err)
	}

	database := "sqlite://" + filepath.Join(dir, "run", "registry.db")
	adminToken, agentTokens, err := seed(ctx, database, git.RepoURL("config"), o.devSoak)
	if err != nil {
		return err
	}
	webhookSecret, err := newWebhookSecret()
	if err != nil {
		return err
	}
	addr := make(chan string, 1)
	centralDone := make(chan error, 1)
	go func() {
		centralDone <- central.Run(ctx, central.Config{Listen: o.listen, Database: database, Logger: log,
			Git: gitauth.Credentials{Username: git.User, Password: git.Password}, WebhookSecret: webhookSecret,
			Ready: func(a string) { addr <- a }})
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case err := <-centralDone:
		return fmt.Errorf("starting caravan-central: %w", err)
	}
	if err := installPushHook(filepath.Join(git.Root, "config.git"), url, webhookSecret); err != nil {
		return err
	}

	agentsDone := make(chan error, len(liveClusters))
	for _, alias := range liveClusters {
		cp, err := startCluster(ctx, dir, alias, git)
		if err != nil {
			return err
		}
		defer cp.Stop()
		id := clusterID(alias)
		bridge, err := cloudbridge.Start(ctx, cloudbridge.Config{AWS: aws.AWSConfig(liveCluster(alias).Region), ClusterID: id,
			Kube: cp.Client, Interval: 2 * time.Second, Log: bridgeLog(dir, alias)})
		if err != nil {
			return fmt.Errorf("starting the cloud bridge of %s: %w", alias, err)
		}
		defer bridge.Stop()
		go func() {
			agentsDone <- agent.Run(ctx, agent.Config{
				ClusterID: id, RegistryURL: url, RegistryToken: agentTokens[id], Kube: cp.Config, Namespace: "caravan-system",
				GitSecret: "git", Interval: 5 * time.Second, HealthTimeout: 5 * time.Minute, MetricsAddr: "0", HealthAddr: "0",
				LeaderElection: leaderelection.Options{}, AWSEndpoint: aws.Endpoint, Version: "demo",
				Log: logr.FromSlogHandler(slog.NewJSONHandler(agentLog(dir, alias), nil).WithAttrs([]slog.Attr{slog.String("cluster", alias)})),
			})
		}()
	}
	if err := linkKubectl(dir); err != nil {
		return err
	}
	if err := writeEnv(dir, bin, url, adminToken, git, aws.Endpoint, region); err != nil {
		return err
	}
	announce(os.Stdout, dir, url, adminToken, git, aws.Endpoint, region, o.devSoak)
	if o.ready != nil {
		o.ready()
	}
	select {
	case <-ctx.Done():
	case err := <-centralDone:
		return err
	case err := <-agentsDone:
		return fmt.Errorf("an agent stopped: %w", err)
	}
	fmt.Println("\nstopping the demo")
	return nil
}

// startMoto runs moto, the AWS emulator that holds the live clusters'
// stacks. moto gets none of the caller's AWS settings (nor does the demo
// reach a real AWS account); once it runs, this process takes moto's test
// credentials, which the agents' SDK reads from the environment.
func startMoto(ctx context.Context, region string) (*moto.Server, error) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "AWS_") {
			os.Unsetenv(name)
		}
	}
	fmt.Println("starting moto ...")
	srv, err := moto.Launch(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting moto, the AWS emulator (make test-deps installs it): %w", err)
	}
	for _, kv := range awsEnv(region) {
		if err := os.Setenv(kv[0], kv[1]); err != nil {
			srv.Stop()
			return nil, err
		}
	}
	return srv, nil
}

// awsEnv is the environment of an AWS SDK or CLI that talks to moto.
func awsEnv(region string) [][2]string {
	return [][2]string{{"AWS_ACCESS_KEY_ID", "testing"}, {"AWS_SECRET_ACCESS_KEY", "testing"}, {"AWS_REGION", region}, {"AWS_DEFAULT_REGION", region}}
}

// startCluster runs a control plane with three kwok nodes of no node pool,
// where the system workloads (coredns, kube-state-metrics, the agent's
// Deployment) find room before the pools' instances are up and while a
// pool rolls; the pools' Nodes are the cloud bridge's. It writes the
// kubeconfig as DIR/kubeconfig-ALIAS and the git credentials its agent reads.
func startCluster(ctx context.Context, dir, alias string, git *gitserver.Server) (*controlplane.ControlPlane, error) {
	fmt.Printf("starting cluster %s ...\n", alias)
	cp, err := controlplane.Launch(ctx, filepath.Join(dir, "run", alias))
	if err != nil {
		return nil, fmt.Errorf("starting cluster %s: %w", alias, err)
	}
	for i := range 3 {
		if _, err := cp.AddNode(ctx, controlplane.Node{Name: fmt.Sprintf("%s-node-%d", alias, i)}); err != nil {
			cp.Stop()
			return nil, err
		}
	}
	kubeconfig, err := os.ReadFile(cp.Kubeconfig)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "kubeconfig-"+alias), kubeconfig, 0o600)
	}
	if err == nil {
		_, err = cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "caravan-system"}}, metav1.CreateOptions{})
	}
	if err == nil {
		_, err = cp.Client.CoreV1().Secrets("caravan-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git"},
			StringData: map[string]string{"username": git.User, "password": git.Password}}, metav1.CreateOptions{})
	}
	if err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func agentLog(dir, alias string) io.Writer {
	f, err := os.Create(filepath.Join(dir, "agent-"+alias+".log"))
	if err != nil {
		return os.Stderr
	}
	return f
}

// bridgeLog writes what a cluster's cloud bridge does (Nodes created and
// deleted) to DIR/cloudbridge-ALIAS.log.
func bridgeLog(dir, alias string) func(format string, args ...any) {
	w := io.Writer(os.Stderr)
	if f, err := os.Create(filepath.Join(dir, "cloudbridge-"+alias+".log")); err == nil {
		w = f
	}
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
	}
}

// writeEnv writes DIR/demo.env, which a shell sources to use the demo: the
// registry and its admin token, the config repo's URL (with the
// credentials in it, for the git command) and the same credentials as
// caravan reads them (CARAVAN_GIT_USERNAME and CARAVAN_GIT_PASSWORD, for
// caravan promote, render and rehearse), moto's endpoint and test
// credentials, and PATH with caravan and the demo's kubectl first.
func writeEnv(dir, bin, url, token string, git *gitserver.Server, awsEndpoint, region string) error {
	vars := [][2]string{{"CARAVAN_SERVER", url}, {"CARAVAN_TOKEN", token}, {"CARAVAN_GIT_URL", git.AuthURL("config")},
		{"CARAVAN_GIT_USERNAME", git.User}, {"CARAVAN_GIT_PASSWORD", git.Password}, {"CARAVAN_AWS_ENDPOINT", awsEndpoint}}
	vars = append(vars, awsEnv(region)...)
	var env strings.Builder
	names := make([]string, 0, len(vars))
	for _, kv := range vars {
		fmt.Fprintf(&env, "%s=%s\n", kv[0], kv[1])
		names = append(names, kv[0])
	}
	fmt.Fprintf(&env, "export %s\n", strings.Join(names, " "))
	// moto's credentials, not a profile's or a session's.
	env.WriteString("unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN\n")
	fmt.Fprintf(&env, "PATH=%q:%q:\"$PATH\"\n", bin, filepath.Join(dir, "bin"))
	return os.WriteFile(filepath.Join(dir, "demo.env"), []byte(env.String()), 0o600)
}

// linkKubectl links the test control plane's kubectl, of the clusters'
// own Kubernetes version, as DIR/bin/kubectl.
func linkKubectl(dir string) error {
	tools, err := controlplane.BinDir()
	if err != nil {
		return err
	}
	kubectl := filepath.Join(tools, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		return fmt.Errorf("the demo's kubectl is missing: run `make tools`: %w", err)
	}
	link := filepath.Join(dir, "bin", "kubectl")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Symlink(kubectl, link)
}

func announce(w io.Writer, dir, url, token string, git *gitserver.Server, awsEndpoint, region string, devSoak time.Duration) {
	rel := func(p string) string {
		if cwd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(cwd, p); err == nil && !strings.HasPrefix(r, "..") {
				return r
			}
		}
		return p
	}
	env := rel(filepath.Join(dir, "demo.env"))
	kubeconfig, id := rel(filepath.Join(dir, "kubeconfig-"+liveClusters[0])), clusterID(liveClusters[0])
	fmt.Fprintf(w, `
Caravan demo fleet is running.

  registry:     %s   (admin token %s)
  config repo:  %s   (branches dev, alpha, beta, stable; a push reaches the registry at once)
  clusters:     %s follows dev, %s follows stable; agents log to %s/agent-*.log
                (the others have no agent and are not in service: lifecycle_status requested)
  AWS (moto):   %s   (account %s, %s): the clusters' stacks; the node pools'
                instances become the clusters' Nodes (%s/cloudbridge-*.log)

Try, in another terminal:
  . %s
  caravan clusters list
  git clone -b dev "$CARAVAN_GIT_URL" config && cd config
  # change kubernetes/base, commit, git push origin dev, and watch:
  caravan clusters list --channel dev
  kubectl --kubeconfig %s get clusterconfig,deploy -A
  # once %s has run the commit for dev's promotion_soak (%s), the gate is met:
  caravan promote dev alpha --dry-run
  caravan promote dev alpha

The stacks, and the versions of a node pool's launch template:
  aws --endpoint-url "$CARAVAN_AWS_ENDPOINT" cloudformation describe-stacks --query 'Stacks[].[StackName,StackStatus]' --output text
  aws --endpoint-url "$CARAVAN_AWS_ENDPOINT" ec2 describe-launch-template-versions --launch-template-name nodepool-default-worker-%s \
    --query 'LaunchTemplateVersions[].[VersionNumber,LaunchTemplateData.InstanceType]' --output text
  # a pool change, or a commit that changes what a node gets (node-pool.yaml, node_volume_size...), adds a version

Roll a node pool: %s has a short drain SLA, so a new instance type replaces the pool's
nodes in a few minutes (a surge node, then each old node marked, drained and terminated):
  caravan nodepools patch %s default-worker --patch '{"instance_types":["m5.xlarge"]}'
  kubectl --kubeconfig %s get nodes -L node.kubernetes.io/instance-type,lifecycle-status -w
  caravan clusters status %s

Ctrl-C stops everything.
`, url, token, git.RepoURL("config"), liveClusters[0], liveClusters[1], rel(dir), awsEndpoint, moto.AccountID, region, rel(dir),
		env, kubeconfig, liveClusters[0], channels.FormatDuration(devSoak), liveClusters[0], liveClusters[0], id, kubeconfig, id)
}
