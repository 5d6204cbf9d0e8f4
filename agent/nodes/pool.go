package nodes

import (
	"slices"
	"strings"
	"time"
)

// Labels, taints and annotations of a roll, on Nodes, Pods and PDBs.
const (
	// LifecycleLabel marks outdated nodes, then the one being drained.
	LifecycleLabel     = "lifecycle-status"
	DecommissionValue  = "decommission-pending"
	DrainingValue      = "draining"
	DecommissionTaint  = "caravan.io/decommission-pending"
	decommissionReason = "rolling-update"
	// DrainStartAnnotation is when the node was selected: the grace period
	// counts from it, and it survives a restart of the agent.
	DrainStartAnnotation = "caravan.io/drain-start"
	// LastForcedAnnotation, on a Node and on a PDB: the last forced
	// termination on that node, and of any pod the PDB covers.
	LastForcedAnnotation = "caravan.io/last-forced-drain"
)

// PoolSpec is what a pool asks of its instances.
type PoolSpec struct {
	Name          string
	Revision      string
	InstanceTypes []string
	Spot          bool
	// CheckSpot compares an instance's spot lifecycle with the pool's;
	// off where the cloud does not report it (moto).
	CheckSpot bool
	// SLA rules the drains of the pool's nodes.
	SLA SLA
}

// Outdated says whether an instance no longer matches its pool, and why.
func Outdated(spec PoolSpec, inst Instance) (bool, string) {
	switch {
	case spec.Revision != "" && inst.Revision != spec.Revision:
		return true, "revision " + orNone(inst.Revision) + ", the pool's is " + spec.Revision
	case inst.Type != "" && len(spec.InstanceTypes) > 0 && !slices.Contains(spec.InstanceTypes, inst.Type):
		return true, "instance type " + inst.Type + ", the pool asks for " + strings.Join(spec.InstanceTypes, ", ")
	case spec.CheckSpot && inst.Spot != spec.Spot:
		return true, "spot " + yesNo(inst.Spot) + ", the pool asks for spot " + yesNo(spec.Spot)
	}
	return false, ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Serving says whether an instance is or will be a node of its group: in
// service, or launching (Pending, also while a lifecycle hook holds it), or
// of unknown lifecycle; not one the group is terminating or took out of
// service.
func Serving(inst Instance) bool {
	return inst.Lifecycle == "" || inst.Lifecycle == "InService" || strings.HasPrefix(inst.Lifecycle, "Pending")
}

// InstanceID reads the instance of a Node's spec.providerID
// ("aws:///<zone>/<instance id>").
func InstanceID(providerID string) string {
	if !strings.HasPrefix(providerID, "aws://") {
		return ""
	}
	return providerID[strings.LastIndex(providerID, "/")+1:]
}

// Candidate is an outdated node that may be drained next.
type Candidate struct {
	Name    string
	Pods    int
	Created time.Time
}

// Next picks the node to drain next: the fewest pods to move first, so
// that each step disrupts least; then the oldest; then by name, so the
// choice is stable.
func Next(candidates []Candidate) (Candidate, bool) {
	if len(candidates) == 0 {
		return Candidate{}, false
	}
	return slices.MinFunc(candidates, func(a, b Candidate) int {
		switch {
		case a.Pods != b.Pods:
			return a.Pods - b.Pods
		case !a.Created.Equal(b.Created):
			return a.Created.Compare(b.Created)
		}
		return strings.Compare(a.Name, b.Name)
	}), true
}

// Capacity is the desired capacity of a group during a roll: the size it
// had when the roll began plus the surge, within its maximum; the surge
// shrinks as the last outdated nodes go, so the roll ends at that size
// without terminating a new node.
func Capacity(target, surge, outdatedLeft, maxSize int) int {
	return min(maxSize, target+min(surge, outdatedLeft))
}
