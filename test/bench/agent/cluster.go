//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// cluster is a real control plane with kwok nodes.
type cluster struct {
	cp      *controlplane.ControlPlane
	version string
}

// startCluster launches a control plane with enough kwok nodes for the
// pods of the Deployments it will run (110 pods a node).
func startCluster(ctx context.Context, dir string, nodes int) (*cluster, time.Duration, error) {
	start := time.Now()
	cp, err := controlplane.Launch(ctx, dir)
	if err != nil {
		return nil, 0, fmt.Errorf("launching a control plane: %w", err)
	}
	c := &cluster{cp: cp}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = cp.AddNode(ctx, controlplane.Node{Name: fmt.Sprintf("node-%d", i), CPU: "32", Memory: "128Gi"})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			cp.Stop()
			return nil, 0, err
		}
	}
	if v, err := cp.Client.Discovery().ServerVersion(); err == nil {
		c.version = v.GitVersion
	}
	return c, time.Since(start), nil
}

func (c *cluster) stop() { c.cp.Stop() }

// agentConfig is the cluster's rest.Config as the agent has it in a pod:
// controller-runtime's GetConfig leaves client-side rate limiting off
// (QPS -1) and relies on the server's priority and fairness.
func (c *cluster) agentConfig() *rest.Config {
	cfg := rest.CopyConfig(c.cp.Config)
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// kubeClient is a controller-runtime client with the agent's scheme.
func (c *cluster) kubeClient(cfg *rest.Config) (client.Client, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := clusterconfig.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// prepareAgentNamespace creates the agent's namespace and the Secret with
// the git server's credentials, as the agent's installation does.
func (c *cluster) prepareAgentNamespace(ctx context.Context, namespace string, git *gitserver.Server) error {
	if _, err := c.cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := c.cp.Client.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git"},
		StringData: map[string]string{"username": git.User, "password": git.Password}}, metav1.CreateOptions{})
	return err
}

// requestCounter counts the API requests of a client, by kind.
type requestCounter struct {
	gets, lists, dryRuns, patches, other atomic.Int64
}

type requestCounts struct{ gets, lists, dryRuns, patches, other int64 }

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			switch {
			case r.Method == http.MethodPatch && r.URL.Query().Has("dryRun"):
				c.dryRuns.Add(1)
			case r.Method == http.MethodPatch:
				c.patches.Add(1)
			case r.Method == http.MethodGet && isList(r):
				c.lists.Add(1)
			case r.Method == http.MethodGet && isDiscovery(r):
				c.other.Add(1)
			case r.Method == http.MethodGet:
				c.gets.Add(1)
			default:
				c.other.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

// isList tells a LIST from a GET of one object by the path: after the
// group version, a collection is RESOURCE or namespaces/NS/RESOURCE.
func isList(r *http.Request) bool {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		segs = segs[3:]
	default:
		return false // discovery
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:]
	}
	return len(segs) == 1
}

func isDiscovery(r *http.Request) bool {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	return segs[0] == "openapi" || segs[0] == "api" && len(segs) <= 2 || segs[0] == "apis" && len(segs) <= 3
}

func (c *requestCounter) take() requestCounts {
	return requestCounts{gets: c.gets.Load(), lists: c.lists.Load(), dryRuns: c.dryRuns.Load(), patches: c.patches.Load(), other: c.other.Load()}
}

func (a requestCounts) sub(b requestCounts) requestCounts {
	return requestCounts{gets: a.gets - b.gets, lists: a.lists - b.lists, dryRuns: a.dryRuns - b.dryRuns, patches: a.patches - b.patches, other: a.other - b.other}
}

func (a requestCounts) total() int64 { return a.gets + a.lists + a.dryRuns + a.patches + a.other }

func (a requestCounts) String() string {
	s := host.Thousands(int(a.total()))
	var parts []string
	for _, p := range []struct {
		n    int64
		what string
	}{{a.gets, "GET"}, {a.lists, "LIST"}, {a.dryRuns, "dry-run PATCH"}, {a.patches, "PATCH"}, {a.other, "other"}} {
		if p.n > 0 {
			parts = append(parts, host.Thousands(int(p.n))+" "+p.what)
		}
	}
	if len(parts) > 0 {
		s += ": " + joinPlus(parts)
	}
	return s
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
