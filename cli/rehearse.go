package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/caravan-gitops/caravan/agent/rehearsal"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/pkg/version"
)

type rehearseFlags struct {
	cluster     string
	from, to    string
	kubeconfig  string
	kubeContext string
	awsEndpoint string
	timeout     time.Duration
	junit       string
	verbose     bool
	git         gitFlags
}

func (a *app) rehearseCommand() *cobra.Command {
	f := &rehearseFlags{}
	cmd := &cobra.Command{
		Use:   "rehearse --cluster ID --from BASE --to HEAD --kubeconfig FILE [--junit FILE]",
		Short: "Rehearse a change in a scratch cluster: converge to BASE, then to HEAD, then run the repo's tests",
		Long: `Rehearse a change of the config repo before it is merged, in a scratch
cluster: the end-to-end test of a pull request.

The agent's own reconcile, run once per commit from this process, converges
the scratch cluster of --kubeconfig to BASE and waits for it to be healthy,
then to HEAD and waits again, and then runs the Jobs and Pods under tests/ of
HEAD (see docs/config-repo.md), each of which must succeed. BASE and HEAD
are branches of the config repo or full commit ids. The cluster's fields,
config items and node pools come from the registry's assignment of --cluster
(a reader token suffices), without its blocks, freezes and update windows;
the registry's status of the cluster is not touched.

Everything the config applies is applied to the scratch cluster, and what
BASE has and HEAD does not is pruned there: never point --kubeconfig at a
cluster in use. Stacks are created or updated with the AWS credentials of the
environment (--aws-endpoint for an emulator); nodes are not replaced.
--timeout bounds each health wait (in place of the config item
health_timeout) and each test.

Each step is printed as it ends, PASS or FAIL with the reason; --junit writes
a JUnit XML report for CI. The exit status is 1 when any step fails.`,
		Example: `  caravan rehearse --cluster aws:123456789012:eu-central-1:kube-1 \
    --from dev --to "$(git rev-parse HEAD)" --kubeconfig kind.kubeconfig --junit rehearsal.xml
  caravan rehearse --cluster aws:123456789012:eu-central-1:kube-1 --from dev --to my-change \
    --kubeconfig scratch.kubeconfig --aws-endpoint http://localhost:5000 --timeout 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return a.rehearse(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.cluster, "cluster", "", "the cluster whose assignment the scratch cluster follows")
	fs.StringVar(&f.from, "from", "", "the base: a branch or a full commit id")
	fs.StringVar(&f.to, "to", "", "the head, the change: a branch or a full commit id")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file of the scratch cluster (required: never the current context by accident)")
	fs.StringVar(&f.kubeContext, "kube-context", "", "kubeconfig context of the scratch cluster (default: the file's current one)")
	fs.StringVar(&f.awsEndpoint, "aws-endpoint", "", "AWS endpoint URL, for an emulator such as moto")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "bound of each health wait and each test")
	fs.StringVar(&f.junit, "junit", "", "write a JUnit XML report to this file")
	fs.BoolVar(&f.verbose, "verbose", false, "write the reconciles' logs (JSON) to stderr")
	f.git.add(cmd)
	return cmd
}

func (f *rehearseFlags) check() error {
	switch {
	case f.cluster == "" || f.from == "" || f.to == "":
		return usagef("--cluster, --from and --to are required")
	case f.kubeconfig == "":
		return usagef("--kubeconfig is required: the scratch cluster is named, never taken from the current context")
	case f.timeout <= 0:
		return usagef("--timeout must be positive")
	}
	return nil
}

func (a *app) rehearse(ctx context.Context, f *rehearseFlags) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	res, err := cl.GetAssignment(ctx, f.cluster, registry.AssignmentOptions{})
	if err != nil {
		return err
	}
	creds, err := f.git.credentials(a.getenv)
	if err != nil {
		return err
	}
	kube, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: f.kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: f.kubeContext}).ClientConfig()
	if err != nil {
		return fmt.Errorf("reading the scratch cluster's kubeconfig: %w", err)
	}
	// A logger with a sink even when quiet: Flux's event recorder calls
	// the sink, which logr.Discard has none of.
	logs := io.Discard
	if f.verbose {
		logs = a.errOut
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(logs, nil))
	ctrllog.SetLogger(log)
	fmt.Fprintf(a.out, "rehearsing %s from %s to %s in the cluster at %s\n", f.cluster, f.from, f.to, kube.Host)
	result, err := rehearsal.Run(ctx, rehearsal.Options{
		Kube: kube, Assignment: *res.Assignment, Git: creds, From: f.from, To: f.to, AWSEndpoint: f.awsEndpoint,
		Timeout: f.timeout, Version: version.String(), Log: log,
		Progress: func(s rehearsal.Step) { writeStep(a.out, s) },
	})
	if err != nil {
		return err
	}
	if f.junit != "" {
		if err := writeJUnit(f.junit, result); err != nil {
			return err
		}
	}
	failed := 0
	for _, s := range result.Steps {
		if s.Failure != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("the rehearsal of %s..%s failed: %d of %s failed", configrepo.Short(result.From), configrepo.Short(result.To),
			failed, plural(len(result.Steps), "step"))
	}
	fmt.Fprintf(a.out, "the rehearsal of %s..%s passed: %s\n", configrepo.Short(result.From), configrepo.Short(result.To), plural(len(result.Steps), "step"))
	return nil
}

// writeStep prints a step as it ends, its reason indented under it.
func writeStep(w io.Writer, s rehearsal.Step) {
	verdict := "PASS"
	if s.Failure != "" {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s  %s  (%s)\n", verdict, s.Name, s.Duration.Round(100*time.Millisecond))
	if s.Failure != "" {
		fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(s.Failure, "\n", "\n      "))
	}
}

func writeJUnit(path string, r *rehearsal.Result) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the JUnit report: %w", err)
	}
	if err := r.WriteJUnit(file); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("writing the JUnit report: %w", err)
	}
	return nil
}
