package agent_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// agentBinary is caravan-agent built once per test binary, for the tests
// that kill it as the kernel would: a real process, not a cancelled
// context.
var agentBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "caravan-agent-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "caravan-agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/caravan-gitops/caravan/cmd/caravan-agent")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", &buildError{err: err, out: out.String()}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "building caravan-agent: " + e.err.Error() + "\n" + e.out }

// agentProcess is a caravan-agent process of the fleet's cluster.
type agentProcess struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{}
	// logPath is the file of the process's log.
	logPath string
	// pprofAddr is where the process serves Go's profiles.
	pprofAddr string
}

// startAgentProcess runs caravan-agent as the fleet's in-process agent is
// configured, with its flags, its token in the environment and its log in
// the test's temporary folder, or, for a developer reading a run, in the
// folder CARAVAN_AGENT_LOG_DIR names, where it is kept.
func (f *fleet) startAgentProcess() *agentProcess {
	bin, err := agentBinary()
	require.NoError(f.t, err)
	dir := os.Getenv("CARAVAN_AGENT_LOG_DIR")
	if dir == "" {
		dir = f.t.TempDir()
	}
	log, err := os.CreateTemp(dir, "agent-*.log")
	require.NoError(f.t, err)
	pprof := metricsAddr(f.t)
	cmd := exec.Command(bin, "--cluster-id", clusterID, "--registry-url", f.central.URL, "--kubeconfig", f.cp.Kubeconfig,
		"--namespace", "caravan-system", "--git-secret", "git", "--interval", "2s", "--health-timeout", "1m",
		"--metrics-addr", "0", "--health-addr", "0", "--pprof-addr", pprof, "--aws-endpoint", f.awsEndpoint, "--log-level", "debug")
	cmd.Env = append(os.Environ(), "CARAVAN_REGISTRY_TOKEN="+f.token)
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(f.t, cmd.Start())
	p := &agentProcess{t: f.t, cmd: cmd, done: make(chan struct{}), logPath: log.Name(), pprofAddr: pprof}
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	f.t.Cleanup(p.stop)
	return p
}

// kill ends the process with SIGKILL: nothing of the agent runs after it,
// no deferred call, no lease released, no status written.
func (p *agentProcess) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
}

func (p *agentProcess) stop() { p.kill() }
