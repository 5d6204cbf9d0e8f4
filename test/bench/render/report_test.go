//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func TestParseTableCountsRowsAndFailures(t *testing.T) {
	out := `CLUSTER                            CHANNEL   COMMIT    OBJECTS   STACKS   RESULT
aws:111111111111:eu-west-1:kube-1   dev       c5cea48   23        3        ok
aws:111111111111:eu-west-1:kube-0   alpha     c5cea48   0         0        FAILED: render: cloudformation/cluster.yaml:19: bad
aws:222222222222:us-east-1:kube-2   stable    c5cea48   23        2        ok
`
	got, err := parseTable(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.ok != 2 || got.failed != 1 || got.objects != 46 || got.stacks != 5 || !strings.Contains(got.firstFailure, "kube-0") {
		t.Fatalf("%+v", got)
	}
	if want := []string{"aws:111111111111:eu-west-1:kube-0", "aws:111111111111:eu-west-1:kube-1", "aws:222222222222:us-east-1:kube-2"}; strings.Join(got.ids, " ") != strings.Join(want, " ") {
		t.Fatalf("ids %v", got.ids)
	}
	clusters := []api.Cluster{{ID: got.ids[0]}, {ID: got.ids[1]}, {ID: got.ids[2]}}
	if err := checkAll(childResult{Exit: 1}, got, clusters); err == nil {
		t.Fatal("a failed render passed")
	}
	if _, err := parseTable("Error: 4 of 5 clusters failed to render\n"); err == nil {
		t.Fatal("no table passed")
	}
}

func TestCheckAllWantsEveryClusterOnce(t *testing.T) {
	rows := table{ids: []string{"a", "b"}, ok: 2}
	if err := checkAll(childResult{}, rows, []api.Cluster{{ID: "b"}, {ID: "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := checkAll(childResult{}, rows, []api.Cluster{{ID: "a"}, {ID: "b"}, {ID: "c"}}); err == nil {
		t.Fatal("a missing cluster passed")
	}
}

func TestParseRequestsByRoute(t *testing.T) {
	text := `# TYPE caravan_central_http_requests_total counter
caravan_central_http_requests_total{code="200",method="GET",route="GET /api/v1/clusters"} 10
caravan_central_http_requests_total{code="200",method="GET",route="GET /api/v1/clusters/{id}/assignment"} 998
caravan_central_http_requests_total{code="304",method="GET",route="GET /api/v1/clusters/{id}/assignment"} 2
caravan_central_http_requests_total{code="200",method="GET",route="GET /metrics"} 7
caravan_central_http_request_duration_seconds_count{method="GET",route="GET /api/v1/clusters"} 10
`
	got, err := parseRequests(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["GET /api/v1/clusters"] != 10 || got["GET /api/v1/clusters/{id}/assignment"] != 1000 {
		t.Fatalf("%v", got)
	}
	d := diffRequests(map[string]int{"GET /api/v1/clusters": 4}, got)
	if len(d) != 2 || d["GET /api/v1/clusters"] != 6 {
		t.Fatalf("%v", d)
	}
}

func TestParseTop(t *testing.T) {
	text := `File: render
Type: cpu
Duration: 4.50s, Total samples = 8.14s (180.77%)
Showing nodes accounting for 0.94s, 11.55% of 8.14s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%      7.33s 90.05%  github.com/caravan-gitops/caravan/cli.(*fleetRender).renderCluster
     0.40s  4.91%  8.72%      0.61s  7.49%  runtime.tryDeferToSpanScan
      10ms  0.12%  8.84%     4.76s 58.48%  sigs.k8s.io/yaml.Unmarshal (inline)
`
	lines, total, err := parseTop(text)
	if err != nil {
		t.Fatal(err)
	}
	if total != 8140*time.Millisecond || len(lines) != 3 {
		t.Fatalf("%v %v", total, lines)
	}
	if l := lines[2]; l.function != "sigs.k8s.io/yaml.Unmarshal" || l.flat != 10*time.Millisecond || l.cum != 4760*time.Millisecond {
		t.Fatalf("%+v", l)
	}
	if lines[0].flat != 0 || lines[0].cum != 7330*time.Millisecond {
		t.Fatalf("%+v", lines[0])
	}
}

func TestMarkdown(t *testing.T) {
	run := func(wall time.Duration) runResult {
		return runResult{childResult: childResult{Wall: wall, User: 7 * time.Second, System: time.Second, StartRSS: 90 << 20, PeakRSS: 114 << 20},
			requests: map[string]int{"GET /api/v1/clusters": 10, "GET /api/v1/clusters/{id}/assignment": 1000}, ok: 1000, objects: 23000, stacks: 2804}
	}
	r := &report{opts: options{clusters: 1000, small: 100, runs: 3, profile: true, out: "BENCHMARKS.md"}, commit: "c5cea48aaaa",
		started: time.Date(2026, 12, 6, 23, 34, 0, 0, time.UTC), shape: shape{clusters: 1000, production: 311, pools: 1804},
		one: api.Cluster{Alias: "kube-0078", Environment: "production", NodePools: make([]api.NodePool, 3)}}
	r.large.runs = []runResult{run(6 * time.Second), run(5470 * time.Millisecond), run(70 * time.Second)}
	r.profile = profileSummary{samples: 8 * time.Second, cum: map[string]time.Duration{fnStacks: 6 * time.Second, fnOutputNames: 2 * time.Second}}
	md := r.markdown()
	for _, want := range []string{
		"<!-- render:start -->\n## Render: caravan render --all over a fleet\n",
		"by `go run ./test/bench/render -out BENCHMARKS.md`",
		"| `caravan render --all` of 1,000 clusters, median wall time of 3 runs | 6.00 s | ≤ 60 s on 2 cores | yes |",
		"| `render --all` | 1,000 | 6.00 s | 6.0 ms | 7.00 s + 1.00 s | 1.33 | 114 MiB (90 MiB) | 0.00 s (0.00 s) | 1,010 |",
		"10 × `GET /api/v1/clusters` + 1,000 × `GET /api/v1/clusters/{id}/assignment`",
		"| · · CloudFormation: cluster.yaml once, node-pool.yaml twice per pool: `agent/render.Stacks` | 6.00 s | 75% |",
		"6.00 s, 5.47 s, 70.0 s",
		"The goal is met",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	if !strings.HasSuffix(md, "<!-- render:end -->\n") {
		t.Error("no end marker")
	}
	r.large.runs = []runResult{run(61 * time.Second)}
	if md := r.markdown(); !strings.Contains(md, "| 61.0 s | ≤ 60 s on 2 cores | **no** |") || !strings.Contains(md, "**not** met") {
		t.Errorf("a missed goal reads as met:\n%s", md)
	}
}
