//go:build linux

package main

import "testing"

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
