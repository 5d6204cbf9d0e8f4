package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Header is how BENCHMARKS.md begins when a benchmark creates it.
const Header = "# Benchmarks\n\nFigures measured by `make bench`. Each section is rewritten by its benchmark; edit outside the markers.\n"

// Markers are the lines that open and close the section of the benchmark
// name in BENCHMARKS.md: "<!-- name:start -->" and "<!-- name:end -->".
func Markers(name string) (start, end string) {
	return "<!-- " + name + ":start -->", "<!-- " + name + ":end -->"
}

// anyEnd is the closing marker of any benchmark's section.
var anyEnd = regexp.MustCompile(`<!-- [a-z0-9-]+:end -->`)

// WriteSection puts section, which opens and closes with the Markers of
// name, into the markdown file at path, keeping everything else, the other
// benchmarks' sections included. It replaces the file's section of that
// name; a file without one gets it after the last section of another
// benchmark, or at its end when it has none, so that notes written below
// the sections stay below them. A missing file is created with Header.
// The file is replaced whole, through a temporary file, or not at all.
func WriteSection(path, name, section string) error {
	startMarker, endMarker := Markers(name)
	if !strings.HasPrefix(section, startMarker) || !strings.Contains(section, endMarker) {
		return fmt.Errorf("the %s section must open with %s and close with %s", name, startMarker, endMarker)
	}
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte(Header), nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	text := string(old)
	start, end := strings.Index(text, startMarker), strings.Index(text, endMarker)
	switch {
	case start >= 0 && end > start:
		text = text[:start] + section + strings.TrimPrefix(text[end+len(endMarker):], "\n")
	case start >= 0 || end >= 0:
		return fmt.Errorf("%s: the markers %s and %s are not a pair", path, startMarker, endMarker)
	default:
		if ends := anyEnd.FindAllStringIndex(text, -1); len(ends) > 0 {
			i := ends[len(ends)-1][1]
			rest := strings.TrimLeft(text[i:], "\n")
			text = text[:i] + "\n\n" + section
			if rest != "" {
				text += "\n" + rest
			}
		} else {
			text = strings.TrimRight(text, "\n") + "\n\n" + section
		}
	}
	return replaceFile(path, text)
}

// replaceFile writes text to a temporary file beside path and renames it
// over path, so that a reader sees the old file or the new one.
func replaceFile(path, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".benchmarks-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(text)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
