// Package reconciler is the agent's loop: poll the assignment, which
// names the channel's head commit, decide, and when there is a new version
// check the commit against its branch, render it, apply it, wait for
// health and report, in the cluster and at the registry.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/drift"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/pipeline"
	"github.com/caravan-gitops/caravan/agent/preview"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// Config is how the loop runs.
type Config struct {
	ClusterID    string
	AgentVersion string
	// Interval is how long one assignment long-poll waits.
	Interval time.Duration
	// HealthTimeout bounds the health wait unless the config item
	// health_timeout says otherwise.
	HealthTimeout time.Duration
	Git           configrepo.Credentials
}

// StatusReporter sends status and the answers to plans to the registry.
type StatusReporter interface {
	PutClusterStatus(ctx context.Context, clusterID string, st *api.ClusterStatus) error
	preview.Reporter
}

// Reconciler runs the loop.
type Reconciler struct {
	cfg      Config
	keeper   *assignment.Keeper
	registry StatusReporter
	kube     client.Client
	applier  *apply.Applier
	events   events.Recorder
	log      logr.Logger
	metrics  *Metrics
	// sourceMetrics count the branch listings; unregistered unless
	// WithSourceMetrics gives them.
	sourceMetrics *SourceMetrics
	now           func() time.Time
	// config is the ClusterConfig as the last reconcile left it, read again
	// only when its resourceVersion moved: the status holds the inventory,
	// and most reconciles change nothing.
	config *clusterconfig.ClusterConfig
	// watch, when set, tells the ClusterConfig's resourceVersion without a
	// request.
	watch *configWatch
	// statusWritten is when the reconciler last wrote the status.
	statusWritten time.Time
	infra         Infrastructure
	// open opens the config repo; nil opens the repository itself.
	open OpenSource
	// registryDown is set while the last poll did not reach the registry.
	registryDown atomic.Bool
	// branch is what the agent knows of its branch besides the assignment.
	branch branchState
	// wakeAt is the earliest forecast force, or opening of a node update
	// window, the last reconcile found.
	wakeAt time.Time
	// windowAt is when the update window opens for a version that waits.
	windowAt time.Time
	// clock is how far the agent's clock is from the registry's.
	clock clockSkew
	// previews answers the assignment's plans; made at the first plan.
	previews *preview.Runner
	// drift keeps the cluster as its version left it between versions;
	// adoptTried is the version it last tried to take up after a start.
	drift      *drift.Tracker
	adoptTried string
	// rollers holds the Roller of the cluster's account and region.
	rollers struct {
		key    string
		roller *nodes.Roller
	}
}

// New returns a Reconciler.
func New(cfg Config, keeper *assignment.Keeper, registry StatusReporter, kube client.Client, applier *apply.Applier,
	recorder events.Recorder, log logr.Logger, metrics *Metrics) *Reconciler {
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = 10 * time.Minute
	}
	return &Reconciler{cfg: cfg, keeper: keeper, registry: registry, kube: kube, applier: applier, events: recorder, log: log, metrics: metrics,
		sourceMetrics: NewSourceMetrics(nil), now: time.Now, branch: branchState{spread: rand.Float64()}}
}

// Reconcile converges the cluster on the assignment once, at the head of
// its branch listed now (a rehearsal's source pins it), whatever commit
// the assignment names.
func (r *Reconciler) Reconcile(ctx context.Context, a *api.Assignment) {
	r.reconcile(ctx, a, listBranch)
}

// reconcile converges the cluster on the assignment, at the commit mode
// takes: in the loop the registry's head, the branch listed only as the
// fallback, so a roll's frequent passes need no look at git.
func (r *Reconciler) reconcile(ctx context.Context, a *api.Assignment, mode headMode) {
	a, plans := withoutPlans(a)
	// Deferred before finish is, so it runs after it: plans are answered
	// once the reconcile has reported, and never hold its convergence back.
	defer r.answerPlans(ctx, *a, plans)
	cc, err := r.readClusterConfig(ctx)
	if err != nil {
		r.log.Error(err, "reading the ClusterConfig")
		return
	}
	out := outcome{status: cc.Status, phase: api.PhaseIdle}
	out.status.NextWindow = nil
	defer func() { r.finish(ctx, cc, &out) }()

	repo, err := r.openSource(a.Channel.RepositoryURL)
	if err != nil {
		out.fail("source", "The config repo cannot be read", err)
		return
	}
	head, err := r.pickHead(ctx, repo, a, mode)
	if err != nil {
		out.fail("source", "The channel's branch cannot be listed", err)
		return
	}
	commit := head.Commit
	if commit == "" {
		// Nothing published yet under an enforced gate: the cluster
		// stays at its version, with the assignment's other changes.
		commit = cc.Status.LastAppliedRevision
	}
	if commit == "" {
		r.log.Info("the registry has published no head of the channel yet; waiting for it", "channel", a.Channel.Name)
		out.keepProblems = true
		return
	}
	d := Decide(cc.Spec, a, commit, cc.Status, r.now())
	r.holdDrift(d)
	if d.Action != Converge && d.Action != Decommission {
		r.adoptVersion(ctx, cc, repo, a)
	}
	switch d.Action {
	case Nothing:
		out.keepProblems = true
	case Suspended:
		out.block(d.Reason, true, heldVersion(d, cc.Status))
	case Blocked:
		out.block(d.Reason, false, heldVersion(d, cc.Status))
		if len(out.status.Rolls) > 0 {
			r.rollNodes(ctx, *a, &out, true)
		}
	case Converge:
		r.converge(ctx, cc, repo, a, commit, d, &out)
	case NodeWork:
		out.keepProblems = true
		r.nodeWork(ctx, cc, *a, &out)
	case WaitForWindow:
		r.waitForWindow(ctx, cc, *a, d, &out)
	case Decommission:
		r.decommission(ctx, *a, &out)
	}
}

// waitForWindow holds a new version until the update window opens; the
// current version's node work goes on meanwhile, under its own windows.
func (r *Reconciler) waitForWindow(ctx context.Context, cc *clusterconfig.ClusterConfig, a api.Assignment, d Decision, out *outcome) {
	out.keepProblems = true
	if d.WindowErr != nil {
		out.fail("window", "The update window cannot be read; no new version starts", d.WindowErr)
		out.stalled = true
		return
	}
	out.waiting = &d
	next := metaTime(d.NextWindow)
	out.status.NextWindow = &next
	if cc.Status.CurrentVersion != "" {
		r.nodeWork(ctx, cc, a, out)
	}
	if out.phase == api.PhaseIdle || out.phase == api.PhaseRollingNodes {
		out.phase = api.PhaseWaitingForWindow
	}
}

// withoutPlans splits the plans off the assignment: they are no part of
// the version the cluster converges to.
func withoutPlans(a *api.Assignment) (*api.Assignment, []api.AssignedPlan) {
	plain := *a
	plain.Plans = nil
	return &plain, a.Plans
}

// answerPlans previews the plans' commits for the registry.
func (r *Reconciler) answerPlans(ctx context.Context, a api.Assignment, plans []api.AssignedPlan) {
	if len(plans) == 0 || ctx.Err() != nil {
		return
	}
	cc, err := r.readClusterConfig(ctx)
	if err != nil {
		r.log.Error(err, "reading the ClusterConfig to answer plans")
		return
	}
	if r.previews == nil {
		r.previews = preview.NewRunner(preview.New(r.kube, r.infra.AWS, r.cfg.Git), r.registry, r.cfg.ClusterID, r.log.WithName("plans"))
		if r.drift != nil {
			r.previews.WithDrifted(r.drift.Drifted)
		}
	}
	r.previews.Answer(ctx, a, cc.Status, plans)
}

// readClusterConfig reads the ClusterConfig's resourceVersion, from the
// watch or else from its metadata, and the whole object only when it
// changed since the last reconcile wrote it. A watch not yet showing the
// last write reads the object again, never an older one.
func (r *Reconciler) readClusterConfig(ctx context.Context) (*clusterconfig.ClusterConfig, error) {
	key := client.ObjectKey{Name: clusterconfig.Name}
	version, watched := r.watch.version()
	if !watched {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(clusterconfig.GroupVersion.WithKind("ClusterConfig"))
		if err := r.kube.Get(ctx, key, meta); err != nil {
			return nil, err
		}
		version = meta.ResourceVersion
	}
	if r.config != nil && r.config.ResourceVersion == version {
		return r.config, nil
	}
	r.config = nil
	cc := &clusterconfig.ClusterConfig{}
	if err := r.kube.Get(ctx, key, cc); err != nil {
		return nil, err
	}
	return cc, nil
}

// converge checks the commit against its branch, renders, applies and
// waits for one version.
func (r *Reconciler) converge(ctx context.Context, cc *clusterconfig.ClusterConfig, repo Source, a *api.Assignment, commit string, d Decision, out *outcome) {
	snap, err := r.fetchCommit(ctx, repo, a, commit)
	if errors.Is(err, configrepo.ErrNotOnBranch) {
		// Not a version under way: nothing of it started.
		out.fail("source", fmt.Sprintf("Commit %s is not on branch %s; nothing of it was applied", configrepo.Short(commit), a.Channel.Branch), err)
		return
	}
	out.status.NextVersion = d.Version
	if err != nil {
		out.fail("source", "The commit cannot be fetched", err)
		return
	}
	r.log.Info("fetched the commit", "commit", snap.Commit)
	version := Version(snap.Commit, a)
	out.status.NextVersion = version
	r.enter(ctx, cc, out, stageRendering, version)
	inputs, err := render.InputDigest(snap.Files, *a, r.cfg.AgentVersion)
	if err != nil {
		out.fail("source", "The commit's files cannot be read", err)
		return
	}
	// The inputs' digest tells that the cluster needs nothing only while it
	// is as the applied inputs left it; a version that did not complete
	// since may have changed stacks or objects.
	if inputs == out.status.AppliedInputs && out.status.CurrentVersion != "" && !interrupted(cc.Status, version) {
		out.sameObjects = true
		out.applied(version, snap.Commit, r.now())
		return
	}
	built, err := pipeline.Render(ctx, snap.Files, *a, pipeline.Options{KMS: r.kms(a.Cluster.Region)})
	switch pipeline.StepOf(err) {
	case pipeline.StepSecrets:
		out.fail("secrets", "An encrypted config item cannot be decrypted; nothing was applied", errors.Unwrap(err))
		return
	case pipeline.StepRender:
		out.status.FailedVersion = version
		out.fail("render", "The commit cannot be rendered; nothing of it was applied", errors.Unwrap(err))
		out.stalled = true
		return
	}
	plain, rendered, cluster := built.Assignment, built.Manifests, built.Cluster
	r.keepRenderedPoll(rendered.ConfigItems)
	objects, err := rendered.Digest()
	if err != nil {
		out.fail("render", "The rendered objects cannot be encoded", err)
		return
	}
	r.log.Info("rendered the commit", "commit", snap.Commit, "objects", len(rendered.Objects))
	if cluster != nil {
		r.enter(ctx, cc, out, stageInfrastructure, version)
		converged, err := r.updateStacks(ctx, cc, snap.Files, plain, rendered.ConfigItems, cluster, version)
		if err != nil {
			out.fail("infrastructure", "A stack update failed; nothing after it was applied", err)
			return
		}
		out.status.PendingNodePools = converged.Orphans
		settings := nodes.SettingsOf(a.Cluster.Environment, rendered.ConfigItems, converged.Revisions)
		out.status.NodeUpdate = &settings
	}
	if objects == out.status.AppliedObjects && out.status.CurrentVersion != "" {
		r.keepVersion(rendered, out.status.Inventory)
		out.sameObjects = true
		out.applied(version, snap.Commit, r.now())
		out.status.AppliedInputs = inputs
		r.nodeWork(ctx, cc, plain, out)
		return
	}
	previous := out.status.Inventory
	if err := r.beginApply(ctx, cc, out, rendered, version); err != nil {
		out.fail("apply", "The ClusterConfig status cannot be written before applying; nothing was applied", err)
		return
	}
	res, err := r.applyVersion(ctx, rendered, previous)
	if res != nil {
		out.status.Inventory = mergeInventory(out.status.Inventory, res, err == nil)
		out.changes = res
	}
	var objErr *apply.ObjectError
	switch {
	case errors.As(err, &objErr):
		out.fail("apply", "The commit's objects were refused", err)
		return
	case err != nil:
		out.fail("apply", "Applying failed", err)
		return
	}
	sent := res.AppliedInventory()
	r.enter(ctx, cc, out, stageHealth, version)
	if err := r.waitHealthy(ctx, repo, a, version, rendered, sent); err != nil {
		out.status.Inventory = out.status.Inventory.WithoutDigests(sent)
		out.fail("health", "Applied objects did not become healthy", err)
		return
	}
	r.log.Info("version applied and healthy", "version", version, "applied", len(res.Applied.Entries), "unchanged", res.Unchanged)
	out.applied(version, snap.Commit, r.now())
	out.status.AppliedInputs, out.status.AppliedObjects = inputs, objects
	r.nodeWork(ctx, cc, plain, out)
}

// nodeWork retires the node pools that left the registry and replaces
// outdated nodes, a pass at a time, once the version is applied: the
// workloads have somewhere to go by then.
func (r *Reconciler) nodeWork(ctx context.Context, cc *clusterconfig.ClusterConfig, a api.Assignment, out *outcome) {
	if len(out.status.PendingNodePools) > 0 {
		r.retirePools(ctx, cc, a, out)
	}
	r.rollNodes(ctx, a, out, false)
}

// kms is the KMS client of the region, when the agent has AWS access.
func (r *Reconciler) kms(region string) cloud.Decrypter {
	if r.infra.AWS == nil {
		return nil
	}
	return r.infra.AWS.KMS(region)
}

// beginApply records, as the apply stage begins and before anything is
// applied, every object the cluster may hold after the apply, and that the
// applied inputs are in flux: an agent that dies half way then still prunes
// what it applied, and never takes a later commit with the old inputs for
// one that needs no apply.
func (r *Reconciler) beginApply(ctx context.Context, cc *clusterconfig.ClusterConfig, out *outcome, rendered *render.Result, version string) error {
	inventory := mergeInventory(out.status.Inventory, &apply.Result{Inventory: apply.InventoryOf(rendered.Objects)}, false)
	err := r.begin(ctx, cc, out, stageApplying, version, func(st *clusterconfig.Status) {
		st.AppliedInputs, st.AppliedObjects = "", ""
		st.NextVersion = out.status.NextVersion
		st.Inventory = inventory
	})
	if err != nil {
		return err
	}
	out.status.AppliedInputs, out.status.AppliedObjects, out.status.Inventory = "", "", inventory
	return nil
}

// mergeInventory keeps everything that may now be in the cluster: after a
// failed apply, the old and the new objects alike, so a later prune misses none.
func mergeInventory(old apply.Inventory, res *apply.Result, ok bool) apply.Inventory {
	if ok {
		return res.Inventory
	}
	seen := map[string]bool{}
	var out apply.Inventory
	for _, e := range append(append(apply.Inventory{}, old...), res.Inventory...) {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}

// ConfigHealthTimeout is the config item that bounds the health wait.
const ConfigHealthTimeout = "health_timeout"

// waitHealthy waits for the applied objects, and gives up as soon as a newer
// version or a block arrives, so a slow wait never holds the next fix back.
func (r *Reconciler) waitHealthy(ctx context.Context, repo Source, a *api.Assignment, version string, rendered *render.Result, inv apply.Inventory) error {
	timeout := r.cfg.HealthTimeout
	if d, err := time.ParseDuration(rendered.ConfigItems[ConfigHealthTimeout]); err == nil && d > 0 {
		timeout = d
	}
	waitCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if r.keeper != nil {
		go r.watchForNewer(waitCtx, cancel, repo, a, version)
	}
	err := r.applier.Wait(waitCtx, inv, timeout)
	if cause := context.Cause(waitCtx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// errSuperseded ends a health wait that a newer version made pointless.
var errSuperseded = errors.New("superseded by a newer version before it became healthy")

// watchForNewer cancels the health wait once the head the registry
// publishes (or, as the fallback, the branch's head) or the assignment no
// longer make version. It reads the assignment the loop's long-poll keeps
// (Keeper.Latest), which a change at the registry answers at once, and
// never polls itself: a Poll of its own would race with the loop's, or,
// made to take turns, wait out the loop's long-poll.
func (r *Reconciler) watchForNewer(ctx context.Context, cancel context.CancelCauseFunc, repo Source, a *api.Assignment, version string) {
	tick := time.NewTicker(max(r.cfg.Interval/6, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		latest := r.keeper.Latest()
		if latest == nil {
			continue
		}
		next, _ := withoutPlans(latest)
		head, err := r.pickHead(ctx, repo, next, followRegistry)
		if err != nil || head.Commit == "" {
			continue
		}
		if Version(head.Commit, next) != version {
			r.log.Info("a newer version arrived during the health wait", "version", version)
			cancel(errSuperseded)
			return
		}
	}
}

// outcome is what one reconcile found, written out by finish.
type outcome struct {
	status       clusterconfig.Status
	phase        string
	problem      *api.StatusProblem
	keepProblems bool
	stalled      bool
	blockReason  string
	// suspended: the block is the ClusterConfig's spec.suspend.
	suspended bool
	// held is the version the block holds back, if any.
	held       string
	changes    *apply.Result
	appliedNow bool
	// sameObjects: the version renders what the current version rendered,
	// so it was taken without an apply.
	sameObjects bool
	// pools is the progress of node pools being drained.
	pools []api.NodePoolProgress
	// waiting is set when a new version waits for the update window.
	waiting *Decision
	// stage is the stage of the version under way, the last one begun.
	stage stage
}

func (o *outcome) fail(kind, title string, err error) {
	o.phase = api.PhaseFailed
	o.problem = &api.StatusProblem{Type: api.ProblemTypeBase + kind, Title: title, Detail: err.Error()}
}

func (o *outcome) block(reason string, suspended bool, held string) {
	o.phase = api.PhaseBlocked
	o.blockReason, o.suspended, o.held = reason, suspended, held
}

// heldVersion is the version a block holds back, if it is not the current
// one.
func heldVersion(d Decision, st clusterconfig.Status) string {
	if d.Version == st.CurrentVersion {
		return ""
	}
	return d.Version
}

func (o *outcome) applied(version, commit string, now time.Time) {
	o.appliedNow = true
	if o.status.CurrentVersion != version {
		o.status.LastVersion = o.status.CurrentVersion
	}
	o.status.CurrentVersion, o.status.NextVersion, o.status.FailedVersion = version, "", ""
	o.status.LastAppliedRevision = commit
	o.status.Problems = nil
	t := metaTime(now)
	o.status.LastAppliedTime = &t
}
