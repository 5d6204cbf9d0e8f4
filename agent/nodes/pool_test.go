package nodes

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOutdated(t *testing.T) {
	spec := PoolSpec{Name: "workers", Revision: "r2", InstanceTypes: []string{"m6i.large", "m5.large"}, Spot: true, CheckSpot: true}
	for name, c := range map[string]struct {
		inst   Instance
		spec   PoolSpec
		want   bool
		reason string
	}{
		"current":                           {Instance{Revision: "r2", Type: "m5.large", Spot: true}, spec, false, ""},
		"another revision":                  {Instance{Revision: "r1", Type: "m5.large", Spot: true}, spec, true, "revision r1"},
		"no revision tag":                   {Instance{Type: "m5.large", Spot: true}, spec, true, "revision none"},
		"a type the pool left":              {Instance{Revision: "r2", Type: "c5.large", Spot: true}, spec, true, "instance type c5.large"},
		"on-demand in a spot pool":          {Instance{Revision: "r2", Type: "m5.large"}, spec, true, "spot no"},
		"spot unknown where it is not told": {Instance{Revision: "r2", Type: "m5.large"}, PoolSpec{Revision: "r2", Spot: true}, false, ""},
		"a type not reported":               {Instance{Revision: "r2", Spot: true}, spec, false, ""},
	} {
		got, reason := Outdated(c.spec, c.inst)
		assert.Equal(t, c.want, got, name)
		assert.Contains(t, reason, c.reason, name)
	}
}

func TestInstanceID(t *testing.T) {
	assert.Equal(t, "i-0abc", InstanceID("aws:///eu-central-1a/i-0abc"))
	assert.Equal(t, "", InstanceID("kwok://node-a"))
	assert.Equal(t, "", InstanceID(""))
}

func TestNextDrainsTheNodeWithFewestPodsThenTheOldest(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, ok := Next(nil)
	assert.False(t, ok)
	got, ok := Next([]Candidate{
		{Name: "busy", Pods: 9, Created: old},
		{Name: "young", Pods: 2, Created: old.Add(time.Hour)},
		{Name: "old", Pods: 2, Created: old},
		{Name: "also-old", Pods: 2, Created: old},
	})
	assert.True(t, ok)
	assert.Equal(t, "also-old", got.Name, "fewest pods, then oldest, then by name")
}

func TestCapacity(t *testing.T) {
	for _, c := range []struct{ target, surge, left, max, want int }{
		{3, 1, 3, 10, 4},
		{3, 1, 1, 10, 4},
		{3, 1, 0, 10, 3},
		{3, 2, 1, 10, 4},
		{3, 2, 5, 4, 4},
		{3, 0, 3, 10, 3},
	} {
		assert.Equal(t, c.want, Capacity(c.target, c.surge, c.left, c.max), "%+v", c)
	}
}

func TestLatestIsTheEndOfAKubernetesSecond(t *testing.T) {
	second := time.Date(2026, 11, 25, 10, 0, 7, 0, time.UTC)
	assert.Equal(t, second.Add(time.Second), latest(metav1.NewTime(second)))
	assert.True(t, latest(metav1.Time{}).IsZero())
}
