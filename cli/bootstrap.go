package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v4/pkg/strvals"

	"github.com/caravan-gitops/caravan/charts"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// What `clusters bootstrap` prints.
const (
	bootstrapOutputHelm      = "helm"
	bootstrapOutputManifests = "manifests"
)

const agentRelease = "caravan-agent"

type bootstrapFlags struct {
	registryURL string
	namespace   string
	set         []string
	chart       string
	output      string
	apply       bool
	kubeconfig  string
	kubeContext string
	timeout     time.Duration
}

func (a *app) clusterBootstrapCommand() *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap ID",
		Short: "Issue a cluster's agent token and install its agent",
		Long: `Issue a new agent token for a registered cluster and install the cluster's agent
with the caravan-agent Helm chart, built into caravan: registering a cluster
('caravan clusters create') and installing it are two commands.

Without --apply, it prints the install as a shell script: a Namespace and a
Secret with the token (kubectl apply), and a 'helm upgrade --install' of
--chart with the values. With -o manifests, it prints the chart's rendered
manifests instead (the token in the chart's Secret), for kubectl apply or a
GitOps repository. With --apply, it installs (or upgrades) the release
caravan-agent itself through the Helm SDK, in the cluster of --kubeconfig and
--kube-context (the current kubeconfig context by default), and waits until
the agent is ready. The token is shown only in this output: keep it out of
logs. Each run issues a new token; revoke the old one with 'caravan tokens
revoke'.

--registry-url is the registry as the cluster reaches it, by default the
server caravan talks to. --set gives more chart values, as helm does: see
charts/caravan-agent/values.yaml (IAM role, git credentials Secret,
restricted RBAC, NetworkPolicy...).`,
		Example: `  caravan clusters bootstrap aws:123456789012:eu-central-1:kube-1 | sh
  caravan clusters bootstrap aws:123456789012:eu-central-1:kube-1 --apply --kube-context kube-1 \
    --set aws.roleARN=arn:aws:iam::123456789012:role/caravan-agent --set git.credentialsSecret=config-repo
  caravan clusters bootstrap aws:123456789012:eu-central-1:kube-1 -o manifests > agent.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.bootstrap(cmd.Context(), args[0], f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.registryURL, "registry-url", "", "the registry's URL as the cluster reaches it (default: the server caravan uses)")
	fs.StringVar(&f.namespace, "namespace", charts.AgentNamespace, "namespace of the agent")
	fs.StringArrayVar(&f.set, "set", nil, "a chart value, key=value as for helm --set (repeatable)")
	fs.StringVar(&f.chart, "chart", "charts/caravan-agent", "the chart the printed helm command installs: a path or an oci:// reference")
	fs.StringVarP(&f.output, "output", "o", bootstrapOutputHelm, "what to print without --apply: helm (a kubectl and helm script) or manifests (the rendered chart)")
	fs.BoolVar(&f.apply, "apply", false, "install the agent now, through the Helm SDK, instead of printing the install")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file for --apply (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.kubeContext, "kube-context", "", "kubeconfig context for --apply (default: the current one)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "with --apply, how long to wait for the agent to be ready")
	return cmd
}

func (f bootstrapFlags) check(clusterID string) error {
	if _, _, _, ok := api.ParseClusterID(clusterID); !ok {
		return usagef("cluster id must look like %s, got %q", exampleClusterID, clusterID)
	}
	if f.output != bootstrapOutputHelm && f.output != bootstrapOutputManifests {
		return usagef("--output must be %s or %s, got %q", bootstrapOutputHelm, bootstrapOutputManifests, f.output)
	}
	if f.apply && f.output != bootstrapOutputHelm {
		return usagef("--apply installs and prints no manifests: give --apply or --output %s, not both", f.output)
	}
	if (f.kubeconfig != "" || f.kubeContext != "") && !f.apply {
		return usagef("--kubeconfig and --kube-context are for --apply")
	}
	if f.timeout <= 0 {
		return usagef("--timeout must be positive, got %s", f.timeout)
	}
	return nil
}

func (a *app) bootstrap(ctx context.Context, clusterID string, f bootstrapFlags) error {
	if err := f.check(clusterID); err != nil {
		return err
	}
	conn, err := a.connection()
	if err != nil {
		return err
	}
	if f.registryURL == "" {
		f.registryURL = conn.server
	}
	values, err := agentValues(clusterID, f)
	if err != nil {
		return err
	}
	rel := charts.Release{Name: agentRelease, Namespace: f.namespace}
	// Values the chart refuses are found before a token is issued for nothing.
	if _, err := charts.Render(charts.Agent, rel, withToken(values, "cvn_unissued")); err != nil {
		return usagef("%v", err)
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	token, err := issueAgentToken(ctx, cl, clusterID, a.now())
	if err != nil {
		return err
	}
	fmt.Fprintf(a.errOut, "token %s (%s) issued for cluster %s; its secret is shown only in this output\n", token.ID, token.Name, clusterID)
	switch {
	case f.apply:
		return a.applyAgent(ctx, rel, withToken(values, token.Secret), f)
	case f.output == bootstrapOutputManifests:
		out, err := charts.Render(charts.Agent, rel, withToken(values, token.Secret))
		if err != nil {
			return err
		}
		_, err = io.WriteString(a.out, out)
		return err
	}
	return writeInstallScript(a.out, clusterID, token, values, f)
}

// connection is the registry server and token the command line uses.
func (a *app) connection() (connection, error) {
	path, cfg, err := a.readConfig()
	if err != nil {
		return connection{}, err
	}
	return resolveConnection(a.flags, a.getenv, cfg, path)
}

// agentValues are the chart values: the cluster and registry, then --set.
func agentValues(clusterID string, f bootstrapFlags) (map[string]any, error) {
	values := map[string]any{"clusterID": clusterID, "registry": map[string]any{"url": f.registryURL}}
	for _, s := range f.set {
		if err := strvals.ParseInto(s, values); err != nil {
			return nil, usagef("--set %s: %v", s, err)
		}
	}
	return values, nil
}

// withToken returns values with registry.token set, leaving values as they are.
func withToken(values map[string]any, token string) map[string]any {
	out := make(map[string]any, len(values))
	for k, v := range values {
		out[k] = v
	}
	reg := map[string]any{}
	if given, ok := values["registry"].(map[string]any); ok {
		for k, v := range given {
			reg[k] = v
		}
	}
	reg["token"] = token
	out["registry"] = reg
	return out
}

// issueAgentToken creates an agent token of the cluster, named after it and
// the time, once the cluster is known to exist.
func issueAgentToken(ctx context.Context, cl *registry.Client, clusterID string, now time.Time) (*api.Token, error) {
	if _, _, err := cl.GetCluster(ctx, clusterID); err != nil {
		return nil, fmt.Errorf("reading cluster %s: %w", clusterID, err)
	}
	name := "agent-" + strings.ReplaceAll(clusterID, ":", "-") + "-" + now.UTC().Format("20060102T150405Z")
	t, err := cl.CreateToken(ctx, registry.TokenRequest{Name: name, Role: api.RoleAgent, ClusterID: clusterID})
	if err != nil {
		return nil, fmt.Errorf("issuing the agent token of %s: %w", clusterID, err)
	}
	return t, nil
}

func (a *app) applyAgent(ctx context.Context, rel charts.Release, values map[string]any, f bootstrapFlags) error {
	r, err := charts.Apply(ctx, charts.Cluster{Kubeconfig: f.kubeconfig, Context: f.kubeContext}, charts.Agent, rel, values,
		charts.ApplyOptions{Timeout: f.timeout, Log: slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: slog.LevelWarn})})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.out, "release %s revision %d: the agent of %s runs in namespace %s\n", r.Name, r.Version, values["clusterID"], r.Namespace)
	return nil
}

// tokenSecret is the Secret the chart's Deployment reads the token from:
// registry.tokenSecret when --set gives it, else the chart's default.
func tokenSecret(values map[string]any) (name, key string) {
	name, key = "caravan-agent", "registry-token"
	reg, _ := values["registry"].(map[string]any)
	ref, _ := reg["tokenSecret"].(map[string]any)
	if s, ok := ref["name"].(string); ok && s != "" {
		name = s
	}
	if s, ok := ref["key"].(string); ok && s != "" {
		key = s
	}
	return name, key
}

// helmEscape keeps a value whole for helm --set, which splits at commas:
// several registry URLs are one comma-separated value.
func helmEscape(value string) string { return strings.ReplaceAll(value, ",", `\,`) }

// writeInstallScript prints the install as a shell script: the Namespace
// and the token's Secret through kubectl, then helm with the values.
func writeInstallScript(w io.Writer, clusterID string, token *api.Token, values map[string]any, f bootstrapFlags) error {
	secret, key := tokenSecret(values)
	args := []string{"helm", "upgrade", "--install", agentRelease, shellQuote(f.chart), "--namespace", shellQuote(f.namespace),
		"--set", shellQuote("clusterID=" + clusterID), "--set", shellQuote("registry.url=" + helmEscape(f.registryURL))}
	for _, s := range f.set {
		args = append(args, "--set", shellQuote(s))
	}
	_, err := fmt.Fprintf(w, `# The Caravan agent of cluster %s, with its agent token %s.
# The token is shown only here.
kubectl apply --server-side -f - <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: %s
---
apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: %s
type: Opaque
stringData:
  %s: %s
EOF
%s --wait
`, clusterID, token.Name, f.namespace, secret, f.namespace, key, token.Secret, strings.Join(args, " "))
	return err
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe
// characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
