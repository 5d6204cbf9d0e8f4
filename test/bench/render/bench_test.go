//go:build linux

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary be the measured process, as the program is.
func TestMain(m *testing.M) {
	if isChild() {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchOfATinyFleet runs the whole benchmark on 6 clusters: every
// command, the profile and the report.
func TestBenchOfATinyFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry, a git server and a dozen processes")
	}
	o, err := parseOptions([]string{"-clusters", "6", "-small", "2", "-runs", "1"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := bench(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]measurement{"small": rep.small, "large": rep.large, "out": rep.out} {
		run := m.median()
		n := map[string]int{"small": 2, "large": 6, "out": 6}[name]
		if run.ok != n || run.failed != 0 || run.requests["GET /api/v1/clusters/{id}/assignment"] != n {
			t.Errorf("%s: %d ok, %d failed, requests %v", name, run.ok, run.failed, run.requests)
		}
		if run.Wall <= 0 || run.cpu() <= 0 || run.PeakRSS < run.StartRSS || run.StartRSS <= 0 {
			t.Errorf("%s: %+v", name, run.childResult)
		}
	}
	// Each cluster's folder: manifests.yaml, config-items.yaml, the cluster stack and one stack per pool.
	if out := rep.out.median(); out.outFiles != 2*6+out.stacks {
		t.Errorf("--out wrote %d files for %d stacks", out.outFiles, out.stacks)
	}
	if one := rep.single.median(); one.objects < 10 || one.requests["GET /api/v1/clusters/{id}/assignment"] != 1 {
		t.Errorf("render --cluster: %d objects, requests %v", one.objects, one.requests)
	}
	if rep.profile.samples < 0 || len(rep.profile.run.requests) == 0 {
		t.Errorf("profile: %+v", rep.profile)
	}
	md := rep.markdown()
	if !strings.Contains(md, "| `render --all` | 6 |") || !strings.Contains(md, "not measured (6 clusters, not 1,000)") {
		t.Errorf("report:\n%s", md)
	}
}
