//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSectionKeepsTheRegistrySection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	registry := "<!-- registry:start -->\n## Registry\n\nfigures\n<!-- registry:end -->\n"
	before := benchmarksDoc + "\n" + registry + "\nA note after it.\n"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	section := func(s string) string { return startMarker + "\n## Agent\n\n" + s + "\n" + endMarker + "\n" }
	for i, s := range []string{"first", "second"} {
		if err := writeSection(path, section(s)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := string(b)
		want := benchmarksDoc + "\n" + registry + "\n" + section(s) + "\nA note after it.\n"
		if got != want {
			t.Fatalf("write %d:\n%s\nwant:\n%s", i+1, got, want)
		}
		if strings.Count(got, startMarker) != 1 {
			t.Fatalf("write %d: %d sections", i+1, strings.Count(got, startMarker))
		}
	}
}

func TestWriteSectionCreatesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	section := startMarker + "\nx\n" + endMarker + "\n"
	if err := writeSection(path, section); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != benchmarksDoc+"\n"+section {
		t.Fatalf("got:\n%s", b)
	}
}

func TestWriteSectionRefusesUnpairedMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte(benchmarksDoc+startMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, startMarker+"\n"+endMarker+"\n"); err == nil {
		t.Fatal("want an error")
	}
}

func TestGeneratedRepoRendersTheObjects(t *testing.T) {
	dir := t.TempDir()
	if err := generateRepo(dir, "x"); err != nil {
		t.Fatal(err)
	}
	a := renderAssignment("test")
	r, err := renderFor(dir, &a)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range r.Objects {
		kinds[o.GetKind()]++
	}
	want := map[string]int{"Namespace": 5, "ConfigMap": 600, "Deployment": 200, "Service": 100, "Role": 50, "RoleBinding": 50}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s, want %d", kinds[k], k, n)
		}
	}
}
