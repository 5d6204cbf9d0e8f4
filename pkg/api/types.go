// Package api holds the registry's wire types, shared by caravan-central, the
// registry client, the CLI and the agent, and the pure rules over them
// (validation, config item merging, drain SLA defaults).
package api

import "time"

// Lifecycle states of a cluster.
const (
	LifecycleRequested              = "requested"
	LifecycleReady                  = "ready"
	LifecycleDecommissionRequested  = "decommission-requested"
	LifecycleDecommissioned         = "decommissioned"
	ProviderAWS                     = "aws"
	DiscountNone                    = "none"
	DiscountSpot                    = "spot"
	EnvironmentProduction           = "production"
	RoleAdmin                       = "admin"
	RoleReader                      = "reader"
	RoleAgent                       = "agent"
	accountLifecycleDefault         = "ready"
	defaultClusterCriticalityLevel  = 1
	defaultAccountCriticalityLevel  = 1
	defaultNodePoolDiscountStrategy = DiscountNone
)

// Phases an agent reports.
const (
	PhaseIdle                   = "idle"
	PhaseRendering              = "rendering"
	PhaseUpdatingInfrastructure = "updating-infrastructure"
	PhaseApplying               = "applying"
	PhaseRollingNodes           = "rolling-nodes"
	// PhaseDecommissioning: the cluster's lifecycle_status is
	// decommission-requested and the agent deletes its stacks.
	PhaseDecommissioning = "decommissioning"
	// PhaseDecommissioned: the cluster stack is deleted. The registry takes
	// it only once the decommission is confirmed (DecommissionConfirmedAt),
	// and then records the cluster's lifecycle_status as decommissioned.
	PhaseDecommissioned = "decommissioned"
	PhaseBlocked        = "blocked"
	PhaseFailed         = "failed"
	// PhaseWaitingForWindow: a new version waits for the cluster's update
	// window; ClusterStatus.NextWindow says when it opens.
	PhaseWaitingForWindow = "waiting-for-window"
)

// Phases lists every phase: those of a reconcile in their order, those of a
// decommission in theirs, then blocked and failed, which stop either.
var Phases = []string{
	PhaseIdle, PhaseRendering, PhaseUpdatingInfrastructure, PhaseApplying, PhaseRollingNodes,
	PhaseDecommissioning, PhaseDecommissioned,
	PhaseBlocked, PhaseFailed, PhaseWaitingForWindow,
}

// LifecycleStatuses lists every cluster lifecycle state.
var LifecycleStatuses = []string{LifecycleRequested, LifecycleReady, LifecycleDecommissionRequested, LifecycleDecommissioned}

// Roles lists every token role.
var Roles = []string{RoleAdmin, RoleReader, RoleAgent}

// InfrastructureAccount is a cloud account that holds clusters.
type InfrastructureAccount struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Owner           string            `json:"owner"`
	Environment     string            `json:"environment"`
	LifecycleStatus string            `json:"lifecycle_status"`
	Criticality     int               `json:"criticality"`
	ConfigItems     map[string]string `json:"config_items"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

// Cluster is one Kubernetes cluster of the fleet. NodePools and Status are
// read-only here: pools have their own endpoints and the agent writes status.
// DecommissionConfirmedAt is read-only too: only the registry sets it, when
// an admin confirms the decommission (POST /api/v1/clusters/{id}/decommission),
// and clears it when lifecycle_status leaves decommission-requested for
// anything but decommissioned.
type Cluster struct {
	ID                    string            `json:"id"`
	Alias                 string            `json:"alias"`
	InfrastructureAccount string            `json:"infrastructure_account"`
	Region                string            `json:"region"`
	APIServerURL          string            `json:"api_server_url"`
	Environment           string            `json:"environment"`
	Channel               string            `json:"channel"`
	Provider              string            `json:"provider"`
	CriticalityLevel      int               `json:"criticality_level"`
	LifecycleStatus       string            `json:"lifecycle_status"`
	ConfigItems           map[string]string `json:"config_items"`
	NodePools             []NodePool        `json:"node_pools"`
	Status                *ClusterStatus    `json:"status,omitempty"`
	CreatedAt             time.Time         `json:"created_at"`
	UpdatedAt             time.Time         `json:"updated_at"`
	// DecommissionConfirmedAt is when an admin confirmed the decommission:
	// from then on the agent may delete the cluster stack.
	DecommissionConfirmedAt *time.Time `json:"decommission_confirmed_at,omitempty"`
	// Schedule is read-only: when the cluster may change, computed by the
	// registry when it answers (windows merged over the account, freezes).
	Schedule *ClusterSchedule `json:"schedule,omitempty"`
}

// CarryDecommissionConfirmation gives c, which a write makes of old, old's
// decommission confirmation, which the write cannot change. The
// confirmation holds while lifecycle_status is decommission-requested or
// decommissioned; a write that sets any other state (back to ready, say)
// drops it, so that a later decommission must be confirmed again.
func (c *Cluster) CarryDecommissionConfirmation(old Cluster) {
	c.DecommissionConfirmedAt = old.DecommissionConfirmedAt
	if c.LifecycleStatus != LifecycleDecommissionRequested && c.LifecycleStatus != LifecycleDecommissioned {
		c.DecommissionConfirmedAt = nil
	}
}

// Taint is a Kubernetes node taint put on every node of a pool.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// NodePool is a group of nodes of one shape, backed by one auto scaling group.
type NodePool struct {
	Name             string            `json:"name"`
	Profile          string            `json:"profile"`
	InstanceTypes    []string          `json:"instance_types"`
	MinSize          int               `json:"min_size"`
	MaxSize          int               `json:"max_size"`
	DiscountStrategy string            `json:"discount_strategy"`
	ConfigItems      map[string]string `json:"config_items"`
	Labels           map[string]string `json:"labels"`
	Taints           []Taint           `json:"taints"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
}

// Channel is one step of the promotion path, backed by one git branch.
// Head, Clusters and Publication are read-only: the registry reads the
// branch head from git, counts the channel's clusters and says what it
// publishes when it answers.
type Channel struct {
	Name          string `json:"name"`
	Branch        string `json:"branch"`
	Position      int    `json:"position"`
	RepositoryURL string `json:"repository_url"`
	// PromotionSoak is how long a commit must have been current on every
	// cluster of this channel before it may be promoted from it, a Go
	// duration; empty means DefaultPromotionSoak of the channel's name.
	PromotionSoak string `json:"promotion_soak,omitempty"`
	// Gate is how the promotion gate binds on this channel, GateEnforced
	// or GateAdvisory; empty means DefaultGate of the channel's name. The
	// first channel (lowest position) has no channel before it and
	// publishes its branch head whatever Gate says.
	Gate     string         `json:"gate,omitempty"`
	Head     *ChannelHead   `json:"head,omitempty"`
	Clusters *ClusterCounts `json:"clusters,omitempty"`
	// Publication is what the registry hands the channel's agents, and
	// the head it holds back; read-only, like Head and Clusters.
	Publication *ChannelPublication `json:"publication,omitempty"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
}

// Block stops updates of a cluster, or of one node pool when NodePool is set.
type Block struct {
	ID        string     `json:"id"`
	ClusterID string     `json:"cluster_id"`
	NodePool  string     `json:"node_pool,omitempty"`
	Reason    string     `json:"reason"`
	By        string     `json:"by"`
	Since     time.Time  `json:"since"`
	Until     *time.Time `json:"until,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// ActiveAt reports whether the block is in force at now.
func (b Block) ActiveAt(now time.Time) bool {
	return b.Until == nil || now.Before(*b.Until)
}

// AuditEntry records one write: who did what, with the resource before and after.
type AuditEntry struct {
	ID           int64     `json:"id"`
	Time         time.Time `json:"time"`
	Actor        string    `json:"actor"`
	Action       string    `json:"action"`
	ResourceType string    `json:"resource_type"`
	ResourceID   string    `json:"resource_id"`
	Before       any       `json:"before"`
	After        any       `json:"after"`
}

// Token is an API credential. Secret is only ever set in the answer to its creation.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	ClusterID string     `json:"cluster_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Secret    string     `json:"secret,omitempty"`
}

// ClusterStatus is what an agent reports about its cluster.
type ClusterStatus struct {
	CurrentVersion string             `json:"current_version"`
	NextVersion    string             `json:"next_version"`
	LastVersion    string             `json:"last_version"`
	Phase          string             `json:"phase"`
	NodePools      []NodePoolProgress `json:"node_pools"`
	Problems       []StatusProblem    `json:"problems"`
	AgentVersion   string             `json:"agent_version"`
	Heartbeat      time.Time          `json:"heartbeat"`
	ReceivedAt     time.Time          `json:"received_at"`
	// NextWindow is when the update window next opens, while the phase is
	// waiting-for-window.
	NextWindow *time.Time `json:"next_window,omitempty"`
	// Drift is what the agent found and corrected between versions.
	Drift *DriftStatus `json:"drift,omitempty"`
}

// NodePoolProgress is the rolling update progress of one node pool.
type NodePoolProgress struct {
	Name       string `json:"name"`
	NodesTotal int    `json:"nodes_total"`
	Outdated   int    `json:"outdated"`
	Draining   int    `json:"draining"`
	// NextForcedEviction is the earliest time the drain SLA lets the
	// agent delete a pod whose PodDisruptionBudget refuses its eviction,
	// and HeldBy the rule that holds it back until then.
	NextForcedEviction *time.Time `json:"next_forced_eviction,omitempty"`
	HeldBy             string     `json:"held_by,omitempty"`
	// NextWindow is set while the pool's roll pauses outside its node
	// update window: when the window opens and the roll goes on.
	NextWindow *time.Time `json:"next_window,omitempty"`
}

// StatusProblem is a problem an agent reports, in the spirit of RFC 9457.
type StatusProblem struct {
	Type   string    `json:"type"`
	Title  string    `json:"title"`
	Detail string    `json:"detail,omitempty"`
	Since  time.Time `json:"since"`
}

// StatusHistoryEntry records when a cluster reached a version or phase.
type StatusHistoryEntry struct {
	Time           time.Time `json:"time"`
	CurrentVersion string    `json:"current_version"`
	NextVersion    string    `json:"next_version"`
	Phase          string    `json:"phase"`
}

// Assignment is everything an agent needs to converge its cluster, in one document.
type Assignment struct {
	Cluster     AssignedCluster    `json:"cluster"`
	Channel     AssignedChannel    `json:"channel"`
	ConfigItems map[string]string  `json:"config_items"`
	NodePools   []AssignedNodePool `json:"node_pools"`
	Blocks      []Block            `json:"blocks"`
	// Freezes are the freezes in force that cover the cluster.
	Freezes []Freeze `json:"freezes"`
	// Plans are the cluster's plans awaiting the agent's answer; left out
	// when there are none, and no part of the version the agent converges to.
	Plans []AssignedPlan `json:"plans,omitempty"`
}

// AssignedCluster is the cluster's own fields as an agent sees them.
type AssignedCluster struct {
	ID                    string `json:"id"`
	LocalID               string `json:"local_id"`
	Alias                 string `json:"alias"`
	InfrastructureAccount string `json:"infrastructure_account"`
	Region                string `json:"region"`
	APIServerURL          string `json:"api_server_url"`
	Environment           string `json:"environment"`
	Provider              string `json:"provider"`
	CriticalityLevel      int    `json:"criticality_level"`
	LifecycleStatus       string `json:"lifecycle_status"`
	// DecommissionConfirmed tells the agent of a cluster whose lifecycle
	// status is decommission-requested that it may lift the termination
	// protection of the cluster stack and delete it, once the node pool
	// stacks are gone.
	DecommissionConfirmed bool `json:"decommission_confirmed,omitempty"`
}

// AssignedChannel is the channel a cluster follows.
type AssignedChannel struct {
	Name          string `json:"name"`
	Branch        string `json:"branch"`
	RepositoryURL string `json:"repository_url"`
	// Commit is the head commit of the channel's branch as the registry
	// read it; left out until it was read once.
	Commit string `json:"commit,omitempty"`
	// Gate is how the registry gates the heads it publishes on this
	// channel: GateEnforced publishes only promoted heads, so an agent
	// that lost its registry must not take the branch head on its own.
	Gate string `json:"gate,omitempty"`
}

// How a channel's promotion gate binds.
const (
	// GateEnforced: only a head promoted from the previous channel, or
	// let through by an override with a reason, reaches the agents.
	GateEnforced = "enforced"
	// GateAdvisory: the gate is shown and checked by promote, but any head
	// of the branch reaches the agents.
	GateAdvisory = "advisory"
)

// AssignedNodePool is a node pool with its effective config items.
type AssignedNodePool struct {
	Name             string            `json:"name"`
	Profile          string            `json:"profile"`
	InstanceTypes    []string          `json:"instance_types"`
	MinSize          int               `json:"min_size"`
	MaxSize          int               `json:"max_size"`
	DiscountStrategy string            `json:"discount_strategy"`
	ConfigItems      map[string]string `json:"config_items"`
	Labels           map[string]string `json:"labels"`
	Taints           []Taint           `json:"taints"`
}

// DrainSLA holds the drain rules as Go duration strings (see DESIGN.md).
type DrainSLA struct {
	MinPodLifetime              string `json:"min_pod_lifetime"`
	GracePeriod                 string `json:"grace_period"`
	ForceEvictInterval          string `json:"force_evict_interval"`
	MinHealthySiblingLifetime   string `json:"min_healthy_sibling_lifetime"`
	MinUnhealthySiblingLifetime string `json:"min_unhealthy_sibling_lifetime"`
}

// List is one page of a collection; Next is the cursor of the following page.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}
