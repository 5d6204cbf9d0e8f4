// Package preview answers plans: what a commit would change in the
// cluster, computed without changing anything. Each CloudFormation stack
// gets a change set that is read and deleted again, never executed; the
// manifests a server-side dry run, compared with the live objects; and the
// node pools the nodes their new revision would make outdated.
package preview

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/pipeline"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// Failure is why a preview has no result, in the words a reconcile of the
// commit would report: Kind is the problem type's last segment.
type Failure struct {
	Kind  string
	Title string
	Err   error
}

func (f *Failure) Error() string { return f.Title + ": " + f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Previewer computes previews of commits for one cluster.
type Previewer struct {
	kube   client.Client
	dryRun *ssa.ResourceManager
	// aws is nil when the agent has no AWS access.
	aws *cloud.AWS
	git configrepo.Credentials
}

// New returns a Previewer that reads the cluster through kube, whose REST
// mapper must know every kind (controller-runtime's dynamic one does).
func New(kube client.Client, aws *cloud.AWS, git configrepo.Credentials) *Previewer {
	return &Previewer{kube: kube, dryRun: ssa.NewResourceManager(kube, nil, ssa.Owner{Field: apply.FieldManager, Group: "caravan.io"}), aws: aws, git: git}
}

// Preview says what the plan's commit would change in the cluster, from
// its assignment and the status the last reconcile left (the inventory,
// each pool's revision). An error is a *Failure.
func (p *Previewer) Preview(ctx context.Context, a api.Assignment, st clusterconfig.Status, plan api.AssignedPlan) (*api.PlanResult, error) {
	repo, err := configrepo.Open(a.Channel.RepositoryURL, p.git)
	if err != nil {
		return nil, &Failure{Kind: "source", Title: "The config repo cannot be read", Err: err}
	}
	files, err := repo.FetchCommit(ctx, plan.Commit)
	if err != nil {
		return nil, &Failure{Kind: "source", Title: "The commit cannot be fetched", Err: err}
	}
	built, err := pipeline.Render(ctx, files, a, pipeline.Options{KMS: p.kms(a.Cluster.Region)})
	switch pipeline.StepOf(err) {
	case pipeline.StepSecrets:
		return nil, &Failure{Kind: "secrets", Title: "An encrypted config item cannot be decrypted", Err: errors.Unwrap(err)}
	case pipeline.StepRender:
		return nil, &Failure{Kind: "render", Title: "The commit cannot be rendered", Err: errors.Unwrap(err)}
	}
	plain, rendered, cluster := built.Assignment, built.Manifests, built.Cluster
	result := &api.PlanResult{Stacks: []api.StackPlan{}, NodePools: []api.NodePoolPlan{}}
	revisions := map[string]string{}
	if cluster != nil {
		if result.Stacks, revisions, err = p.stacks(ctx, files, plain, rendered.ConfigItems, cluster, plan.ID); err != nil {
			return nil, asFailure(err, "infrastructure", "The stacks cannot be previewed")
		}
	}
	if result.Objects, err = p.manifests(ctx, rendered, st.Inventory); err != nil {
		return nil, asFailure(err, "apply", "The manifests cannot be previewed")
	}
	settings := nodes.SettingsOf(a.Cluster.Environment, rendered.ConfigItems, revisions)
	if result.NodePools, err = p.nodePools(ctx, plain, settings, currentRevisions(st)); err != nil {
		return nil, asFailure(err, "nodes", "The nodes to replace cannot be previewed")
	}
	return result, nil
}

// kms is the KMS client of the region, when the agent has AWS access.
func (p *Previewer) kms(region string) cloud.Decrypter {
	if p.aws == nil {
		return nil
	}
	return p.aws.KMS(region)
}

func currentRevisions(st clusterconfig.Status) map[string]string {
	if st.NodeUpdate == nil {
		return map[string]string{}
	}
	return st.NodeUpdate.Revisions
}

func asFailure(err error, kind, title string) error {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return &Failure{Kind: kind, Title: title, Err: err}
}

// Problem is the failure as the plan's problem, found at now.
func (f *Failure) Problem(now time.Time) *api.StatusProblem {
	return &api.StatusProblem{Type: api.ProblemTypeBase + f.Kind, Title: f.Title, Detail: fmt.Sprint(f.Err), Since: now}
}
