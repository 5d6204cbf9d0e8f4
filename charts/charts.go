// Package charts holds Caravan's Helm charts, caravan-agent and
// caravan-central, built into the binaries so that `caravan clusters
// bootstrap` installs the agent without a chart repository, and the Helm
// SDK calls that render and install them.
package charts

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// The charts' names, which are also their folders.
const (
	Agent   = "caravan-agent"
	Central = "caravan-central"
)

// AgentNamespace is where the agent runs, the agent's --namespace default.
const AgentNamespace = "caravan-system"

//go:embed all:caravan-agent all:caravan-central
var files embed.FS

// Load reads one of the charts built into the binary.
func Load(name string) (*chart.Chart, error) {
	if name != Agent && name != Central {
		return nil, fmt.Errorf("no chart %q: the charts are %s and %s", name, Agent, Central)
	}
	var buffered []*archive.BufferedFile
	err := fs.WalkDir(files, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		buffered = append(buffered, &archive.BufferedFile{Name: strings.TrimPrefix(p, name+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", name, err)
	}
	c, err := loader.LoadFiles(buffered)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", name, err)
	}
	return c, nil
}

// Release names where the chart is installed.
type Release struct {
	Name      string
	Namespace string
}

// Render renders a chart as `helm template` does, without a cluster: the
// manifests (CustomResourceDefinitions first) and then the hooks, as one
// YAML stream. The values are checked against the chart's schema.
func Render(chartName string, rel Release, values map[string]any) (string, error) {
	c, err := Load(chartName)
	if err != nil {
		return "", err
	}
	install := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(discardLogs)))
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName, install.Namespace = rel.Name, rel.Namespace
	install.IncludeCRDs = true
	r, err := install.Run(c, values)
	if err != nil {
		return "", fmt.Errorf("rendering chart %s: %w", chartName, err)
	}
	out, err := asRelease(r)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(out.Manifest)
	for _, h := range out.Hooks {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return b.String(), nil
}

// Cluster is where Apply installs: a kubeconfig file (empty: the default
// loading rules, $KUBECONFIG then ~/.kube/config) and one of its contexts
// (empty: the current one).
type Cluster struct {
	Kubeconfig string
	Context    string
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Timeout bounds the wait for the release's objects to become ready
	// (Deployments available, hooks done).
	Timeout time.Duration
	// Log receives Helm's messages; none when nil.
	Log slog.Handler
}

// Apply installs a chart built into the binary, or upgrades its release
// when it is installed already, as `helm upgrade --install --wait` does,
// creating the namespace when it is missing. It returns the release.
func Apply(ctx context.Context, cluster Cluster, chartName string, rel Release, values map[string]any, opts ApplyOptions) (*release.Release, error) {
	c, err := Load(chartName)
	if err != nil {
		return nil, err
	}
	cfg, err := configuration(cluster, rel.Namespace, opts.Log)
	if err != nil {
		return nil, err
	}
	installed, err := isInstalled(cfg, rel.Name)
	if err != nil {
		return nil, err
	}
	var r any
	if installed {
		upgrade := action.NewUpgrade(cfg)
		upgrade.Namespace, upgrade.Timeout, upgrade.WaitStrategy = rel.Namespace, opts.Timeout, kube.StatusWatcherStrategy
		r, err = upgrade.RunWithContext(ctx, rel.Name, c, values)
	} else {
		install := action.NewInstall(cfg)
		install.ReleaseName, install.Namespace, install.CreateNamespace = rel.Name, rel.Namespace, true
		install.Timeout, install.WaitStrategy = opts.Timeout, kube.StatusWatcherStrategy
		r, err = install.RunWithContext(ctx, c, values)
	}
	if err != nil {
		return nil, fmt.Errorf("installing chart %s as release %s in namespace %s: %w", chartName, rel.Name, rel.Namespace, err)
	}
	return asRelease(r)
}

func configuration(cluster Cluster, namespace string, log slog.Handler) (*action.Configuration, error) {
	if log == nil {
		log = discardLogs
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig, flags.Context, flags.Namespace = &cluster.Kubeconfig, &cluster.Context, &namespace
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(log))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return cfg, nil
}

func isInstalled(cfg *action.Configuration, name string) (bool, error) {
	_, err := action.NewHistory(cfg).Run(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, driver.ErrReleaseNotFound):
		return false, nil
	}
	return false, fmt.Errorf("reading the history of release %s: %w", name, err)
}

func asRelease(r any) (*release.Release, error) {
	rel, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a release of type %T", r)
	}
	return rel, nil
}

var discardLogs = slog.NewTextHandler(io.Discard, nil)
