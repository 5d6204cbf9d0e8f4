package nodes

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// CommandKind is what a Command does.
type CommandKind int

// The commands of a plan.
const (
	// SuspendRebalance suspends the group's AZRebalance at a roll's start.
	SuspendRebalance CommandKind = iota + 1
	// ResumeRebalance resumes it once the pool is rolled.
	ResumeRebalance
	// SetDesiredCapacity surges the group.
	SetDesiredCapacity
	// MarkNode labels and taints an outdated node.
	MarkNode
	// UnmarkNode takes the marks off again, of a node being drained too
	// under a hard block.
	UnmarkNode
	// StartNodeDrain labels the node draining, records when, cordons it.
	StartNodeDrain
	// AskEviction asks the Eviction API to move a pod.
	AskEviction
	// ForceDeletion deletes a refused pod the SLA lets go.
	ForceDeletion
	// WriteForecast writes, or removes, a refused pod's forecast force.
	WriteForecast
	// TerminateInstance ends a drained node's instance.
	TerminateInstance
)

var commandNames = map[CommandKind]string{
	SuspendRebalance: "suspend-rebalance", ResumeRebalance: "resume-rebalance", SetDesiredCapacity: "set-desired",
	MarkNode: "mark", UnmarkNode: "unmark", StartNodeDrain: "start-drain", AskEviction: "evict",
	ForceDeletion: "force", WriteForecast: "forecast", TerminateInstance: "terminate",
}

func (k CommandKind) String() string {
	if name, ok := commandNames[k]; ok {
		return name
	}
	return fmt.Sprintf("CommandKind(%d)", int(k))
}

// Command is one change a plan asks for; Roller.execute makes it.
type Command struct {
	Kind CommandKind
	Pool string
	// Group and Desired: the group a group command changes, and the
	// desired capacity SetDesiredCapacity sets.
	Group   string
	Desired int
	Node    *corev1.Node
	Pod     *corev1.Pod
	// Pods is how many pods the node of StartNodeDrain has to move.
	Pods int
	// Effect is the taint effect of MarkNode.
	Effect corev1.TaintEffect
	// Decision is Decide's answer behind ForceDeletion and WriteForecast.
	Decision Decision
	// Budgets are the keys of the budgets of a forced pod, and
	// LastForcedInPDB the last force among them the plan counted with: a
	// later one found when they are read again stops the force.
	Budgets         []string
	LastForcedInPDB time.Time
	// Siblings are the pods of those budgets the decision saw: others read
	// when the force reads them again (the plan may have read a cache
	// behind the API server) stop the force too.
	Siblings []Sibling
}

func (c Command) String() string {
	switch {
	case c.Pod != nil:
		return fmt.Sprintf("%s %s/%s", c.Kind, c.Pod.Namespace, c.Pod.Name)
	case c.Node != nil:
		return fmt.Sprintf("%s %s", c.Kind, c.Node.Name)
	case c.Kind == SetDesiredCapacity:
		return fmt.Sprintf("%s %s %d", c.Kind, c.Group, c.Desired)
	}
	return fmt.Sprintf("%s %s", c.Kind, c.Group)
}
