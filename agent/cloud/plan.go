// Package cloud keeps a cluster's own AWS infrastructure, its CloudFormation
// stacks, in step with the rendered templates of a version, from inside the
// cluster and with the cluster's own credentials.
package cloud

import (
	"fmt"
	"slices"
	"strings"
)

// Tags Caravan puts on every stack it manages.
const (
	TagClusterID = "caravan.io/cluster-id"
	TagNodePool  = "caravan.io/node-pool"
	TagVersion   = "caravan.io/version"
	// TagDigest holds the digest of the template a stack was last created
	// or updated with: equal digests make the reconcile of a stack a no-op.
	TagDigest = "caravan.io/template-digest"
)

// Observed is a stack as DescribeStacks shows it.
type Observed struct {
	Name         string
	Status       string
	StatusReason string
	Tags         map[string]string
	Outputs      map[string]string
}

// Action is what to do with one stack.
type Action int

// The actions on a stack.
const (
	// Nothing: the stack is complete and has the desired template.
	Nothing Action = iota
	Create
	Update
	// Wait: an operation is under way (another agent's, or this one's
	// before a restart); wait for it to end and plan again.
	Wait
	// Stuck: the stack is in a state that no update can leave; a human
	// must look at it. It is reported and never deleted blindly.
	Stuck
)

func (a Action) String() string {
	return [...]string{"nothing", "create", "update", "wait", "stuck"}[a]
}

// Step is the plan for one stack.
type Step struct {
	Action Action
	Reason string
}

// stuckStates block every update: a stack that failed to create
// (ROLLBACK_COMPLETE can only be deleted) or whose rollback or delete failed.
// UPDATE_ROLLBACK_COMPLETE and UPDATE_FAILED (rollback disabled) are not
// among them: an update may follow both.
var stuckStates = []string{
	"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED",
	"UPDATE_ROLLBACK_FAILED", "IMPORT_ROLLBACK_FAILED",
}

// Plan decides what one stack needs, from the digest of its desired
// template and what DescribeStacks said of it (nil when it does not exist).
func Plan(digest string, observed *Observed) Step {
	if observed == nil || observed.Status == "DELETE_COMPLETE" {
		return Step{Action: Create, Reason: "the stack does not exist"}
	}
	status := observed.Status
	switch {
	case slices.Contains(stuckStates, status):
		return Step{Action: Stuck, Reason: fmt.Sprintf("the stack is in %s%s, which no update can leave; look at its events and repair or delete it by hand",
			status, reasonSuffix(observed.StatusReason))}
	case status == "REVIEW_IN_PROGRESS":
		return Step{Action: Stuck, Reason: "the stack exists only as a change set under review (REVIEW_IN_PROGRESS); delete the change set and the stack by hand"}
	case strings.HasSuffix(status, "_IN_PROGRESS"):
		return Step{Action: Wait, Reason: "an operation on the stack is under way (" + status + ")"}
	case observed.Tags[TagDigest] == digest:
		return Step{Action: Nothing, Reason: "the stack has the template"}
	}
	return Step{Action: Update, Reason: "the template changed"}
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// Failed says whether a stack status ends an operation in failure: a
// rollback, complete or not, is a failure even though the stack is stable.
func Failed(status string) bool {
	return strings.HasSuffix(status, "_FAILED") || strings.HasSuffix(status, "ROLLBACK_COMPLETE")
}

// Orphans lists the stacks of the cluster's node pools that the assignment
// no longer has, by pool name.
func Orphans(observed []Observed, clusterID string, pools []string) map[string]Observed {
	out := map[string]Observed{}
	for _, o := range observed {
		pool := o.Tags[TagNodePool]
		if o.Tags[TagClusterID] != clusterID || pool == "" || slices.Contains(pools, pool) {
			continue
		}
		out[pool] = o
	}
	return out
}
