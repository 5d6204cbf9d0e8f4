package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func section(name, body string) string {
	start, end := Markers(name)
	return start + "\n## " + name + "\n\n" + body + "\n" + end + "\n"
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteSectionKeepsTheOtherSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	registry := section("registry", "figures")
	before := Header + "\n" + registry + "\nA note after it.\n"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"first", "second"} {
		if err := WriteSection(path, "agent", section("agent", s)); err != nil {
			t.Fatal(err)
		}
		got := readFile(t, path)
		want := Header + "\n" + registry + "\n" + section("agent", s) + "\nA note after it.\n"
		if got != want {
			t.Fatalf("write %d:\n%s\nwant:\n%s", i+1, got, want)
		}
		if start, _ := Markers("agent"); strings.Count(got, start) != 1 {
			t.Fatalf("write %d: %d sections", i+1, strings.Count(got, start))
		}
	}
	// A third benchmark's section goes after the last one; rewriting the
	// first leaves the order alone.
	if err := WriteSection(path, "stacks", section("stacks", "x")); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "registry", section("registry", "new")); err != nil {
		t.Fatal(err)
	}
	want := Header + "\n" + section("registry", "new") + "\n" + section("agent", "second") + "\n" + section("stacks", "x") + "\nA note after it.\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteSectionCreatesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	s := section("registry", "x")
	if err := WriteSection(path, "registry", s); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != Header+"\n"+s {
		t.Fatalf("got:\n%s", got)
	}
}

func TestWriteSectionAppendsToAFileWithoutSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte(Header+"\nSome words.\n\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := section("stacks", "x")
	if err := WriteSection(path, "stacks", s); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != Header+"\nSome words.\n\n"+s {
		t.Fatalf("got:\n%s", got)
	}
}

func TestWriteSectionRefusesUnpairedMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	start, _ := Markers("agent")
	if err := os.WriteFile(path, []byte(Header+start+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "agent", section("agent", "x")); err == nil {
		t.Fatal("want an error")
	}
	if got := readFile(t, path); got != Header+start+"\n" {
		t.Fatalf("the file changed:\n%s", got)
	}
}

func TestWriteSectionRefusesASectionWithoutItsMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := WriteSection(path, "agent", section("registry", "x")); err == nil {
		t.Fatal("want an error")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the file was written: %v", err)
	}
}
