// Package render turns one commit of the config repo and a cluster's
// assignment into what the agent applies: effective config items and
// Kubernetes objects. It is pure: no network, no cluster, no clock; any
// error means nothing of the commit may be applied.
package render

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Paths of the config repo, documented in docs/config-repo.md.
const (
	DefaultsFile  = "config-defaults.yaml"
	DeletionsFile = "deletions.yaml"
	KubernetesDir = "kubernetes"
	OverlaysDir   = "kubernetes/overlays"
)

// Result is a rendered commit.
type Result struct {
	ConfigItems map[string]string
	Objects     []*unstructured.Unstructured
	Deletions   Deletions
}

// Deletions are the objects deletions.yaml asks to delete around the apply.
type Deletions struct {
	PreApply  []ObjectRef `json:"pre_apply"`
	PostApply []ObjectRef `json:"post_apply"`
}

// ObjectRef names an object to delete.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// Error is a render failure that names the file, and the line where known.
type Error struct {
	File   string
	Line   int
	Reason string
}

func (e *Error) Error() string {
	switch {
	case e.File == "":
		return e.Reason
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return e.File + ": " + e.Reason
}

// Render renders the repo tree for the assignment.
func Render(repo fs.FS, a api.Assignment) (*Result, error) {
	return render(repo, a, func() ([]*resource.Resource, error) { return kustomize(repo, a.Cluster.Environment) })
}

// Renderer renders one commit for any number of clusters. The kustomize
// build, the costly part, depends only on the files and the environment,
// so it is built once per environment and shared: each cluster then gets
// its own config items and substitution, into a copy of the build. Safe
// for concurrent use.
type Renderer struct {
	repo   fs.FS
	mu     sync.Mutex
	builds map[string]*build
}

type build struct {
	once      sync.Once
	resources []*resource.Resource
	err       error
}

// NewRenderer returns a Renderer of the repo tree.
func NewRenderer(repo fs.FS) *Renderer {
	return &Renderer{repo: repo, builds: map[string]*build{}}
}

// Render renders the commit for the assignment, as Render does.
func (r *Renderer) Render(a api.Assignment) (*Result, error) {
	return render(r.repo, a, func() ([]*resource.Resource, error) { return r.kustomized(a.Cluster.Environment) })
}

// kustomized is a copy of the environment's build, built at its first use.
func (r *Renderer) kustomized(environment string) ([]*resource.Resource, error) {
	r.mu.Lock()
	b := r.builds[environment]
	if b == nil {
		b = &build{}
		r.builds[environment] = b
	}
	r.mu.Unlock()
	b.once.Do(func() { b.resources, b.err = kustomize(r.repo, environment) })
	if b.err != nil {
		return nil, b.err
	}
	copies := make([]*resource.Resource, len(b.resources))
	for i, res := range b.resources {
		copies[i] = res.DeepCopy()
	}
	return copies, nil
}

// render renders with resources from kustomized, which substitution may
// change in place.
func render(repo fs.FS, a api.Assignment, kustomized func() ([]*resource.Resource, error)) (*Result, error) {
	items, err := ConfigItems(repo, a)
	if err != nil {
		return nil, err
	}
	deletions, err := readDeletions(repo)
	if err != nil {
		return nil, err
	}
	resources, err := kustomized()
	if err != nil {
		return nil, err
	}
	objects, err := substitute(repo, resources, Variables(a, items))
	if err != nil {
		return nil, err
	}
	return &Result{ConfigItems: items, Objects: objects, Deletions: deletions}, nil
}

// defaultsFile is the format of config-defaults.yaml.
type defaultsFile struct {
	Defaults     map[string]string            `json:"defaults"`
	Environments map[string]map[string]string `json:"environments"`
}

// ConfigItems layers the repo's defaults, its environment's defaults and
// the registry's effective values, in that order.
func ConfigItems(repo fs.FS, a api.Assignment) (map[string]string, error) {
	raw, err := fs.ReadFile(repo, DefaultsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return api.MergeConfigItems(a.ConfigItems), nil
	}
	if err != nil {
		return nil, &Error{File: DefaultsFile, Reason: err.Error()}
	}
	var d defaultsFile
	if err := yaml.UnmarshalStrict(raw, &d); err != nil {
		return nil, yamlError(DefaultsFile, err)
	}
	for key := range d.Defaults {
		if !api.ValidConfigKey(key) {
			return nil, &Error{File: DefaultsFile, Line: lineOf(raw, key+":"), Reason: fmt.Sprintf("config item key %q must match [a-z0-9_]+", key)}
		}
	}
	return api.MergeConfigItems(d.Defaults, d.Environments[a.Cluster.Environment], a.ConfigItems), nil
}

// Variables are what ${NAME} may name in manifests: the config items and
// the cluster's own fields.
func Variables(a api.Assignment, items map[string]string) map[string]string {
	vars := maps.Clone(items)
	c := a.Cluster
	for k, v := range map[string]string{
		"cluster_id": c.ID, "cluster_local_id": c.LocalID, "cluster_alias": c.Alias, "region": c.Region,
		"environment": c.Environment, "infrastructure_account": c.InfrastructureAccount, "api_server_url": c.APIServerURL,
		"provider": c.Provider, "criticality_level": strconv.Itoa(c.CriticalityLevel), "channel": a.Channel.Name,
	} {
		vars[k] = v
	}
	return vars
}

func readDeletions(repo fs.FS) (Deletions, error) {
	var d Deletions
	raw, err := fs.ReadFile(repo, DeletionsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, &Error{File: DeletionsFile, Reason: err.Error()}
	}
	if err := yaml.UnmarshalStrict(raw, &d); err != nil {
		return d, yamlError(DeletionsFile, err)
	}
	for i, r := range slices.Concat(d.PreApply, d.PostApply) {
		if r.Kind == "" || r.Name == "" {
			return d, &Error{File: DeletionsFile, Reason: fmt.Sprintf("entry %d needs a kind and a name", i+1)}
		}
	}
	return d, nil
}

// kustomize builds the environment's overlay in memory, with no plugins,
// and refuses remote bases so that rendering never reaches the network.
func kustomize(repo fs.FS, environment string) ([]*resource.Resource, error) {
	overlay := path.Join(OverlaysDir, environment)
	if _, err := fs.Stat(repo, path.Join(overlay, "kustomization.yaml")); err != nil {
		return nil, &Error{File: overlay, Reason: fmt.Sprintf("no overlay for environment %q: %v", environment, err)}
	}
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(repo, KubernetesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := fs.ReadFile(repo, p)
		if err != nil {
			return err
		}
		if d.Name() == "kustomization.yaml" || d.Name() == "kustomization.yml" {
			if err := refuseRemote(p, content); err != nil {
				return err
			}
		}
		return mem.WriteFile("/"+p, content)
	})
	if err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return nil, rerr
		}
		return nil, &Error{File: KubernetesDir, Reason: err.Error()}
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/"+overlay)
	if err != nil {
		return nil, kustomizeError(err)
	}
	return resources.Resources(), nil
}

// refuseRemote rejects kustomizations that load anything over the network.
func refuseRemote(file string, content []byte) error {
	var k struct {
		Resources  []string `json:"resources"`
		Components []string `json:"components"`
		Bases      []string `json:"bases"`
	}
	if err := yaml.Unmarshal(content, &k); err != nil {
		return yamlError(file, err)
	}
	for _, r := range slices.Concat(k.Resources, k.Components, k.Bases) {
		if strings.Contains(r, "://") || strings.HasPrefix(r, "github.com/") || strings.HasPrefix(r, "git@") {
			return &Error{File: file, Line: lineOf(content, r), Reason: fmt.Sprintf("remote resource %q: the config repo must be self-contained", r)}
		}
	}
	return nil
}
