//go:build linux

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// Item 2's commit changes exactly one object of the rendered 1,005.
func TestOneChangeChangesOneObject(t *testing.T) {
	dir := t.TempDir()
	if err := generateRepo(dir, "x"); err != nil {
		t.Fatal(err)
	}
	a := renderAssignment("test")
	before, err := renderFor(dir, &a)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := oneChange(dir); err != nil {
		t.Fatal(err)
	}
	after, err := renderFor(dir, &a)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for i := range before.Objects {
		if !reflect.DeepEqual(before.Objects[i].Object, after.Objects[i].Object) {
			changed = append(changed, after.Objects[i].GetKind()+" "+after.Objects[i].GetNamespace()+"/"+after.Objects[i].GetName())
		}
	}
	if len(changed) != 1 || changed[0] != "ConfigMap x-1/"+changedConfigMap {
		t.Fatalf("changed %v, want the one ConfigMap", changed)
	}
}

func TestLogSpan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	log := `{"level":"info","ts":"2026-12-06T20:40:01.000Z","msg":"fetched the commit","commit":"aaa"}
{"level":"info","ts":"2026-12-06T20:40:02.000Z","msg":"version applied and healthy","version":"aaa#1"}
not JSON, as a panic's trace would be
{"level":"info","ts":"2026-12-06T20:40:09.652Z","msg":"fetched the commit","commit":"bbb"}
{"level":"info","ts":1796589611.648,"msg":"version applied and healthy","version":"bbb#2","applied":1}
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	fetched, applied, err := logSpan(path, "bbb")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 6, 20, 40, 9, 652e6, time.UTC); !fetched.Equal(want) {
		t.Errorf("fetched at %s, want %s", fetched, want)
	}
	if got := applied.Sub(fetched).Round(time.Millisecond); got != 1996*time.Millisecond {
		t.Errorf("span %s, want 1.996s", got)
	}
	if _, _, err := logSpan(path, "ccc"); err == nil {
		t.Error("a commit the log does not name: want an error")
	}
}

func TestEditPercentileCountsMissedEditsLongest(t *testing.T) {
	o := []editOutcome{{took: 3 * time.Second, corrected: true}, {}, {took: time.Second, corrected: true}}
	if d, ok := editPercentile(o, 0.5); !ok || d != 3*time.Second {
		t.Errorf("median %s %v, want 3s", d, ok)
	}
	if _, ok := editPercentile(o, 0.99); ok {
		t.Error("p99 falls on the missed edit: want not ok")
	}
}
