package store

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHubWakesOnlyTheChangedCluster(t *testing.T) {
	h := NewHub()
	a, b := h.Watch("a"), h.Watch("b")
	var fired []string
	h.Subscribe("a", func() { fired = append(fired, "sub-a") })
	cancelB := h.Subscribe("b", func() { fired = append(fired, "sub-b") })
	genA, genB := h.Generation("a"), h.Generation("b")

	h.Changed("a")
	assert.True(t, closed(a))
	assert.False(t, closed(b))
	assert.Equal(t, []string{"sub-a"}, fired)
	assert.NotEqual(t, genA, h.Generation("a"))
	assert.Equal(t, genB, h.Generation("b"))

	h.Changed("a")
	assert.Equal(t, []string{"sub-a"}, fired, "a subscription fires once")

	cancelB()
	h.Changed("b")
	assert.True(t, closed(b))
	assert.Equal(t, []string{"sub-a"}, fired, "a cancelled subscription never fires")
	assert.Empty(t, h.subscribers, "nothing is kept for clusters nobody waits on")
}

func TestHubChangedAllWakesEveryone(t *testing.T) {
	h := NewHub()
	a := h.Watch("a")
	n := 0
	h.Subscribe("x", func() { n++ })
	h.Subscribe("y", func() { n++ })
	gen, tokens := h.Generation("z"), h.TokenGeneration()
	h.ChangedAll()
	assert.True(t, closed(a))
	assert.Equal(t, 2, n)
	assert.NotEqual(t, gen, h.Generation("z"), "every cached assignment is stale")
	assert.NotEqual(t, tokens, h.TokenGeneration(), "every cached token is rechecked")
}

func TestHubFleetChangeWakesWithoutStalingOwnInputs(t *testing.T) {
	h := NewHub()
	a, b := h.Watch("a"), h.Watch("b")
	n := 0
	h.Subscribe("a", func() { n++ })
	gen, fleet := h.Generation("a"), h.FleetGeneration()
	h.FleetChanged("a")
	assert.True(t, closed(a))
	assert.False(t, closed(b))
	assert.Equal(t, 1, n)
	assert.Equal(t, gen, h.Generation("a"), "the cluster's own inputs are still good")
	assert.NotEqual(t, fleet, h.FleetGeneration(), "the shared ones are not")
	fleet = h.FleetGeneration()
	b = h.Watch("b")
	h.Wake("b")
	assert.True(t, closed(b))
	assert.Equal(t, fleet, h.FleetGeneration(), "a wake alone changes nothing cached")
	h.ChangedAll()
	assert.NotEqual(t, fleet, h.FleetGeneration(), "nothing cached survives a lost connection to the other replicas")
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
