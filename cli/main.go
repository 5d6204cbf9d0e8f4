// Package cli is the caravan command line: it manages the clusters, node
// pools, channels and accounts of a caravan-central registry.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/pkg/version"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

const (
	userAgentProduct = "caravan-cli"
	// cliRetryMax keeps someone at a terminal waiting a few seconds at most
	// (0.5 s, 1 s, 2 s) before an unreachable registry is reported.
	cliRetryMax = 3
)

type globalFlags struct {
	server  string
	token   string
	context string
}

// app is one run of the command line.
type app struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	getenv func(string) string
	now    func() time.Time
	flags  globalFlags
	// ran is set once a command's own code starts: every error before that
	// (unknown command or flag, wrong arguments, missing required flag) is
	// cobra refusing the command line, a usage error.
	ran bool
}

// usageError is a mistake on the command line that a command finds itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Main runs the command line with args (without the program name) and
// returns the exit code: 0 on success, 1 on an error, 2 on a usage error.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{in: stdin, out: stdout, errOut: stderr, getenv: os.Getenv, now: time.Now}
	root := a.rootCommand()
	markRuns(root, &a.ran)
	if args == nil {
		// cobra falls back to os.Args when given nil.
		args = []string{}
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var usage *usageError
	if !a.ran || errors.As(err, &usage) {
		fmt.Fprintf(stderr, "Error: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return ExitUsage
	}
	printError(stderr, err)
	return ExitError
}

func (a *app) rootCommand() *cobra.Command {
	root := group(&cobra.Command{
		Use:   "caravan",
		Short: "Manage a fleet of Kubernetes clusters registered in caravan-central",
		Long: `caravan manages the registry of a Caravan fleet: infrastructure accounts,
clusters and their node pools, release channels, update blocks, change
freezes, API tokens, and the audit log. The agent in each cluster pulls its
assignment from the registry and converges by itself, inside the cluster's
update windows; caravan talks to a cluster only when
'caravan clusters bootstrap --apply' installs the agent's chart into it
(the current kubeconfig context, or --kubeconfig and --kube-context).

The registry server and token come from, in order: the --server and --token
flags, the context named by --context, the CARAVAN_SERVER and CARAVAN_TOKEN
environment variables, and the current context of the config file
($CARAVAN_CONFIG, else ~/.config/caravan/config.yaml; see 'caravan config').
A server may be several URLs separated by commas, the replicas of one registry:
caravan moves to the next when one cannot be reached or answers 502, 503 or 504.

Exit codes: 0 success, 1 error (the registry's problem is printed on stderr),
2 usage error.`,
		Example: `  caravan config set-context prod --server https://caravan.example.org --token "$TOKEN"
  caravan clusters list --channel stable
  caravan clusters block aws:123456789012:eu-central-1:kube-1 --reason "incident 4711" --for 4h`,
		Version:       version.String(),
		SilenceErrors: true,
		SilenceUsage:  true,
	},
		a.clustersCommand(),
		a.nodePoolsCommand(),
		a.channelsCommand(),
		a.promoteCommand(),
		a.freezeCommand(),
		a.planCommand(),
		a.renderCommand(),
		a.rehearseCommand(),
		a.accountsCommand(),
		a.auditCommand(),
		a.tokensCommand(),
		a.secretsCommand(),
		a.configCommand(),
	)
	root.SetVersionTemplate(version.Template)
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.server, "server", "", "URL of the registry, or of its replicas separated by commas (overrides $"+envServer+" and the context)")
	pf.StringVar(&a.flags.token, "token", "", "API token (overrides $"+envToken+" and the context)")
	pf.StringVar(&a.flags.context, "context", "", "context of the config file to use instead of the current one")
	return root
}

// group makes a command that only holds subcommands. It runs (printing its
// help) so that an unknown subcommand reaches its Args check and fails as
// a usage error instead of printing help with success.
func group(cmd *cobra.Command, subcommands ...*cobra.Command) *cobra.Command {
	cmd.Args = unknownSubcommand
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	cmd.AddCommand(subcommands...)
	return cmd
}

func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return errors.New(msg)
}

func markRuns(cmd *cobra.Command, ran *bool) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			*ran = true
			return run(c, args)
		}
	}
	for _, sub := range cmd.Commands() {
		markRuns(sub, ran)
	}
}

// client connects to the registry chosen by flags, environment and config.
func (a *app) client() (*registry.Client, error) {
	path, cfg, err := a.readConfig()
	if err != nil {
		return nil, err
	}
	conn, err := resolveConnection(a.flags, a.getenv, cfg, path)
	if err != nil {
		return nil, err
	}
	return registry.New(conn.server, conn.token, registry.WithUserAgent(userAgentProduct+"/"+version.String()), registry.WithRetryMax(cliRetryMax))
}

// printError prints a registry problem as its title, detail and one line
// per invalid field; any other error as its message.
func printError(w io.Writer, err error) {
	var p *api.Problem
	if !errors.As(err, &p) {
		fmt.Fprintf(w, "Error: %v\n", err)
		return
	}
	fmt.Fprintf(w, "Error: %s", p.Title)
	if p.Status != 0 {
		fmt.Fprintf(w, " (HTTP %d)", p.Status)
	}
	fmt.Fprintln(w)
	if p.Detail != "" {
		fmt.Fprintln(w, p.Detail)
	}
	for _, fe := range p.Errors {
		fmt.Fprintf(w, "  %s: %s\n", fe.Field, fe.Detail)
	}
	if len(p.Errors) == 0 && p.Field != "" {
		fmt.Fprintf(w, "  field: %s\n", p.Field)
	}
}
