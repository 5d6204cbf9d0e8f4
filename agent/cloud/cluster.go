package cloud

import (
	"context"
	"io/fs"
	"maps"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Config items of the stack updates.
const (
	ConfigTimeout       = "cloudformation_timeout"
	defaultStackTimeout = 25 * time.Minute
	// StackConcurrency bounds the node pool stacks converged at once.
	StackConcurrency = 4
)

// StackOptions are the options of a version's stack operations, from its
// effective config items.
func StackOptions(version string, items map[string]string) Options {
	timeout := defaultStackTimeout
	if d, err := time.ParseDuration(items[ConfigTimeout]); err == nil && d > 0 {
		timeout = d
	}
	return Options{Version: version, Bucket: items[ConfigTemplateBucket], Timeout: timeout}
}

// Changed hears of every stack ConvergeAll created or updated, or failed to.
type Changed func(stack *render.Stack, action Action, err error)

// Converged is what ConvergeAll leaves: the pools whose stacks the
// assignment no longer has, and each pool's revision, which its up to date
// instances carry.
type Converged struct {
	Orphans   []string
	Revisions map[string]string
}

// ConvergeAll brings the cluster stack, then the node pool stacks (rendered
// with its outputs, in parallel, at most StackConcurrency at once) to the
// version, from one Describe.
func (s *Stacks) ConvergeAll(ctx context.Context, files fs.FS, a api.Assignment, items map[string]string, cluster *render.Stack, opts Options, changed Changed) (*Converged, error) {
	observed, err := s.Describe(ctx)
	if err != nil {
		return nil, err
	}
	outputs, err := s.converge(ctx, cluster, observed, opts, changed)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(StackConcurrency)
	pools := make([]string, 0, len(a.NodePools))
	revisions := make([]string, len(a.NodePools))
	for i, pool := range a.NodePools {
		pools = append(pools, pool.Name)
		g.Go(func() error {
			stack, err := render.NodePoolStack(files, a, items, pool, outputs)
			if err != nil {
				return err
			}
			revisions[i] = stack.Revision
			_, err = s.converge(gctx, stack, observed, opts, changed)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := &Converged{Orphans: slices.Sorted(maps.Keys(Orphans(observed, a.Cluster.ID, pools))), Revisions: map[string]string{}}
	for i, pool := range pools {
		out.Revisions[pool] = revisions[i]
	}
	return out, nil
}

func (s *Stacks) converge(ctx context.Context, stack *render.Stack, observed []Observed, opts Options, changed Changed) (map[string]string, error) {
	current := Find(observed, stack.Name)
	action := Plan(stack.Digest, current).Action
	outputs, called, err := s.Converge(ctx, stack, current, opts)
	if (called || err != nil) && changed != nil {
		changed(stack, action, err)
	}
	return outputs, err
}
