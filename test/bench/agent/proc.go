//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc's CPU times (USER_HZ), 100 on Linux.
const clockTick = 10 * time.Millisecond

// cpuSet is the CPU time used so far by the parts of a measurement: this
// process (the agent's code when it runs in-process, the registry, the git
// server), and the control plane's processes, which are its children.
type cpuSet struct {
	self      time.Duration
	apiserver time.Duration
	etcd      time.Duration
	control   time.Duration // kube-controller-manager, kube-scheduler, kwok
	agent     time.Duration // the caravan-agent process, when one runs
	machine   time.Duration // every process of the machine
}

func (c cpuSet) sub(o cpuSet) cpuSet {
	return cpuSet{self: c.self - o.self, apiserver: c.apiserver - o.apiserver, etcd: c.etcd - o.etcd,
		control: c.control - o.control, agent: c.agent - o.agent, machine: c.machine - o.machine}
}

// takeCPU reads the CPU time of this process and of its children by name.
func takeCPU() cpuSet {
	var c cpuSet
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, cpu, err := procStat(pid)
		if err != nil || ppid != self {
			continue
		}
		switch comm {
		case "kube-apiserver":
			c.apiserver += cpu
		case "etcd":
			c.etcd += cpu
		case "kube-controller", "kube-scheduler", "kwok":
			c.control += cpu
		case "caravan-agent":
			c.agent += cpu
		}
	}
	c.machine, _ = machineCPU()
	return c
}

// procStat reads a process's name, parent and CPU time (user + system).
func procStat(pid int) (string, int, time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, err
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	comm := s[open+1 : closing]
	fields := strings.Fields(s[closing+1:])
	// fields[0] is the state (field 3 of proc(5)); ppid is field 4, utime 14, stime 15.
	if len(fields) < 13 {
		return "", 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, _ := strconv.Atoi(fields[1])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return comm, ppid, time.Duration(utime+stime) * clockTick, nil
}

// machineCPU is the busy time of every core since boot, from /proc/stat.
func machineCPU() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, fmt.Errorf("/proc/stat is empty")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", sc.Text())
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(f, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick, nil
}

// waitQuiet waits until the machine has been nearly idle for a second, so
// that a measurement does not share the cores with the controllers still
// working on the previous one; it returns the cores last seen busy.
func waitQuiet(ctx context.Context, maxWait time.Duration) (float64, error) {
	const idle = 0.15 // cores
	deadline := time.Now().Add(maxWait)
	for {
		before, err := machineCPU()
		if err != nil {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
		after, err := machineCPU()
		if err != nil {
			return 0, err
		}
		busy := (after - before).Seconds()
		if busy < idle || time.Now().After(deadline) {
			return busy, nil
		}
	}
}

// procMemory is a process's resident set now (VmRSS), at its peak (VmHWM),
// and what it is now made of: anonymous memory (the Go heap, stacks) and
// file pages (the binary's text and data).
type procMemory struct{ rss, peak, anon, file int64 }

func readMemory(pid int) (procMemory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMemory{}, err
	}
	defer f.Close()
	var m procMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			m.rss = parseKB(v)
		case "VmHWM":
			m.peak = parseKB(v)
		case "RssAnon":
			m.anon = parseKB(v)
		case "RssFile":
			m.file = parseKB(v)
		}
	}
	return m, sc.Err()
}

func parseKB(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB")), 10, 64)
	return n << 10
}
