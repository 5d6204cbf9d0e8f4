//go:build linux

package main

import (
	"bufio"
	"bytes"
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
)

// process is a server the benchmark runs apart, so that its memory and CPU
// are its own and not mixed with the load generator's.
type process struct {
	name    string
	url     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// buildCentral compiles caravan-central once, as a user would run it.
func buildCentral(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "caravan-central")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/caravan-gitops/caravan/cmd/caravan-central")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building caravan-central: %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr finds a loopback port nobody listens on. Another process could
// take it before the server does; on a benchmark machine that does not happen.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// processSpec says how to run a server and how to tell it is ready.
type processSpec struct {
	name      string
	addr      string   // where it listens
	readyPath string   // answers 200 once it serves
	logPath   string   // receives its stdout and stderr
	argv      []string // the command
	env       []string // added to this process's environment
}

// startProcess runs a server and waits until it is ready.
func startProcess(ctx context.Context, spec processSpec) (*process, error) {
	logFile, err := os.Create(spec.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", spec.name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), spec.env...)
	// The server must not outlive a benchmark that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.name, err)
	}
	p := &process{name: spec.name, url: "http://" + spec.addr, logPath: spec.logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(ctx, spec.readyPath, 60*time.Second); err != nil {
		return nil, errors.Join(err, p.stop())
	}
	return p, nil
}

func (p *process) waitReady(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
		if err != nil {
			return fmt.Errorf("probing %s: %w", p.name, err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.waitErr, p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s:\n%s", p.name, timeout, p.logTail())
		}
	}
}

// stop ends the process gracefully with SIGTERM, and kills it if it takes
// longer than its own 30 s shutdown bound.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 40 s after SIGTERM; killed", p.name)
	}
}

// logTail returns the end of the process's output, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// memory is a process's resident set now (VmRSS) and at its peak (VmHWM),
// in bytes, and, for caravan-central, what its Go runtime says of it.
type memory struct {
	rss, peak        int64
	goHeap, goStacks int64
	goroutines       int
}

func (p *process) memory() (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return memory{}, fmt.Errorf("reading the memory of %s: %w", p.name, err)
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch key {
		case "VmRSS":
			m.rss, err = parseKB(value)
		case "VmHWM":
			m.peak, err = parseKB(value)
		}
		if err != nil {
			return memory{}, fmt.Errorf("reading the memory of %s: %s: %w", p.name, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return memory{}, fmt.Errorf("reading the memory of %s: %w", p.name, err)
	}
	if m.rss == 0 || m.peak == 0 {
		return memory{}, fmt.Errorf("no VmRSS or VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	}
	return m, nil
}

// parseKB reads a /proc/*/status size such as "  123456 kB".
func parseKB(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB")), 10, 64)
	return n * 1024, err
}

// clockTicks is USER_HZ, the unit of /proc/*/stat times; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuTime is the CPU time (user and system, all threads) the process used so far.
func (p *process) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of %s: %w", p.name, err)
	}
	// The command name in parentheses may contain spaces; fields are counted after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	fields := strings.Fields(string(b[i+1:]))
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
	if len(fields) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat format")
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading the CPU time of %s: %w", p.name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// selfCPUTime is the CPU time the benchmark, that is the load generator, used so far.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPUTime is the CPU time all cores spent busy so far, from the
// first line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal.
func machineCPUTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading the machine's CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat format")
	}
	var ticks int64
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 { // idle and iowait
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading the machine's CPU time: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// raiseFileLimit lifts RLIMIT_NOFILE so that 10,000 long-polls fit, in this
// process and in the servers it starts, which inherit the limit.
func raiseFileLimit(want uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return nil
	}
	raised := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return nil
	}
	// Without privileges the hard limit is as far as it goes.
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return nil
}
