package api

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// States of a plan: pending until the agent takes it, running while it
// computes the preview, then done or failed.
const (
	PlanPending = "pending"
	PlanRunning = "running"
	PlanDone    = "done"
	PlanFailed  = "failed"
)

// PlanTimeout is how long a plan may wait for its agent's answer; after it
// a plan still pending or running counts as failed.
const PlanTimeout = time.Hour

// ProblemPlanUnanswered is the problem type of a plan whose agent did not
// answer within PlanTimeout.
const ProblemPlanUnanswered = ProblemTypeBase + "plan-unanswered"

// Actions of the stacks, objects and resources of a plan's result.
const (
	StackUnchanged = "unchanged"
	StackCreate    = "create"
	StackUpdate    = "update"
	StackDelete    = "delete"
	// StackWait: an operation on the stack is under way; the change set
	// would be made once it ends.
	StackWait = "wait"
	// StackStuck: the stack is in a state no update can leave.
	StackStuck = "stuck"

	ObjectCreate = "create"
	ObjectChange = "change"
	ObjectPrune  = "prune"
	ObjectDelete = "delete"
	// ObjectRefused: the API server's dry run refused the object.
	ObjectRefused = "refused"
)

// StackActions and ObjectActions list the actions of a plan's result.
var (
	StackActions  = []string{StackUnchanged, StackCreate, StackUpdate, StackDelete, StackWait, StackStuck}
	ObjectActions = []string{ObjectCreate, ObjectChange, ObjectPrune, ObjectDelete, ObjectRefused}
)

// Plan asks a cluster's agent what a commit would change in the cluster,
// without changing anything. It rides in the cluster's assignment until
// the agent answers.
type Plan struct {
	ID          string      `json:"id"`
	ClusterID   string      `json:"cluster_id"`
	Commit      string      `json:"commit"`
	State       string      `json:"state"`
	RequestedBy string      `json:"requested_by"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	Result      *PlanResult `json:"result,omitempty"`
}

// PlanRequest is the body of a plan's creation.
type PlanRequest struct {
	Commit string `json:"commit"`
}

// PlanReport is the agent's answer to a plan: running when it starts,
// done or failed with the result at the end.
type PlanReport struct {
	State  string      `json:"state"`
	Result *PlanResult `json:"result,omitempty"`
}

// AssignedPlan is a plan as the agent sees it in its assignment.
type AssignedPlan struct {
	ID     string `json:"id"`
	Commit string `json:"commit"`
}

// PlanResult is what the commit would change: each stack's change set,
// the objects the apply would create, change, prune or delete, and the
// nodes that would be replaced. A failed plan has its Problem, as a
// reconcile of the commit would report it.
type PlanResult struct {
	Stacks    []StackPlan    `json:"stacks"`
	Objects   []ObjectPlan   `json:"objects"`
	NodePools []NodePoolPlan `json:"node_pools"`
	// Drifted are objects whose live state differs from the cluster's
	// current version now, which the agent has not corrected (yet).
	Drifted []DriftedObject `json:"drifted,omitempty"`
	Problem *StatusProblem  `json:"problem,omitempty"`
}

// StackPlan is what the commit would do to one CloudFormation stack; for
// create and update, the resources of its change set.
type StackPlan struct {
	Name      string           `json:"name"`
	NodePool  string           `json:"node_pool,omitempty"`
	Action    string           `json:"action"`
	Reason    string           `json:"reason,omitempty"`
	Resources []ResourceChange `json:"resources"`
}

// ResourceChange is one resource of a change set, in CloudFormation's words:
// Action Add, Modify, Remove, Import or Dynamic; Replacement True, False or
// Conditional, for a Modify.
type ResourceChange struct {
	Action      string `json:"action"`
	LogicalID   string `json:"logical_id"`
	Type        string `json:"type"`
	Replacement string `json:"replacement,omitempty"`
}

// ObjectPlan is what the apply would do to one Kubernetes object; Fields
// are the changed fields of a change, Reason why a delete or a refusal.
type ObjectPlan struct {
	Action    string   `json:"action"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Fields    []string `json:"fields,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// NodePoolPlan is a node pool whose nodes the commit would replace: the
// pool's revision now and with the commit, and its nodes that would go.
type NodePoolPlan struct {
	Name            string   `json:"name"`
	CurrentRevision string   `json:"current_revision"`
	NextRevision    string   `json:"next_revision"`
	NodesTotal      int      `json:"nodes_total"`
	Replaced        []string `json:"replaced"`
}

// Final reports whether the plan's state no longer changes.
func (p Plan) Final() bool { return p.State == PlanDone || p.State == PlanFailed }

// ExpiresAt is when a plan that is not final counts as failed.
func (p Plan) ExpiresAt() time.Time { return p.CreatedAt.Add(PlanTimeout) }

// At is the plan as it stands at now: one whose agent did not answer within
// PlanTimeout has failed.
func (p Plan) At(now time.Time) Plan {
	if p.Final() || now.Before(p.ExpiresAt()) {
		return p
	}
	p.State = PlanFailed
	p.Result = &PlanResult{Stacks: []StackPlan{}, Objects: []ObjectPlan{}, NodePools: []NodePoolPlan{}, Problem: &StatusProblem{
		Type: ProblemPlanUnanswered, Title: "The agent did not answer",
		Detail: fmt.Sprintf("the cluster's agent did not answer within %s; is it running and reaching the registry?", PlanTimeout),
		Since:  p.ExpiresAt(),
	}}
	return p
}

// Normalize makes every list of a result a list, empty rather than null.
func (res *PlanResult) Normalize() {
	if res == nil {
		return
	}
	res.Stacks = nonNil(res.Stacks)
	res.Objects = nonNil(res.Objects)
	res.NodePools = nonNil(res.NodePools)
	for i := range res.Stacks {
		res.Stacks[i].Resources = nonNil(res.Stacks[i].Resources)
	}
	for i := range res.NodePools {
		res.NodePools[i].Replaced = nonNil(res.NodePools[i].Replaced)
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Validate checks a plan request.
func (r *PlanRequest) Validate() error {
	v := &ValidationError{}
	if !ValidCommit(r.Commit) {
		v.add("commit", "must be a full commit id (40 lower-case hex digits), got %q", r.Commit)
	}
	return v.err()
}

// Validate checks an agent's answer to a plan.
func (r *PlanReport) Validate() error {
	v := &ValidationError{}
	switch r.State {
	case PlanRunning:
	case PlanDone, PlanFailed:
		if r.Result == nil {
			v.add("result", "must be given with the state %s", r.State)
		}
	default:
		v.add("state", "must be one of running, done, failed, got %q", r.State)
	}
	if r.Result != nil {
		r.Result.validate(v, r.State == PlanFailed)
		validateDrifted(v, r.Result.Drifted)
	}
	return v.err()
}

func (res *PlanResult) validate(v *ValidationError, failed bool) {
	switch {
	case failed && res.Problem == nil:
		v.add("result.problem", "must say why the plan failed")
	case res.Problem != nil:
		validateProblem(v, "result.problem", *res.Problem)
	}
	for i, s := range res.Stacks {
		field := "result.stacks[" + strconv.Itoa(i) + "]"
		requireText(v, field+".name", s.Name)
		requireOneOf(v, field+".action", s.Action, StackActions)
		for j, c := range s.Resources {
			rf := field + ".resources[" + strconv.Itoa(j) + "]"
			requireText(v, rf+".action", c.Action)
			requireText(v, rf+".logical_id", c.LogicalID)
		}
	}
	for i, o := range res.Objects {
		field := "result.objects[" + strconv.Itoa(i) + "]"
		requireOneOf(v, field+".action", o.Action, ObjectActions)
		requireText(v, field+".kind", o.Kind)
		requireText(v, field+".name", o.Name)
		for j, f := range o.Fields {
			requireText(v, field+".fields["+strconv.Itoa(j)+"]", f)
		}
	}
	for i, p := range res.NodePools {
		field := "result.node_pools[" + strconv.Itoa(i) + "]"
		requireText(v, field+".name", p.Name)
		if p.NodesTotal < 0 {
			v.add(field+".nodes_total", "must not be negative")
		}
		for j, node := range p.Replaced {
			requireText(v, field+".replaced["+strconv.Itoa(j)+"]", node)
		}
	}
}

func validateProblem(v *ValidationError, field string, p StatusProblem) {
	requireText(v, field+".type", p.Type)
	requireText(v, field+".title", p.Title)
}

func requireText(v *ValidationError, field, value string) {
	if strings.TrimSpace(value) == "" {
		v.add(field, "must not be empty")
	}
}

func requireOneOf(v *ValidationError, field, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		v.add(field, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}
