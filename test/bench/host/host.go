// Package host describes the machine a benchmark runs on and holds what the
// benchmarks share: their flags, and the rewrite of each one's marked
// section of BENCHMARKS.md, so that every section names its machine the
// same way and every benchmark leaves the others' sections alone.
package host

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the cores, CPU model, memory and kernel.
func Machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	desc := fmt.Sprintf("%d cores (nproc) of %s", runtime.NumCPU(), model)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				desc += fmt.Sprintf(", %.0f GiB", float64(kb<<10)/(1<<30))
			}
		}
	}
	if release, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		desc += ", Linux " + strings.TrimSpace(string(release))
	}
	return desc
}

// EnvList is a repeatable KEY=VALUE flag, for a measured process's environment.
type EnvList []string

func (e *EnvList) String() string { return strings.Join(*e, " ") }

// Set adds one KEY=VALUE.
func (e *EnvList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}
