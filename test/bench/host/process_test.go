//go:build linux

package host

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTreeCPUTimeCountsTheChildrenThatEnded(t *testing.T) {
	before, err := TreeCPUTime(os.Getpid())
	require.NoError(t, err)
	child := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	require.NoError(t, child.Run())
	used := child.ProcessState.UserTime() + child.ProcessState.SystemTime()
	require.Greater(t, used, 50*time.Millisecond, "the child must burn some CPU for the test to mean anything")

	after, err := TreeCPUTime(os.Getpid())
	require.NoError(t, err)
	// /proc counts in ticks of 10 ms.
	assert.GreaterOrEqual(t, after-before, used-20*time.Millisecond)
}

func TestPercentileIsTheNearestRank(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, time.Duration(5), Percentile(d, 0.5))
	assert.Equal(t, time.Duration(10), Percentile(d, 0.99))
	assert.Equal(t, time.Duration(1), Percentile(d, 0.01))
	assert.Zero(t, Percentile(nil, 0.5))
}

func TestThousands(t *testing.T) {
	assert.Equal(t, "10,000", Thousands(10000))
	assert.Equal(t, "-1,234,567", Thousands(int64(-1234567)))
	assert.Equal(t, "999", Thousands(999.4))
}
