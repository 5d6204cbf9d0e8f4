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
	if err := c.prepareAgentNamespace(ctx, agentNamespace, b.fleet.git); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(b.dir, "caravan-agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	if fi, err := os.Stat(b.agentBin); err == nil {
		r.binarySize = fi.Size()
	}
	cmd := exec.Command(b.agentBin, "--cluster-id", processID, "--registry-url", b.fleet.url, "--namespace", agentNamespace,
		"--git-secret", "git", "--interval", "10s", "--health-timeout", "5m", "--metrics-addr", metricsAddr, "--health-addr", "0")
	// KUBECONFIG rather than --kubeconfig: the agent then builds its
	// rest.Config with controller-runtime's GetConfig, as it does in a pod.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.cp.Kubeconfig, "CARAVAN_REGISTRY_TOKEN="+b.fleet.tokens[processID])
	cmd.Env = append(cmd.Env, b.opts.agentEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting caravan-agent: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("caravan-agent did not stop within 30 s of SIGTERM; killed")
		}
	}
	pid := cmd.Process.Pid
	host.Progress("4. caravan-agent as a process: its first version, %s objects, into the second, empty cluster", thousands(appliedObjects))

	deadline := time.After(4 * time.Minute)
	lastPhase, maxRSS := "starting", int64(0)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("caravan-agent exited (%v):\n%s", err, tailFile(logPath, 3000))
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
			r.phases = append(r.phases, phaseSeen{phase: st.Phase, at: time.Since(start)})
		}
		if st.Phase == api.PhaseFailed {
			return errors.Join(fmt.Errorf("caravan-agent failed: %+v", st.Problems), stop())
		}
		if st.CurrentVersion != "" && st.Phase == api.PhaseIdle {
			r.total, r.version = time.Since(start), st.CurrentVersion
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
	if v, err := scrape(ctx, "http://"+metricsAddr+"/metrics", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes"); err == nil {
		r.goHeap, r.goSys = int64(v["go_memstats_heap_inuse_bytes"]), int64(v["go_memstats_sys_bytes"])
	}
	host.Progress("   first version after %s; peak RSS %s", seconds(r.total), mib(r.peak))
	return stop()
}

// scrape reads a few plain metrics from a Prometheus endpoint.
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
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for _, n := range names {
			if name == n {
				out[n], _ = strconv.ParseFloat(strings.TrimSpace(value), 64)
			}
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
