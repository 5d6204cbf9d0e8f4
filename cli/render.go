package cli

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/agent/pipeline"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// assignmentReads is how many assignments --all reads from the registry at
// once: enough to hide the round trips, few enough for a small registry.
const assignmentReads = 8

type renderFlags struct {
	cluster string
	all     bool
	channel string
	commit  string
	branch  string
	out     string
	git     gitFlags
	output  *outputFlag
}

// renderedCluster is one row of render --all, and its JSON or YAML form.
type renderedCluster struct {
	Cluster string `json:"cluster"`
	Channel string `json:"channel"`
	Commit  string `json:"commit,omitempty"`
	Objects int    `json:"objects"`
	Stacks  int    `json:"stacks"`
	Error   string `json:"error,omitempty"`
}

func (a *app) renderCommand() *cobra.Command {
	f := &renderFlags{}
	cmd := &cobra.Command{
		Use:   "render (--cluster ID | --all [--channel C]) [--commit SHA | --branch B] [--out DIR]",
		Short: "Render a commit for one cluster or for the whole fleet, as each cluster's agent would",
		Long: `Render a commit of the config repo for a cluster exactly as its agent would:
the same code path, from the cluster's assignment read from the registry (its
config items, node pools and fields) and the commit read from git. Nothing is
changed anywhere. Config items encrypted with aws:kms: stay as their
ciphertext: only the cluster's agent can decrypt them.

The commit is --commit (a commit on any branch of the channel's repository),
else the head of --branch, else the head of the cluster's channel's branch.

With --cluster, the rendered Kubernetes objects are printed as YAML, or, with
--out DIR, written with the stacks and the effective config items:
  DIR/manifests.yaml, DIR/config-items.yaml, DIR/stacks/<stack>.yaml
Node pool stacks are rendered with placeholder-<output> for the cluster
stack's outputs, which only the applied cluster stack has.

With --all, the commit is rendered for every cluster of the registry (or of
--channel) and a table shows each cluster's objects, stacks and result; --out
DIR writes each cluster's files under DIR/<cluster id, ':' as '_'>/. The
exit status is 1 when any cluster fails to render; its row names the file and
line. Clusters of one environment share the kustomize build, so a fleet
renders in about the time of its distinct environments plus a substitution
per cluster. A reader token suffices.

The config repo is read with the operator's git credentials (see 'caravan
promote --help').`,
		Example: `  caravan render --cluster aws:123456789012:eu-central-1:kube-1 --commit 4b825dc --out /tmp/kube-1
  caravan render --cluster aws:123456789012:eu-central-1:kube-1 --branch my-change | kubectl diff -f -
  caravan render --all --commit "$(git rev-parse HEAD)"
  caravan render --all --channel stable --branch stable -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return a.render(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.cluster, "cluster", "", "the cluster to render for")
	fs.BoolVar(&f.all, "all", false, "render for every cluster (of --channel)")
	fs.StringVar(&f.channel, "channel", "", "with --all: only the clusters of this channel")
	fs.StringVar(&f.commit, "commit", "", "the commit to render (full id, or the start of one within the newest commits of a branch)")
	fs.StringVar(&f.branch, "branch", "", "render the head of this branch instead of the channel's")
	fs.StringVar(&f.out, "out", "", "write the rendered files under this directory")
	f.git.add(cmd)
	f.output = addOutputFlag(cmd, formatTable, formatJSON, formatYAML)
	return cmd
}

func (f *renderFlags) check() error {
	switch {
	case f.all == (f.cluster != ""):
		return usagef("give either --cluster or --all")
	case f.channel != "" && !f.all:
		return usagef("--channel selects clusters for --all")
	case f.commit != "" && f.branch != "":
		return usagef("give --commit or --branch, not both")
	}
	return nil
}

func (a *app) render(ctx context.Context, f *renderFlags) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	creds, err := f.git.credentials(a.getenv)
	if err != nil {
		return err
	}
	r := &fleetRender{flags: f, registry: cl, creds: creds, sources: map[sourceKey]*commitSource{},
		renders: make(chan struct{}, runtime.GOMAXPROCS(0))}
	if !f.all {
		return a.renderOne(ctx, r)
	}
	ids, err := clusterIDs(ctx, cl, f.channel)
	if err != nil {
		return err
	}
	rows := r.renderAll(ctx, ids)
	if err := a.writeRendered(f, rows); err != nil {
		return err
	}
	if failed := countFailed(rows); failed > 0 {
		return fmt.Errorf("%d of %d clusters failed to render", failed, len(rows))
	}
	return nil
}

// renderOne prints one cluster's objects, or writes its files.
func (a *app) renderOne(ctx context.Context, r *fleetRender) error {
	row, rendered := r.renderCluster(ctx, r.flags.cluster)
	if row.Error != "" {
		return fmt.Errorf("%s does not render at %s: %s", row.Cluster, orDash(configrepo.Short(row.Commit)), row.Error)
	}
	if r.flags.out != "" {
		fmt.Fprintf(a.out, "rendered %s at %s: %s, %s, into %s\n", row.Cluster, configrepo.Short(row.Commit),
			plural(row.Objects, "object"), plural(row.Stacks, "stack"), r.flags.out)
		return nil
	}
	manifests, err := manifestsYAML(rendered.Manifests)
	if err != nil {
		return err
	}
	_, err = a.out.Write(manifests)
	return err
}

func (a *app) writeRendered(f *renderFlags, rows []renderedCluster) error {
	if f.output.value != formatTable {
		return writeObject(a.out, f.output.value, rows)
	}
	table := make([][]string, len(rows))
	for i, r := range rows {
		result := "ok"
		if r.Error != "" {
			result = "FAILED: " + r.Error
		}
		table[i] = []string{r.Cluster, r.Channel, configrepo.Short(r.Commit), strconv.Itoa(r.Objects), strconv.Itoa(r.Stacks), result}
	}
	return writeTable(a.out, []string{"CLUSTER", "CHANNEL", "COMMIT", "OBJECTS", "STACKS", "RESULT"}, table)
}

func countFailed(rows []renderedCluster) int {
	n := 0
	for _, r := range rows {
		if r.Error != "" {
			n++
		}
	}
	return n
}

// clusterIDs lists every cluster of the channel ("" for all), sorted.
func clusterIDs(ctx context.Context, cl *registry.Client, channel string) ([]string, error) {
	var ids []string
	var page registry.Page
	for {
		l, err := cl.ListClusters(ctx, registry.ClusterFilter{Channel: channel}, page)
		if err != nil {
			return nil, err
		}
		for _, c := range l.Items {
			ids = append(ids, c.ID)
		}
		if l.Next == "" || l.Next == page.Continue {
			slices.Sort(ids)
			return ids, nil
		}
		page.Continue = l.Next
	}
}

// fleetRender renders one commit for many clusters, fetching each
// repository's commit once and sharing its kustomize builds.
type fleetRender struct {
	flags    *renderFlags
	registry *registry.Client
	creds    gitauth.Credentials
	// renders bounds the renders under way to the processors: the
	// assignment reads around them wait on the network, renders on CPU.
	renders chan struct{}

	mu      sync.Mutex
	sources map[sourceKey]*commitSource
}

// sourceKey is a commit to fetch: a repository and a commit or a branch.
type sourceKey struct{ url, commit, branch string }

// commitSource is a fetched commit and the renderer of its files.
type commitSource struct {
	once     sync.Once
	commit   string
	renderer *render.Renderer
	files    fs.FS
	err      error
}

// renderAll renders for each cluster, reading assignments a few at a time
// and rendering as many at once as there are processors.
func (r *fleetRender) renderAll(ctx context.Context, ids []string) []renderedCluster {
	rows := make([]renderedCluster, len(ids))
	reads := make(chan struct{}, assignmentReads)
	var wg sync.WaitGroup
	for i, id := range ids {
		reads <- struct{}{}
		wg.Go(func() {
			defer func() { <-reads }()
			rows[i], _ = r.renderCluster(ctx, id)
		})
	}
	wg.Wait()
	return rows
}

// renderCluster renders the commit for one cluster and writes its files
// when asked to; the row's Error says why it failed.
func (r *fleetRender) renderCluster(ctx context.Context, id string) (renderedCluster, *pipeline.Rendered) {
	row := renderedCluster{Cluster: id}
	res, err := r.registry.GetAssignment(ctx, id, registry.AssignmentOptions{})
	if err != nil {
		row.Error = fmt.Sprintf("reading the assignment: %v", err)
		return row, nil
	}
	a := *res.Assignment
	row.Channel = a.Channel.Name
	src := r.source(ctx, a.Channel)
	if src.err != nil {
		row.Error = src.err.Error()
		return row, nil
	}
	row.Commit = src.commit
	r.renders <- struct{}{}
	rendered, err := pipeline.Render(ctx, src.files, a, pipeline.Options{KeepCiphertext: true, Renderer: src.renderer})
	<-r.renders
	if err != nil {
		row.Error = err.Error()
		return row, nil
	}
	row.Objects = len(rendered.Manifests.Objects)
	row.Stacks = len(rendered.NodePools)
	if rendered.Cluster != nil {
		row.Stacks++
	}
	if r.flags.out != "" {
		dir := r.flags.out
		if r.flags.all {
			dir = filepath.Join(dir, strings.ReplaceAll(id, ":", "_"))
		}
		if err := writeRenderedFiles(dir, rendered); err != nil {
			row.Error = err.Error()
		}
	}
	return row, rendered
}

// source is the commit the flags name, in the channel's repository,
// fetched at its first use.
func (r *fleetRender) source(ctx context.Context, ch api.AssignedChannel) *commitSource {
	key := sourceKey{url: ch.RepositoryURL, commit: r.flags.commit, branch: r.flags.branch}
	if key.commit == "" && key.branch == "" {
		key.branch = ch.Branch
	}
	r.mu.Lock()
	src := r.sources[key]
	if src == nil {
		src = &commitSource{}
		r.sources[key] = src
	}
	r.mu.Unlock()
	src.once.Do(func() { src.fetch(ctx, key, r.creds) })
	return src
}

func (s *commitSource) fetch(ctx context.Context, key sourceKey, creds gitauth.Credentials) {
	repo, err := configrepo.Open(key.url, creds)
	if err != nil {
		s.err = fmt.Errorf("opening the config repo: %w", err)
		return
	}
	if key.commit != "" {
		s.commit = key.commit
		s.files, s.err = repo.FetchCommit(ctx, key.commit)
	} else {
		var snap *configrepo.Snapshot
		if snap, s.err = repo.Fetch(ctx, key.branch); s.err == nil {
			s.commit, s.files = snap.Commit, snap.Files
		}
	}
	if s.err != nil {
		s.err = fmt.Errorf("fetching from %s: %w", key.url, s.err)
		return
	}
	s.renderer = render.NewRenderer(s.files)
}

// writeRenderedFiles writes one cluster's render under dir.
func writeRenderedFiles(dir string, r *pipeline.Rendered) error {
	manifests, err := manifestsYAML(r.Manifests)
	if err != nil {
		return err
	}
	items, err := yaml.Marshal(r.Manifests.ConfigItems)
	if err != nil {
		return fmt.Errorf("encoding the config items: %w", err)
	}
	files := map[string][]byte{"manifests.yaml": manifests, "config-items.yaml": items}
	for _, s := range append([]*render.Stack{r.Cluster}, r.NodePools...) {
		if s != nil {
			files[filepath.Join("stacks", s.Name+".yaml")] = s.Body
		}
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("writing the render: %w", err)
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return fmt.Errorf("writing the render: %w", err)
		}
	}
	return nil
}

// manifestsYAML is the objects as one YAML stream, in the render's order.
func manifestsYAML(r *render.Result) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range r.Objects {
		doc, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(doc)
	}
	return b.Bytes(), nil
}
