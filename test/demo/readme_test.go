package main

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's tour lies between these markers: its sh blocks are the
// commands a new user runs in `make run`'s fleet, its text blocks the
// output they see.
const (
	tourBegin = "<!-- tour"
	tourEnd   = "<!-- /tour -->"
)

// tour is the README's tour.
type tour struct {
	commands []tourCommand
	outputs  []tourOutput
}

// tourCommand is one command of the tour, continuation lines included.
type tourCommand struct {
	text string
	// exit is the status the command must exit with: the N of an
	// "exits N" in its comment, else 0.
	exit int
	// line is where the command starts in the README.
	line int
}

// tourOutput is a text block of the tour: what command printed, in shape.
type tourOutput struct {
	// command is the index of the command whose output this is.
	command int
	lines   []string
}

var exitComment = regexp.MustCompile(`\s#\s.*\bexits (\d+)\b`)

// readTour reads the tour from the README's text. A text block must start
// with "$ COMMAND", COMMAND being the last command of the sh block before it.
func readTour(readme string) (tour, error) {
	var t tour
	var block string // the language of the fenced block the scanner is in
	var pending strings.Builder
	pendingLine, inTour, seen := 0, false, false
	var output *tourOutput
	sc := bufio.NewScanner(strings.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case !inTour && strings.HasPrefix(line, tourBegin):
			if seen {
				return tour{}, fmt.Errorf("line %d: a second tour; the README has one", n)
			}
			inTour, seen = true, true
		case !inTour:
		case block == "" && line == tourEnd:
			inTour = false
		case block == "" && strings.HasPrefix(line, "```"):
			block = strings.TrimPrefix(line, "```")
			if block != "sh" && block != "text" {
				return tour{}, fmt.Errorf("line %d: a %q block in the tour, which holds sh and text blocks only", n, block)
			}
		case line == "```":
			if pending.Len() > 0 {
				return tour{}, fmt.Errorf("line %d: the block ends inside a continued command", n)
			}
			if output != nil {
				t.outputs = append(t.outputs, *output)
				output = nil
			}
			block = ""
		case block == "sh":
			if pending.Len() == 0 {
				trimmed := strings.TrimSpace(line)
				if trimmed == "" || strings.HasPrefix(trimmed, "#") {
					continue
				}
				pendingLine = n
			}
			pending.WriteString(line)
			if strings.HasSuffix(line, `\`) {
				pending.WriteString("\n")
				continue
			}
			cmd, err := newTourCommand(pending.String(), pendingLine)
			if err != nil {
				return tour{}, err
			}
			t.commands = append(t.commands, cmd)
			pending.Reset()
		case block == "text" && output == nil:
			command, ok := strings.CutPrefix(line, "$ ")
			if !ok || len(t.commands) == 0 || t.commands[len(t.commands)-1].text != command {
				return tour{}, fmt.Errorf("line %d: a text block of the tour starts with \"$ \" and the last command before it", n)
			}
			output = &tourOutput{command: len(t.commands) - 1}
		case block == "text":
			output.lines = append(output.lines, line)
		}
	}
	switch {
	case sc.Err() != nil:
		return tour{}, sc.Err()
	case !seen:
		return tour{}, fmt.Errorf("no tour: the README marks it with %q ... %q", tourBegin+" -->", tourEnd)
	case inTour:
		return tour{}, fmt.Errorf("the tour does not end: %q is missing", tourEnd)
	}
	return t, nil
}

func newTourCommand(text string, line int) (tourCommand, error) {
	cmd := tourCommand{text: text, line: line}
	if m := exitComment.FindStringSubmatch(text); m != nil {
		exit, err := strconv.Atoi(m[1])
		if err != nil {
			return tourCommand{}, fmt.Errorf("line %d: %w", line, err)
		}
		cmd.exit = exit
	}
	return cmd, nil
}

var (
	spaces  = regexp.MustCompile(`\s+`)
	commits = regexp.MustCompile(`\b[0-9a-f]{7,40}\b`)
	ages    = regexp.MustCompile(`\b(\d+(\.\d+)?(ns|µs|us|ms|s|m|h|d))+\b`)
)

// outputShape is text as a reader compares it with the README: commits and
// durations stand for any, runs of blanks (a table's column widths) for one.
func outputShape(text string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		line = commits.ReplaceAllString(line, "<commit>")
		line = ages.ReplaceAllString(line, "<age>")
		out = append(out, strings.TrimSpace(spaces.ReplaceAllString(line, " ")))
	}
	return out
}

func TestReadTourTakesTheMarkedBlocks(t *testing.T) {
	readme := "# Demo\n```sh\nnot-in-the-tour\n```\n" +
		"<!-- tour: what the test runs -->\n" +
		"```sh\n. env\n# a comment\n\ncaravan config set ID KEY \\\n  \"value\"\ncaravan promote a b   # the gate\n```\n" +
		"between the blocks\n" +
		"```text\n$ caravan promote a b   # the gate\nverdict: met\n```\n" +
		"```sh\ncaravan promote b c --dry-run   # exits 1: frozen\n```\n" +
		"<!-- /tour -->\n```sh\nafter-the-tour\n```\n"
	tr, err := readTour(readme)
	require.NoError(t, err)
	require.Equal(t, []tourCommand{
		{text: ". env", line: 7},
		{text: "caravan config set ID KEY \\\n  \"value\"", line: 10},
		{text: "caravan promote a b   # the gate", line: 12},
		{text: "caravan promote b c --dry-run   # exits 1: frozen", exit: 1, line: 20},
	}, tr.commands)
	require.Equal(t, []tourOutput{{command: 2, lines: []string{"verdict: met"}}}, tr.outputs)
}

func TestReadTourRefusesAnOutputOfAnotherCommand(t *testing.T) {
	_, err := readTour("<!-- tour -->\n```sh\nls\n```\n```text\n$ pwd\n/\n```\n<!-- /tour -->\n")
	require.ErrorContains(t, err, "line 6")
	_, err = readTour("no tour here\n")
	require.ErrorContains(t, err, "no tour")
	_, err = readTour("<!-- tour -->\n```sh\nls\n```\n")
	require.ErrorContains(t, err, "does not end")
}

func TestOutputShapeLeavesOutCommitsAgesAndWidths(t *testing.T) {
	require.Equal(t,
		outputShape("promoted 5ff1bc9 from dev, soak 1m, heartbeat timeout 1m30s\nCLUSTER   SINCE\ntest-dev  1m8s\n"),
		outputShape("promoted 0123abc from dev, soak 20s, heartbeat timeout 1m30s\nCLUSTER  SINCE\ntest-dev 35s"))
	require.NotEqual(t, outputShape("verdict: met"), outputShape("verdict: not met"))
}
