package host

import (
	"fmt"
	"os"
	"time"
)

var began = time.Now()

// Progress tells the person waiting what runs now, with the seconds since
// the benchmark began; the figures go to stdout.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %5.1fs "+format+"\n", append([]any{time.Since(began).Seconds()}, args...)...)
}

// Elapsed is the time since the benchmark began, for its report.
func Elapsed() time.Duration { return time.Since(began) }
