// Package assignment keeps the agent's assignment: polled from the
// registry, and persisted in a Secret so that a registry outage, even across
// an agent restart, leaves the cluster on its last good assignment.
package assignment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// SecretName is where the last good assignment is kept.
const SecretName = "caravan-last-assignment"

// Registry is the part of the registry client the keeper uses.
type Registry interface {
	GetAssignment(ctx context.Context, clusterID string, o registry.AssignmentOptions) (*registry.AssignmentResult, error)
}

// Keeper holds the current assignment. One goroutine polls (the
// reconciler's loop); any other reads what it polled with Latest, which
// never waits for a long-poll in flight.
type Keeper struct {
	registry  Registry
	kube      client.Client
	clusterID string
	namespace string

	// polling makes Polls take turns, so that their answers are taken in
	// the order they were asked for and the Secret is written by one at a
	// time.
	polling sync.Mutex
	// mu guards current and etag: written by Poll (holding polling too),
	// read by Latest.
	mu      sync.Mutex
	current *api.Assignment
	etag    string
}

// New returns a Keeper for the cluster, keeping its Secret in namespace.
func New(r Registry, kube client.Client, clusterID, namespace string) *Keeper {
	return &Keeper{registry: r, kube: kube, clusterID: clusterID, namespace: namespace}
}

// Update is the outcome of one poll.
type Update struct {
	Assignment *api.Assignment
	// Changed is true when the assignment differs from the previous poll's.
	Changed bool
	// RegistryErr is set when the registry could not be asked; Assignment
	// is then the last good one, if there is any.
	RegistryErr error
	// RegistryTime is the registry's clock in its answer, and ReceivedAt
	// the agent's when the answer arrived; both zero without an answer.
	RegistryTime, ReceivedAt time.Time
}

// Poll asks the registry, waiting up to wait for a change. Without an
// answer it goes on with the last good assignment, from memory or from the
// Secret after a restart. A Poll called while another is under way waits
// for it: callers that only need the latest assignment use Latest.
func (k *Keeper) Poll(ctx context.Context, wait time.Duration) (Update, error) {
	k.polling.Lock()
	defer k.polling.Unlock()
	// Only a Poll writes current and etag, and Polls take turns: they are
	// read here without mu.
	if k.current == nil {
		if err := k.load(ctx); err != nil {
			return Update{}, err
		}
	}
	res, err := k.registry.GetAssignment(ctx, k.clusterID, registry.AssignmentOptions{IfNoneMatch: k.etag, Wait: wait})
	if err != nil {
		if ctx.Err() != nil {
			return Update{}, ctx.Err()
		}
		return Update{Assignment: k.current, RegistryErr: err}, nil
	}
	received := time.Now()
	if res.NotModified {
		return Update{Assignment: k.current, RegistryTime: res.RegistryTime, ReceivedAt: received}, nil
	}
	k.set(res.Assignment, res.ETag)
	upd := Update{Assignment: res.Assignment, Changed: true, RegistryTime: res.RegistryTime, ReceivedAt: received}
	return upd, k.save(ctx)
}

// Latest is the assignment the last Poll went on with (nil before the
// first), without asking the registry and without waiting for a Poll under
// way. While the loop's long-poll waits, a change at the registry answers
// it at once, so Latest is as fresh as a Poll of its own would be.
func (k *Keeper) Latest() *api.Assignment {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current
}

func (k *Keeper) set(a *api.Assignment, etag string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.current, k.etag = a, etag
}

func (k *Keeper) load(ctx context.Context) error {
	s := &corev1.Secret{}
	err := k.kube.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: SecretName}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the last good assignment: %w", err)
	}
	a := &api.Assignment{}
	if err := json.Unmarshal(s.Data["assignment.json"], a); err != nil {
		return fmt.Errorf("decoding the last good assignment: %w", err)
	}
	if a.Cluster.ID != k.clusterID {
		return errors.New("the last good assignment is of cluster " + a.Cluster.ID + ", not " + k.clusterID)
	}
	k.set(a, string(s.Data["etag"]))
	return nil
}

func (k *Keeper) save(ctx context.Context) error {
	body, err := json.Marshal(k.current)
	if err != nil {
		return err
	}
	s := corev1ac.Secret(SecretName, k.namespace).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": "caravan-agent"}).
		WithData(map[string][]byte{"assignment.json": body, "etag": []byte(k.etag)})
	if err := k.kube.Apply(ctx, s, client.FieldOwner("caravan-agent"), client.ForceOwnership); err != nil {
		return fmt.Errorf("keeping the last good assignment: %w", err)
	}
	return nil
}
