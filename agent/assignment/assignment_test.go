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

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// longPollRegistry answers like caravan-central: a request whose ETag is
// current waits up to its Wait for the next change.
type longPollRegistry struct {
	mu      sync.Mutex
	gen     int
	a       *api.Assignment
	changed chan struct{}
}

func newLongPollRegistry(clusterID string) *longPollRegistry {
	r := &longPollRegistry{changed: make(chan struct{})}
	r.change(clusterID)
	return r
}

// change publishes the next generation of the assignment: its ETag is the
// generation, and so is its config item "generation".
func (r *longPollRegistry) change(clusterID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.a = &api.Assignment{Cluster: api.AssignedCluster{ID: clusterID}, ConfigItems: map[string]string{"generation": strconv.Itoa(r.gen)}}
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *longPollRegistry) GetAssignment(ctx context.Context, _ string, o registry.AssignmentOptions) (*registry.AssignmentResult, error) {
	r.mu.Lock()
	if o.IfNoneMatch == strconv.Itoa(r.gen) && o.Wait > 0 {
		changed := r.changed
		r.mu.Unlock()
		timer := time.NewTimer(o.Wait)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-timer.C:
		}
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if o.IfNoneMatch == strconv.Itoa(r.gen) {
		return &registry.AssignmentResult{NotModified: true, RegistryTime: time.Now()}, nil
	}
	return &registry.AssignmentResult{Assignment: r.a, ETag: strconv.Itoa(r.gen), RegistryTime: time.Now()}, nil
}

func generation(a *api.Assignment) int {
	if a == nil {
		return 0
	}
	n, _ := strconv.Atoi(a.ConfigItems["generation"])
	return n
}

// Regression test of the data race of issue 14: the reconciler's loop
// long-polls while a health wait reads the assignment, and the two once
// called Poll at the same time on an unguarded Keeper. Run with -race: the
// loop's long-polls, Polls of a second caller and Latest all run at once
// while the registry changes the assignment. Every caller sees generations
// only grow, and all end on the last one, as does the Secret.
func TestPollAndLatestFromSeveralGoroutines(t *testing.T) {
	const clusterID, namespace, changes = "c1", "caravan-system", 50
	reg := newLongPollRegistry(clusterID)
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
			g := generation(a)
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
		reg.change(clusterID)
		time.Sleep(time.Millisecond)
	}
	// Both pollers and Latest reach the last generation.
	require.Eventually(t, func() bool { return generation(k.Latest()) == changes }, 10*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	upd, err := k.Poll(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, changes, generation(upd.Assignment))
	assert.False(t, upd.Changed, "the last change was taken already")
	s := &corev1.Secret{}
	require.NoError(t, kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: SecretName}, s))
	kept := &api.Assignment{}
	require.NoError(t, json.Unmarshal(s.Data["assignment.json"], kept))
	assert.Equal(t, changes, generation(kept), "the Secret keeps the last assignment")
	assert.Equal(t, strconv.Itoa(changes), string(s.Data["etag"]))
}

// Latest answers at once while a long-poll waits, and a change at the
// registry reaches it through that long-poll.
func TestLatestDoesNotWaitForALongPoll(t *testing.T) {
	const clusterID = "c1"
	reg := newLongPollRegistry(clusterID)
	k := New(reg, fake.NewClientBuilder().Build(), clusterID, "caravan-system")
	ctx := t.Context()
	assert.Nil(t, k.Latest(), "nothing before the first Poll")
	upd, err := k.Poll(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, generation(upd.Assignment))

	polled := make(chan Update)
	go func() {
		upd, _ := k.Poll(ctx, time.Hour)
		polled <- upd
	}()
	start := time.Now()
	assert.Equal(t, 1, generation(k.Latest()))
	assert.Less(t, time.Since(start), time.Second, "Latest did not wait for the long-poll")

	reg.change(clusterID)
	upd = <-polled
	assert.True(t, upd.Changed)
	assert.Equal(t, 2, generation(upd.Assignment))
	assert.Equal(t, 2, generation(k.Latest()))
}
