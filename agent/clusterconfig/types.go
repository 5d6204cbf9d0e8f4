// Package clusterconfig is the in-cluster face of Caravan: the
// cluster-scoped ClusterConfig object (caravan.io/v1beta1, one named
// "cluster") that users block or suspend the agent with, and where the
// agent reports its versions, conditions, inventory and problems.
package clusterconfig

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Name is the name of the one ClusterConfig of a cluster.
const Name = "cluster"

// GroupVersion of ClusterConfig.
var GroupVersion = schema.GroupVersion{Group: "caravan.io", Version: "v1beta1"}

// ClusterConfig is the agent's object in its cluster.
type ClusterConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              Spec   `json:"spec,omitempty"`
	Status            Status `json:"status,omitempty"`
}

// Spec is what users set in the cluster.
type Spec struct {
	// Suspend stops reconciling altogether.
	Suspend bool `json:"suspend,omitempty"`
	// Block stops every change while set, saying why.
	Block *Block `json:"block,omitempty"`
}

// Block is an in-cluster block of updates.
type Block struct {
	Reason string `json:"reason"`
}

// StatusFormat is the format of the status this agent writes. Format 2
// added it and each roll's desired capacity; an agent reads the statuses
// of format 1 (no formatVersion) as they are, a roll's desired capacity
// taken from its group.
const StatusFormat = 2

// Status is what the agent reports.
type Status struct {
	FormatVersion      int                `json:"formatVersion,omitempty"`
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	CurrentVersion     string             `json:"currentVersion,omitempty"`
	NextVersion        string             `json:"nextVersion,omitempty"`
	LastVersion        string             `json:"lastVersion,omitempty"`
	// FailedVersion is a version whose commit cannot be rendered; it is not
	// tried again, since rendering is pure and would fail the same way.
	FailedVersion       string `json:"failedVersion,omitempty"`
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`
	// AppliedInputs is the digest of everything the current version's
	// render read (render.InputDigest); empty while an apply is under way.
	AppliedInputs string `json:"appliedInputs,omitempty"`
	// AppliedObjects is the digest of the current version's rendered
	// objects and deletions (render.Result.Digest); empty likewise.
	AppliedObjects  string          `json:"appliedObjects,omitempty"`
	LastAppliedTime *metav1.Time    `json:"lastAppliedTime,omitempty"`
	Inventory       apply.Inventory `json:"inventory,omitempty"`
	// PendingNodePools are pools that left the registry and whose nodes are
	// still being drained or whose stacks are still to be deleted.
	PendingNodePools []string `json:"pendingNodePools,omitempty"`
	// NodeUpdate are the node update settings of the current version, and
	// Rolls the pools whose outdated nodes are being replaced.
	NodeUpdate *nodes.Settings   `json:"nodeUpdate,omitempty"`
	Rolls      []nodes.RollState `json:"rolls,omitempty"`
	// NodePools is each pool's progress at the last pass: nodes, outdated
	// and draining, and the next forced eviction with the rule holding it.
	NodePools []api.NodePoolProgress `json:"nodePools,omitempty"`
	Problems  []api.StatusProblem    `json:"problems,omitempty"`
	// NextWindow is when the update window opens, while a new version
	// waits for it.
	NextWindow *metav1.Time `json:"nextWindow,omitempty"`
	// Drift is what the agent found and corrected between versions; the
	// drift tracker writes it, the loop leaves it alone.
	Drift *api.DriftStatus `json:"drift,omitempty"`
}

// GetConditions lets fluxcd/pkg/runtime/conditions read the conditions.
func (c *ClusterConfig) GetConditions() []metav1.Condition { return c.Status.Conditions }

// SetConditions lets fluxcd/pkg/runtime/conditions write the conditions.
func (c *ClusterConfig) SetConditions(conditions []metav1.Condition) {
	c.Status.Conditions = conditions
}

// DeepCopyObject copies through JSON: the object is small and read rarely,
// and a hand-written copy would be one more thing to keep in step.
func (c *ClusterConfig) DeepCopyObject() runtime.Object { return jsonCopy(c) }

// jsonCopy copies through JSON; the types here encode without loss, so an
// error is a programming error.
func jsonCopy[T any](in *T) *T {
	out := new(T)
	b, err := json.Marshal(in)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		panic(err)
	}
	return out
}

// ClusterConfigList is a list of ClusterConfigs.
type ClusterConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterConfig `json:"items"`
}

// DeepCopyObject copies the list through JSON, as ClusterConfig does.
func (l *ClusterConfigList) DeepCopyObject() runtime.Object { return jsonCopy(l) }

// AddToScheme registers the types.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ClusterConfig{}, &ClusterConfigList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
