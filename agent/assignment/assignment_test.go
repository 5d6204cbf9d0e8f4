package assignment

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/caravan-gitops/caravan/agent/assignment/assignmenttest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Regression test of the data race of issue 14: the reconciler's loop
// long-polls while a health wait reads the assignment, and the two once
// called Poll at the same time on an unguarded Keeper. Run with -race: the
// loop's long-polls, Polls of a second caller and Latest all run at once
// while the registry changes the assignment. Every caller sees generations
// only grow, and all end on the last one, as does the Secret.
func TestPollAndLatestFromSeveralGoroutines(t *testing.T) {
	const clusterID, namespace, changes = "c1", "caravan-system", 50
	reg := assignmenttest.NewRegistry(api.Assignment{Cluster: api.AssignedCluster{ID: clusterID}})
	kube := fake.NewClientBuilder().Build()
	k := New(reg, kube, clusterID, namespace)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 3)
	// Each caller checks its own view never goes back.
	caller := func(name string, read func() (*api.Assignment, error)) {
		defer wg.Done()
		seen := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, err := read()
			if err != nil {
				errs <- err
				return
			}
			g := assignmenttest.Generation(a)
			if g < seen {
				t.Errorf("%s saw generation %d after %d", name, g, seen)
				return
			}
			seen = g
		}
	}
	wg.Add(3)
	go caller("the loop's long-poll", func() (*api.Assignment, error) {
		upd, err := k.Poll(ctx, 50*time.Millisecond)
		return upd.Assignment, err
	})
	go caller("a second poller", func() (*api.Assignment, error) {
		upd, err := k.Poll(ctx, 0)
		return upd.Assignment, err
	})
	go caller("Latest", func() (*api.Assignment, error) { return k.Latest(), nil })

	for range changes - 1 {
		reg.Change()
		time.Sleep(time.Millisecond)
	}
	// Both pollers and Latest reach the last generation.
	require.Eventually(t, func() bool { return assignmenttest.Generation(k.Latest()) == changes }, 10*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	upd, err := k.Poll(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, changes, assignmenttest.Generation(upd.Assignment))
	assert.False(t, upd.Changed, "the last change was taken already")
	s := &corev1.Secret{}
	require.NoError(t, kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SecretName}, s))
	kept := &api.Assignment{}
	require.NoError(t, json.Unmarshal(s.Data["assignment.json"], kept))
	assert.Equal(t, changes, assignmenttest.Generation(kept), "the Secret keeps the last assignment")
	assert.Equal(t, strconv.Itoa(changes), string(s.Data["etag"]))
}

// Latest answers at once while a long-poll waits, and a change at the
// registry reaches it through that long-poll.
func TestLatestDoesNotWaitForALongPoll(t *testing.T) {
	const clusterID = "c1"
	reg := assignmenttest.NewRegistry(api.Assignment{Cluster: api.AssignedCluster{ID: clusterID}})
	k := New(reg, fake.NewClientBuilder().Build(), clusterID, "caravan-system")
	ctx := t.Context()
	assert.Nil(t, k.Latest(), "nothing before the first Poll")
	upd, err := k.Poll(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, assignmenttest.Generation(upd.Assignment))

	polled := make(chan Update)
	go func() {
		upd, _ := k.Poll(ctx, time.Hour)
		polled <- upd
	}()
	start := time.Now()
	assert.Equal(t, 1, assignmenttest.Generation(k.Latest()))
	assert.Less(t, time.Since(start), time.Second, "Latest did not wait for the long-poll")

	reg.Change()
	upd = <-polled
	assert.True(t, upd.Changed)
	assert.Equal(t, 2, assignmenttest.Generation(upd.Assignment))
	assert.Equal(t, 2, assignmenttest.Generation(k.Latest()))
}
