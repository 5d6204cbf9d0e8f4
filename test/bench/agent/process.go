//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// processRun is goal 4: caravan-agent as its own process, from its start
// to its first version applied and healthy.
type processRun struct {
	phases     []phaseSeen // as the registry saw them
	total      time.Duration
	peak       int64 // VmHWM once the first version was reported
	peakPhase  string
	peakSample procMemory // the highest VmRSS sample, with its anonymous and file parts
	rssAfter   int64      // VmRSS a few seconds later
	anonAfter  int64      // of which anonymous memory
	fileAfter  int64      // and file pages, the binary's mostly
	goHeap     int64      // heap in use then, from its metrics
	goSys      int64      // memory the Go runtime holds from the OS then
	cpu        time.Duration
	version    string
	binarySize int64
	env        []string
}

type phaseSeen struct {
	phase string
	at    time.Duration // since the process started
}

// buildAgent compiles caravan-agent as `make build` does.
func buildAgent(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "caravan-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caravan-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building caravan-agent: %w\n%s", err, out)
	}
	return bin, nil
}

// measureProcess runs caravan-agent against the second cluster until the
// registry reports its first version, sampling its memory all along.
func (b *bench) measureProcess(ctx context.Context, c *cluster) error {
	r := &b.rep.process
	r.env = b.opts.agentEnv
	if err := c.prepareAgentNamespace(ctx, agentNamespace, b.fleet.Git); err != nil {
		return err
	}
	if fi, err := os.Stat(b.agentBin); err == nil {
		r.binarySize = fi.Size()
	}
	logPath := filepath.Join(b.dir, "caravan-agent.log")
	agent, err := b.startAgentProcess(processID, c.cp.Kubeconfig, logPath)
	if err != nil {
		return err
	}
	stop, pid := agent.stop, agent.pid()
	host.Progress("4. caravan-agent as a process: its first version, %s objects, into the second, empty cluster", host.Thousands(appliedObjects))

	deadline := time.After(4 * time.Minute)
	lastPhase, maxRSS := "starting", int64(0)
	for {
		select {
		case <-agent.done:
			return fmt.Errorf("caravan-agent exited (%v):\n%s", agent.waitErr, tailFile(logPath, 3000))
		case <-deadline:
			return errors.Join(fmt.Errorf("caravan-agent did not report its first version within 4 minutes; last phase %q:\n%s", lastPhase, tailFile(logPath, 3000)), stop())
		case <-ctx.Done():
			return errors.Join(ctx.Err(), stop())
		case <-time.After(100 * time.Millisecond):
		}
		if m, err := readMemory(pid); err == nil && m.rss > maxRSS {
			maxRSS, r.peakPhase, r.peakSample = m.rss, lastPhase, m
		}
		st, _, err := b.fleet.admin.GetClusterStatus(ctx, processID)
		if err != nil || st == nil {
			continue
		}
		if st.Phase != "" && st.Phase != lastPhase {
			lastPhase = st.Phase
			r.phases = append(r.phases, phaseSeen{phase: st.Phase, at: time.Since(agent.started)})
		}
		if st.Phase == api.PhaseFailed {
			return errors.Join(fmt.Errorf("caravan-agent failed: %+v", st.Problems), stop())
		}
		if st.CurrentVersion != "" && st.Phase == api.PhaseIdle {
			r.total, r.version = time.Since(agent.started), st.CurrentVersion
			break
		}
	}
	m, err := readMemory(pid)
	if err != nil {
		return errors.Join(err, stop())
	}
	r.peak = m.peak
	_, _, r.cpu, _ = procStat(pid)
	time.Sleep(3 * time.Second)
	if m, err := readMemory(pid); err == nil {
		r.rssAfter, r.anonAfter, r.fileAfter = m.rss, m.anon, m.file
	}
	if v, err := scrape(ctx, "http://"+agent.metricsAddr+"/metrics", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes"); err == nil {
		r.goHeap, r.goSys = int64(v["go_memstats_heap_inuse_bytes"]), int64(v["go_memstats_sys_bytes"])
	}
	host.Progress("   first version after %s; peak RSS %s", seconds(r.total), mib(r.peak))
	return stop()
}

// agentProcess is a running caravan-agent.
type agentProcess struct {
	cmd         *exec.Cmd
	done        chan struct{} // closed when the process ended, with its error in waitErr
	waitErr     error
	started     time.Time
	log         string
	metricsAddr string
}

// startAgentProcess runs caravan-agent as the cluster clusterID, against
// the API server of kubeconfig, with its log in logPath and the flags of
// goal 4.
func (b *bench) startAgentProcess(clusterID, kubeconfig, logPath string) (*agentProcess, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &agentProcess{log: logPath, metricsAddr: ln.Addr().String(), done: make(chan struct{})}
	ln.Close()
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(b.agentBin, "--cluster-id", clusterID, "--registry-url", b.fleet.url, "--namespace", agentNamespace,
		"--git-secret", "git", "--interval", "10s", "--health-timeout", "5m", "--metrics-addr", p.metricsAddr, "--health-addr", "0")
	// KUBECONFIG rather than --kubeconfig: the agent then builds its
	// rest.Config with controller-runtime's GetConfig, as it does in a pod.
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "CARAVAN_REGISTRY_TOKEN="+b.fleet.tokens[clusterID])
	p.cmd.Env = append(p.cmd.Env, b.opts.agentEnv...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting caravan-agent: %w", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *agentProcess) pid() int { return p.cmd.Process.Pid }

// stop ends the process with SIGTERM, as Kubernetes stops a pod.
func (p *agentProcess) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("caravan-agent did not stop within 30 s of SIGTERM; killed")
	}
}

// scrape reads a few metrics from a Prometheus endpoint, each summed over
// its labels (a counter by kind gives its total).
func scrape(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexAny(line, "{ ")
		if i <= 0 || line[0] == '#' || !slices.Contains(names, line[:i]) {
			continue
		}
		rest := line[i:]
		if strings.HasPrefix(rest, "{") {
			rest = rest[strings.LastIndexByte(rest, '}')+1:]
		}
		if f := strings.Fields(rest); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			out[line[:i]] += v
		}
	}
	return out, sc.Err()
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return tailString(string(b), n)
}
