//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

func TestNoopRefusesChanges(t *testing.T) {
	if err := noop(stepRun{calls: map[string]int{"CloudFormation.DescribeStacks": 1}}); err != nil {
		t.Fatal(err)
	}
	for _, run := range []stepRun{
		{calls: map[string]int{"CloudFormation.DescribeStacks": 1, "CloudFormation.UpdateStack": 1}},
		{calls: map[string]int{"S3.PutObject": 1}},
		{changed: []string{"kube-1"}},
		{orphans: []string{"old"}},
	} {
		if err := noop(run); err == nil {
			t.Errorf("%+v: want an error", run)
		}
	}
}

func TestTheClusterRendersSixStacks(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := os.DirFS(filepath.Join(root, "manifests"))
	a, err := assignment(nodePools())
	if err != nil {
		t.Fatal(err)
	}
	items, err := render.ConfigItems(files, a)
	if err != nil {
		t.Fatal(err)
	}
	cluster, _, err := render.Stacks(files, a, items)
	if err != nil || cluster == nil {
		t.Fatalf("%v, %v", cluster, err)
	}
	if got := 1 + len(a.NodePools); got != stacksInPlay {
		t.Fatalf("%d stacks, want %d", got, stacksInPlay)
	}
}

func TestCallList(t *testing.T) {
	got := callList(map[string]float64{"CloudFormation.UpdateStack": 1, "CloudFormation.DescribeStacks": 0.05 * 20})
	if want := "1 × `CloudFormation.DescribeStacks` + 1 × `CloudFormation.UpdateStack`"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
