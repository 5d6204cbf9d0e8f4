//go:build linux

package host

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

// Process is a server a benchmark runs apart, so that its memory and CPU
// are its own and not mixed with the load generator's.
type Process struct {
	Name    string
	URL     string
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// BuildCentral compiles caravan-central into dir once, as a user would run it.
func BuildCentral(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "caravan-central")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/caravan-gitops/caravan/cmd/caravan-central")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building caravan-central: %w\n%s", err, out)
	}
	return bin, nil
}

// FreeAddr finds a loopback port nobody listens on. Another process could
// take it before the server does; on a benchmark machine that does not happen.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ProcessSpec says how to run a server and how to tell it is ready.
type ProcessSpec struct {
	Name      string
	Addr      string   // where it listens
	ReadyPath string   // answers 200 once it serves
	LogPath   string   // receives its stdout and stderr, appended
	Argv      []string // the command
	Env       []string // added to this process's environment
}

// StartProcess runs a server and waits until it is ready.
func StartProcess(ctx context.Context, spec ProcessSpec) (*Process, error) {
	logFile, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", spec.Name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), spec.Env...)
	// The server must not outlive a benchmark that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	p := &Process{Name: spec.Name, URL: "http://" + spec.Addr, LogPath: spec.LogPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := p.WaitReady(ctx, spec.ReadyPath, 60*time.Second); err != nil {
		return nil, errors.Join(err, p.Stop())
	}
	return p, nil
}

// WaitReady waits until path answers 200, the process exits or the timeout runs out.
func (p *Process) WaitReady(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
		if err != nil {
			return fmt.Errorf("probing %s: %w", p.Name, err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.Name, p.waitErr, p.LogTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s:\n%s", p.Name, timeout, p.LogTail())
		}
	}
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop ends the process gracefully with SIGTERM, and kills it if it takes
// longer than its own 30 s shutdown bound.
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping %s: %w", p.Name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 40 s after SIGTERM; killed", p.Name)
	}
}

// Kill ends the process with SIGKILL, as a crash or the OOM killer would,
// and returns once it is gone.
func (p *Process) Kill() error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing %s: %w", p.Name, err)
	}
	<-p.exited
	return nil
}

// LogTail returns the end of the process's output, for error messages.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Memory is a process's resident set now (VmRSS) and at its peak (VmHWM),
// and what it is now made of: anonymous memory (the Go heap, stacks) and
// file pages (the binary's text and data), in bytes.
type Memory struct {
	RSS, Peak  int64
	Anon, File int64
}

// Memory reads the process's resident set from /proc.
func (p *Process) Memory() (Memory, error) { return MemoryOf(p.Pid(), p.Name) }

// MemoryOf reads the resident set of the process pid, called name in
// errors, from /proc.
func MemoryOf(pid int, name string) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("reading the memory of %s: %w", name, err)
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch key {
		case "VmRSS":
			m.RSS, err = parseKB(value)
		case "VmHWM":
			m.Peak, err = parseKB(value)
		case "RssAnon":
			m.Anon, err = parseKB(value)
		case "RssFile":
			m.File, err = parseKB(value)
		}
		if err != nil {
			return Memory{}, fmt.Errorf("reading the memory of %s: %s: %w", name, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("reading the memory of %s: %w", name, err)
	}
	if m.RSS == 0 || m.Peak == 0 {
		return Memory{}, fmt.Errorf("no VmRSS or VmHWM in /proc/%d/status", pid)
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

// CPUTime is the CPU time (user and system, all threads) the process used so far.
func (p *Process) CPUTime() (time.Duration, error) {
	st, err := readStat(p.Pid())
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of %s: %w", p.Name, err)
	}
	return st.cpu, nil
}

// TreeCPUTime is the CPU time the process pid used so far, with that of
// its children: those running now and those that ended and that it waited
// for, as a server's short-lived workers (PostgreSQL's backends).
func TreeCPUTime(pid int) (time.Duration, error) {
	root, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	total := root.cpu + root.children
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("listing the processes: %w", err)
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		// A process that ended since the listing has no stat: skipped.
		if st, err := readStat(child); err == nil && st.ppid == pid {
			total += st.cpu
		}
	}
	return total, nil
}

// procStat is what the benchmarks read of /proc/PID/stat.
type procStat struct {
	ppid int
	// cpu is the process's user and system time, children that of its
	// children that ended and that it waited for.
	cpu, children time.Duration
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name in parentheses may contain spaces; fields are counted after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("unexpected /proc/PID/stat format")
	}
	fields := strings.Fields(string(b[i+1:]))
	// ppid is field 4 of stat; utime, stime, cutime and cstime fields 14
	// to 17: 2, and 12 to 15 after the name.
	if len(fields) < 15 {
		return procStat{}, errors.New("unexpected /proc/PID/stat format")
	}
	n := make([]int64, 0, 5)
	for _, f := range append([]string{fields[1]}, fields[11:15]...) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		n = append(n, v)
	}
	tick := time.Second / clockTicks
	return procStat{ppid: int(n[0]), cpu: time.Duration(n[1]+n[2]) * tick, children: time.Duration(n[3]+n[4]) * tick}, nil
}

// SelfCPUTime is the CPU time the benchmark, that is the load generator, used so far.
func SelfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MachineCPUTime is the CPU time all cores spent busy so far, from the
// first line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal.
func MachineCPUTime() (time.Duration, error) {
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

// RaiseFileLimit lifts RLIMIT_NOFILE so that thousands of long-polls fit,
// in this process and in the servers it starts, which inherit the limit.
// Without privileges the hard limit is as far as it goes; the limit reached
// is returned.
func RaiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	raised := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return want, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Cur, nil
}
