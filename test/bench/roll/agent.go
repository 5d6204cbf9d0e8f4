//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/apicount"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// agentNamespace is where the agent keeps its ClusterConfig and finds the
// git credentials.
const agentNamespace = "caravan-system"

// fleet is the registry, in this process, and the git server with the
// project's own manifests: what caravan-agent needs to run as in
// production.
type fleet struct {
	host.Fleet
	url   string
	admin *registry.Client
	token string // the agent's
}

// startFleet serves the project's manifests as the dev channel's branch
// and runs caravan-central on SQLite with the bench's cluster.
func startFleet(ctx context.Context, dir string, poll time.Duration) (*fleet, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	gitRoot := filepath.Join(dir, "git")
	if err := os.MkdirAll(gitRoot, 0o755); err != nil {
		return nil, err
	}
	f := &fleet{}
	if f.Git, err = gitserver.Launch(gitRoot, "caravan", "bench"); err != nil {
		return nil, err
	}
	repo, err := configRepo(root, dir)
	if err != nil {
		return nil, err
	}
	if _, err := f.Git.CreateRepo("config", repo, "dev"); err != nil {
		return nil, fmt.Errorf("creating the config repo: %w", err)
	}
	f.Registry, err = host.StartRegistry(ctx, dir, central.Config{RepositoryURL: f.Git.RepoURL("config"),
		Git: gitauth.Credentials{Username: f.Git.User, Password: f.Git.Password}})
	if err != nil {
		return nil, errors.Join(err, f.stop())
	}
	f.url, f.admin = f.Registry.URL, f.Registry.Admin
	if err := f.seed(ctx, poll); err != nil {
		return nil, errors.Join(fmt.Errorf("seeding the registry: %w", err), f.stop())
	}
	return f, nil
}

// configRepo is the project's manifests without their workloads (the
// agent's own Deployment, CoreDNS, kube-state-metrics): the stacks and the
// SLA's defaults as they are, and only the bench's pods on the pool.
func configRepo(root, dir string) (string, error) {
	repo := filepath.Join(dir, "config")
	if err := os.CopyFS(repo, os.DirFS(filepath.Join(root, "manifests"))); err != nil {
		return "", fmt.Errorf("copying the manifests: %w", err)
	}
	kustomizations := map[string]string{
		"kubernetes/base/kustomization.yaml":          "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - priority-class.yaml\n",
		"kubernetes/overlays/test/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\n",
	}
	for path, content := range kustomizations {
		if err := os.WriteFile(filepath.Join(repo, path), []byte(content), 0o600); err != nil {
			return "", err
		}
	}
	return repo, nil
}

// seed registers the account and the cluster, following dev, with the
// scaled drain SLA and surge 1 in its config items.
func (f *fleet) seed(ctx context.Context, poll time.Duration) error {
	var err error
	if f.token, err = f.Registry.Token(ctx, api.RoleAgent, clusterID); err != nil {
		return err
	}
	if _, _, err := f.admin.PatchChannel(ctx, "dev", map[string]any{"repository_url": f.Git.RepoURL("config")}, ""); err != nil {
		return err
	}
	account := "aws:" + strings.Split(clusterID, ":")[1]
	if _, _, err := f.admin.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{ID: account, Name: "bench", Owner: "bench", Environment: "test"}); err != nil {
		return err
	}
	_, _, err = f.admin.CreateCluster(ctx, &api.Cluster{ID: clusterID, InfrastructureAccount: account, Region: region,
		APIServerURL: "https://bench-roll.example.org", Environment: "test", Channel: "dev", LifecycleStatus: "ready", ConfigItems: rollItems(poll)})
	return err
}

func (f *fleet) stop() error { return f.Fleet.Stop() }

// buildAgent compiles caravan-agent as `make build` does.
func buildAgent(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "caravan-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/caravan-gitops/caravan/cmd/caravan-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building caravan-agent: %w\n%s", err, out)
	}
	return bin, nil
}

// agent is the caravan-agent process, whose API requests pass through a
// counting proxy and whose AWS calls through a recording one.
type agent struct {
	proc       *host.Process
	metricsURL string
	kube       *apicount.Proxy
	aws        *awsRecorder
	kubeconfig string
}

// startAgent prepares the agent's namespace and git credentials, as the
// Helm chart does, and runs caravan-agent with its flags.
func (w *world) startAgent(ctx context.Context) error {
	cs := w.cp.Client
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git", Namespace: agentNamespace},
		StringData: map[string]string{"username": w.fleet.Git.User, "password": w.fleet.Git.Password}}
	if _, err := cs.CoreV1().Secrets(agentNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return err
	}
	bin, err := buildAgent(ctx, w.dir)
	if err != nil {
		return err
	}
	a := &agent{kubeconfig: filepath.Join(w.dir, "agent.kubeconfig")}
	if a.kube, err = apicount.Start(w.cp.Config); err != nil {
		return err
	}
	if err := a.kube.WriteKubeconfig(a.kubeconfig); err != nil {
		return err
	}
	if a.aws, err = startAWSRecorder(w.moto.Endpoint); err != nil {
		return err
	}
	health, err := host.FreeAddr()
	if err != nil {
		return err
	}
	metrics, err := host.FreeAddr()
	if err != nil {
		return err
	}
	a.metricsURL = "http://" + metrics + "/metrics"
	w.agent = a
	a.proc, err = host.StartProcess(ctx, host.ProcessSpec{Name: "caravan-agent", Addr: health, ReadyPath: "/readyz",
		LogPath: filepath.Join(w.dir, "caravan-agent.log"),
		Argv: []string{bin, "--cluster-id", clusterID, "--registry-url", w.fleet.url, "--kubeconfig", a.kubeconfig,
			"--namespace", agentNamespace, "--git-secret", "git", "--interval", "10s", "--health-timeout", "5m",
			"--metrics-addr", metrics, "--health-addr", health, "--aws-endpoint", a.aws.url, "--log-level", "debug"},
		Env: []string{"CARAVAN_REGISTRY_TOKEN=" + w.fleet.token, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=" + region}})
	return err
}

func (a *agent) stop() error {
	var errs []error
	if a.proc != nil {
		errs = append(errs, a.proc.Stop())
	}
	if a.kube != nil {
		errs = append(errs, a.kube.Close())
	}
	if a.aws != nil {
		errs = append(errs, a.aws.close())
	}
	return errors.Join(errs...)
}

// resetPeak starts the process's VmHWM again from its resident set now
// (Linux's clear_refs 5), so that the peak read at the roll's end is the
// roll's, not that of the first version's render and apply.
func (a *agent) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", a.proc.Pid()), []byte("5"), 0)
}

// metrics reads the agent's /metrics.
func (a *agent) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the agent's metrics: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the agent's metrics: %w", err)
	}
	return families, nil
}

// reconciles is the agent's reconcile histogram: how many ran, and how
// long they took in all, in seconds.
type reconciles struct {
	count uint64
	sum   float64
}

func (a *agent) reconcileMetrics(ctx context.Context) (reconciles, error) {
	families, err := a.metrics(ctx)
	if err != nil {
		return reconciles{}, err
	}
	f, ok := families["caravan_agent_reconcile_duration_seconds"]
	if !ok || len(f.GetMetric()) != 1 {
		return reconciles{}, errors.New("the agent's /metrics has no caravan_agent_reconcile_duration_seconds")
	}
	h := f.GetMetric()[0].GetHistogram()
	return reconciles{count: h.GetSampleCount(), sum: h.GetSampleSum()}, nil
}

// rollMetrics reads the agent's roll counters: evictions by result,
// forced deletions, and the waits by the rule that held a pod back.
func (a *agent) rollMetrics(ctx context.Context) (evicted, refused, forced int, waits map[string]int, err error) {
	waits = map[string]int{}
	families, err := a.metrics(ctx)
	if err != nil {
		return 0, 0, 0, waits, err
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := int(m.GetCounter().GetValue())
			switch name {
			case "caravan_agent_evictions_total":
				if labels["result"] == "evicted" {
					evicted += v
				} else {
					refused += v
				}
			case "caravan_agent_forced_deletions_total":
				forced += v
			case "caravan_agent_force_waits_total":
				waits[labels["rule"]] += v
			}
		}
	}
	return evicted, refused, forced, waits, nil
}
