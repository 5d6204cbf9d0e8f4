//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// profileSummary is where the CPU time of a profiled render --all went, as
// `go tool pprof -top` reads the profile.
type profileSummary struct {
	run     runResult
	samples time.Duration // CPU time in the profile's samples
	// cum is the CPU time under each function of the profile.
	cum map[string]time.Duration
	// flat is the functions that used the most CPU themselves, most first.
	flat []profileLine
}

type profileLine struct {
	function string
	flat     time.Duration
	cum      time.Duration
}

// summarize reads the profile at path with `go tool pprof`.
func summarize(ctx context.Context, path string) (profileSummary, error) {
	var s profileSummary
	cumText, err := pprofTop(ctx, path, "-cum", "-nodefraction=0", "-nodecount=5000")
	if err != nil {
		return s, err
	}
	lines, total, err := parseTop(cumText)
	if err != nil {
		return s, err
	}
	s.samples, s.cum = total, map[string]time.Duration{}
	for _, l := range lines {
		s.cum[l.function] = l.cum
	}
	flatText, err := pprofTop(ctx, path, "-nodecount=12")
	if err != nil {
		return s, err
	}
	if s.flat, _, err = parseTop(flatText); err != nil {
		return s, err
	}
	return s, nil
}

func pprofTop(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof", "-top"}, args...), path)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			stderr = string(exit.Stderr)
		}
		return "", fmt.Errorf("go tool pprof: %w\n%s", err, stderr)
	}
	return string(out), nil
}

var (
	totalLine = regexp.MustCompile(`Total samples = ([0-9.]+(?:[a-zµ]*s)?)`)
	topLine   = regexp.MustCompile(`^\s*([0-9.]+(?:[a-zµ]*s)?)\s+[0-9.]+%\s+[0-9.]+%\s+([0-9.]+(?:[a-zµ]*s)?)\s+[0-9.]+%\s+(.+)$`)
)

// parseTop reads the output of `go tool pprof -top`: the total of the
// samples and one line per function.
func parseTop(text string) ([]profileLine, time.Duration, error) {
	m := totalLine.FindStringSubmatch(text)
	if m == nil {
		return nil, 0, fmt.Errorf("go tool pprof printed no total:\n%s", tail(text, 1000))
	}
	total, err := parseSeconds(m[1])
	if err != nil {
		return nil, 0, err
	}
	var out []profileLine
	for _, line := range strings.Split(text, "\n") {
		m := topLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		flat, err := parseSeconds(m[1])
		if err != nil {
			return nil, 0, err
		}
		cum, err := parseSeconds(m[2])
		if err != nil {
			return nil, 0, err
		}
		function := strings.TrimSpace(m[3])
		if i := strings.LastIndex(function, " ("); i > 0 && strings.HasSuffix(function, "inline)") {
			function = function[:i]
		}
		out = append(out, profileLine{function: function, flat: flat, cum: cum})
	}
	return out, total, nil
}

// parseSeconds reads pprof's durations: "1.23s", "450ms", "0".
func parseSeconds(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(strings.Replace(s, "mins", "m", 1))
}
