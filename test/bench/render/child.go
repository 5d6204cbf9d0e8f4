//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/cli"
)

// childEnv names the spec file of a measured run: a process started with it
// runs the command line once and writes what it measured of itself. Each
// measured run is a fresh process, as when a user runs caravan, so that its
// CPU time and peak RSS are the command's alone, not the registry's or the
// git server's, which run in the benchmark's process.
const childEnv = "CARAVAN_BENCH_RENDER_CHILD"

// childSpec is what a measured process runs.
type childSpec struct {
	Args       []string `json:"args"`
	CPUProfile string   `json:"cpu_profile,omitempty"`
	Result     string   `json:"result"`
}

// childResult is what the process measured of its run of the command line.
type childResult struct {
	Exit   int           `json:"exit"`
	Wall   time.Duration `json:"wall"`
	User   time.Duration `json:"user"`
	System time.Duration `json:"system"`
	// StartRSS is the process's VmHWM before the command: the program
	// loaded and its packages initialized, in bytes.
	StartRSS int64 `json:"start_rss"`
	// PeakRSS is the process's VmHWM after the command, in bytes.
	PeakRSS int64  `json:"peak_rss"`
	Stderr  string `json:"stderr"`
}

func (r childResult) cpu() time.Duration { return r.User + r.System }

// isChild tells whether this process is a measured run.
func isChild() bool { return os.Getenv(childEnv) != "" }

// runChild runs cli.Main once with the spec's arguments, its stdout this
// process's (a file the benchmark reads), and writes the result.
func runChild() error {
	raw, err := os.ReadFile(os.Getenv(childEnv))
	if err != nil {
		return err
	}
	var spec childSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("reading the spec: %w", err)
	}
	startRSS, err := peakRSS()
	if err != nil {
		return err
	}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	var stderr bytes.Buffer
	out := bufio.NewWriterSize(os.Stdout, 64*1024)
	start := time.Now()
	exit := cli.Main(spec.Args, strings.NewReader(""), out, io.MultiWriter(&stderr, os.Stderr))
	flushErr := out.Flush()
	wall := time.Since(start)
	if spec.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	res := childResult{Exit: exit, Wall: wall, StartRSS: startRSS, Stderr: tail(stderr.String(), 4000)}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	res.User, res.System = time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
	if res.PeakRSS, err = peakRSS(); err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return errors.Join(flushErr, os.WriteFile(spec.Result, b, 0o644))
}

// peakRSS is this process's VmHWM in bytes.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// child is one measured run of the command line in a process of its own.
type child struct {
	args       []string
	dir        string // holds the spec, the result and the command's stdout
	cpuProfile string
	env        []string
}

// run starts this program again as a measured run, waits for it and
// returns its result and its stdout.
func (c child) run(ctx context.Context) (childResult, []byte, error) {
	self, err := os.Executable()
	if err != nil {
		return childResult{}, nil, fmt.Errorf("finding this program to re-run it: %w", err)
	}
	spec := childSpec{Args: c.args, CPUProfile: c.cpuProfile, Result: filepath.Join(c.dir, "result.json")}
	specPath := filepath.Join(c.dir, "spec.json")
	raw, err := json.Marshal(spec)
	if err != nil {
		return childResult{}, nil, err
	}
	if err := os.WriteFile(specPath, raw, 0o644); err != nil {
		return childResult{}, nil, err
	}
	_ = os.Remove(spec.Result)
	stdoutPath := filepath.Join(c.dir, "stdout")
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		return childResult{}, nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Env = append(cmd.Env, childEnv+"="+specPath)
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runErr := cmd.Run()
	if err := stdout.Close(); err != nil {
		return childResult{}, nil, err
	}
	if runErr != nil {
		return childResult{}, nil, fmt.Errorf("the measured process failed: %w\n%s", runErr, tail(stderr.String(), 4000))
	}
	raw, err = os.ReadFile(spec.Result)
	if err != nil {
		return childResult{}, nil, fmt.Errorf("reading the measured process's result: %w", err)
	}
	var res childResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return childResult{}, nil, err
	}
	out, err := os.ReadFile(stdoutPath)
	return res, out, err
}
