package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// TestReadmeTour runs the tour of README.md as a new user does: the fleet
// that `make run` starts (this package's run, with dev's soak shortened),
// then every command of the tour in one bash, from the folder holding
// .caravan. Each command must exit as the tour says, the output the tour
// shows must have the shape of what its command printed, and the
// promotion to alpha must have landed: on the alpha branch, in the
// registry's view of the channel and in its audit log, with the gate met.
func TestReadmeTour(t *testing.T) {
	root, err := controlplane.RepoRoot()
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	tr, err := readTour(string(readme))
	require.NoError(t, err)
	for _, tool := range []string{"bash", "git", "curl", "aws"} {
		_, err := exec.LookPath(tool)
		require.NoErrorf(t, err, "the README's tour runs %s: install it", tool)
	}
	bin := buildCaravan(t.Context(), t, root)
	// The fleet starts in about 15 s and the tour takes about a minute,
	// most of it dev's soak; a gate that is never met keeps the tour's
	// loop going until this deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	work := t.TempDir()
	demoDir := filepath.Join(work, ".caravan")
	demo := startDemo(ctx, t, options{dir: demoDir, listen: "127.0.0.1:0", manifests: filepath.Join(root, "manifests"),
		bin: bin, devSoak: 20 * time.Second})
	results := runTour(ctx, t, work, tr.commands)
	t.Log("the tour:\n" + transcript(tr.commands, results))
	for i, c := range tr.commands {
		r := results[i]
		if !r.exited || r.exit != c.exit {
			t.Log("test-dev's agent, last lines:\n" + lastLines(filepath.Join(demoDir, "agent-test-dev.log"), 30))
		}
		require.Truef(t, r.exited, "README line %d: %q did not finish before the test's deadline", c.line, c.text)
		require.Equalf(t, c.exit, r.exit, "README line %d: %q exited %d, the tour says %d; it printed:\n%s", c.line, c.text, r.exit, c.exit, r.output)
	}
	require.NoError(t, demo.err(), "the demo stopped during the tour")
	for _, o := range tr.outputs {
		c := tr.commands[o.command]
		require.Equalf(t, outputShape(strings.Join(o.lines, "\n")), outputShape(results[o.command].output),
			"README line %d: the output shown for %q is not what it prints now:\n%s", c.line, c.text, results[o.command].output)
	}
	requirePromotedToAlpha(ctx, t, readDemoEnv(t, filepath.Join(demoDir, "demo.env")))
}

// buildCaravan builds the command line from this tree into a folder of its
// own, which demo.env puts first on PATH.
func buildCaravan(ctx context.Context, t *testing.T, root string) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caravan")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoErrorf(t, err, "building caravan: %s", out)
	return bin
}

// runningDemo is the demo started by startDemo.
type runningDemo struct {
	done    chan struct{}
	stopErr error
}

// err is why the demo stopped, if it did.
func (d *runningDemo) err() error {
	select {
	case <-d.done:
		return fmt.Errorf("the demo stopped: %w", d.stopErr)
	default:
		return nil
	}
}

// startDemo runs the demo until the test ends, and returns once its fleet
// runs and demo.env is written.
func startDemo(ctx context.Context, t *testing.T, o options) *runningDemo {
	t.Helper()
	ctx, stop := context.WithCancel(ctx)
	ready := make(chan struct{})
	o.ready = func() { close(ready) }
	d := &runningDemo{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.stopErr = run(ctx, o)
	}()
	t.Cleanup(func() {
		stop()
		<-d.done
	})
	select {
	case <-ready:
	case <-d.done:
		t.Fatalf("the demo stopped before its fleet ran: %v", d.stopErr)
	case <-ctx.Done():
		t.Fatalf("the demo's fleet did not run before the test's deadline: %v", ctx.Err())
	}
	return d
}

// commandResult is what one command of the tour did.
type commandResult struct {
	// exited is false for a command that did not run or did not finish.
	exited bool
	exit   int
	output string
}

// runTour runs the commands in one bash, in work, each one's output (stdout
// and stderr) into a file of its own, and stops at the first that does not
// exit as the tour says. git gets an identity and no configuration of the
// machine's; the rest of the environment is demo.env's to set.
func runTour(ctx context.Context, t *testing.T, work string, commands []tourCommand) []commandResult {
	t.Helper()
	out := t.TempDir()
	gitConfig := filepath.Join(out, "gitconfig")
	require.NoError(t, os.WriteFile(gitConfig, nil, 0o600))
	var script strings.Builder
	for i, c := range commands {
		output, exit := filepath.Join(out, fmt.Sprintf("%03d.out", i)), filepath.Join(out, fmt.Sprintf("%03d.exit", i))
		fmt.Fprintf(&script, "exec >%s 2>&1\n%s\necho $? >%s\n", shellQuote(output), c.text, shellQuote(exit))
		fmt.Fprintf(&script, "[ \"$(cat %s)\" = %d ] || exit 1\n", shellQuote(exit), c.exit)
	}
	bash := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script.String())
	bash.Dir = work
	bash.Env = append(environWithout("CARAVAN_", "AWS_", "GIT_", "KUBECONFIG="),
		"GIT_CONFIG_GLOBAL="+gitConfig, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Tour", "GIT_AUTHOR_EMAIL=tour@caravan.invalid", "GIT_COMMITTER_NAME=Tour", "GIT_COMMITTER_EMAIL=tour@caravan.invalid")
	// The tour's loops and their sleeps go with bash when the deadline passes.
	bash.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	bash.Cancel = func() error { return syscall.Kill(-bash.Process.Pid, syscall.SIGKILL) }
	bash.WaitDelay = 5 * time.Second
	err := bash.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(t, err, "running the tour in bash")
	}
	results := make([]commandResult, len(commands))
	for i := range commands {
		output, _ := os.ReadFile(filepath.Join(out, fmt.Sprintf("%03d.out", i)))
		results[i].output = string(output)
		exit, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%03d.exit", i)))
		if err != nil {
			continue
		}
		results[i].exit, err = strconv.Atoi(strings.TrimSpace(string(exit)))
		require.NoError(t, err)
		results[i].exited = true
	}
	return results
}

// environWithout is the process's environment without the variables whose
// "NAME=" starts with one of the prefixes.
func environWithout(prefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, p := range prefixes {
			keep = keep && !strings.HasPrefix(kv, p)
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// transcript is the tour as it ran, for a failure's log.
func transcript(commands []tourCommand, results []commandResult) string {
	var b strings.Builder
	for i, c := range commands {
		r := results[i]
		if !r.exited && r.output == "" {
			break
		}
		fmt.Fprintf(&b, "$ %s\n%s", c.text, r.output)
		if r.exited {
			fmt.Fprintf(&b, "[exit %d]\n", r.exit)
		}
	}
	return b.String()
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// readDemoEnv reads the NAME=VALUE lines of demo.env.
func readDemoEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if name, value, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(name, " \"$") {
			env[name] = value
		}
	}
	return env
}

// requirePromotedToAlpha checks that the tour promoted one commit of dev to
// alpha with the gate met, and that git and the registry both show it.
func requirePromotedToAlpha(ctx context.Context, t *testing.T, env map[string]string) {
	t.Helper()
	cl, err := registry.New(env["CARAVAN_SERVER"], env["CARAVAN_TOKEN"])
	require.NoError(t, err)
	entries, err := registry.All(func(p registry.Page) (*api.List[api.AuditEntry], error) {
		return cl.ListAudit(ctx, registry.AuditFilter{ResourceType: "channel", ResourceID: "alpha"}, p)
	})
	require.NoError(t, err)
	var promotions []api.Promotion
	for _, e := range entries {
		if e.Action != "promote" {
			continue
		}
		doc, err := json.Marshal(e.After)
		require.NoError(t, err)
		var p api.Promotion
		require.NoError(t, json.Unmarshal(doc, &p))
		promotions = append(promotions, p)
	}
	require.Len(t, promotions, 1, "the registry's audit log holds the tour's one promotion into alpha")
	p := promotions[0]
	require.Equal(t, "dev", p.From)
	require.True(t, p.GateMet, "the gate was met: %v", p.GateReasons)
	require.Empty(t, p.OverrideReason)
	require.NotEqual(t, p.PreviousCommit, p.Commit)

	alpha, _, err := cl.GetChannel(ctx, "alpha")
	require.NoError(t, err)
	require.NotNil(t, alpha.Head)
	require.Equal(t, p.Commit, alpha.Head.Commit, "the registry reads alpha's head as the promoted commit")

	repo := filepath.Join(t.TempDir(), "config.git")
	git := func(args ...string) string {
		out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput()
		require.NoErrorf(t, err, "git %s: %s", strings.Join(args, " "), out)
		return strings.TrimSpace(string(out))
	}
	git("clone", "--quiet", "--bare", env["CARAVAN_GIT_URL"], repo)
	require.Equal(t, p.Commit, git("-C", repo, "rev-parse", "refs/heads/alpha"), "the alpha branch is at the promoted commit")
	git("-C", repo, "merge-base", "--is-ancestor", p.Commit, "refs/heads/dev")
	git("-C", repo, "merge-base", "--is-ancestor", p.PreviousCommit, p.Commit)
}
