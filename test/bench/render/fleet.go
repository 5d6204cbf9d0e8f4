//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

const (
	seedActor = "bench-render"
	repoName  = "config"
	// The two accounts: clusters of each environment live in their own.
	testAccount       = "aws:111111111111"
	productionAccount = "aws:222222222222"
	requestsMetric    = "caravan_central_http_requests_total"
)

var (
	channels = []string{"dev", "alpha", "beta", "stable"}
	regions  = []string{"eu-central-1", "eu-west-1", "us-east-1", "ap-southeast-2"}
)

// registry is one caravan-central, in this process, serving a fleet of n
// clusters from its own SQLite file.
type registry struct {
	url      string
	token    string // a reader token, as `caravan render` needs
	clusters []api.Cluster
	cancel   context.CancelFunc
	done     chan error
}

// startGit serves a copy of the reference config repo (manifests/) with
// the four channel branches, all at one commit, which it returns.
func startGit(root, dir string) (*gitserver.Server, string, error) {
	gitRoot := filepath.Join(dir, "git")
	if err := os.MkdirAll(gitRoot, 0o755); err != nil {
		return nil, "", err
	}
	git, err := gitserver.Launch(gitRoot, "caravan", "bench")
	if err != nil {
		return nil, "", err
	}
	sha, err := git.CreateRepo(repoName, filepath.Join(root, "manifests"), channels...)
	if err != nil {
		_ = git.Close()
		return nil, "", fmt.Errorf("creating the config repo on the git server: %w", err)
	}
	return git, sha, nil
}

// startRegistry seeds a new SQLite file with n clusters through the store
// API, as the server writes them, and serves it with caravan-central.
func startRegistry(ctx context.Context, dir string, git *gitserver.Server, n int) (*registry, error) {
	db := "sqlite://" + filepath.Join(dir, fmt.Sprintf("registry-%d.db", n))
	r := &registry{}
	if err := r.seed(ctx, db, git.RepoURL(repoName), n); err != nil {
		return nil, fmt.Errorf("seeding %d clusters: %w", n, err)
	}
	addr := make(chan string, 1)
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	cfg := central.Config{
		Listen: "127.0.0.1:0", Database: db, RepositoryURL: git.RepoURL(repoName),
		Git: gitauth.Credentials{Username: git.User, Password: git.Password}, GitRefresh: time.Hour,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Ready: func(a string) { addr <- a },
	}
	go func() { r.done <- central.Run(runCtx, cfg) }()
	select {
	case a := <-addr:
		r.url = "http://" + a
		return r, nil
	case err := <-r.done:
		cancel()
		return nil, fmt.Errorf("starting caravan-central: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("caravan-central did not start within 30 s")
	}
}

func (r *registry) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(40 * time.Second):
		return fmt.Errorf("caravan-central at %s did not stop within 40 s", r.url)
	}
}

func (r *registry) seed(ctx context.Context, db, repoURL string, n int) error {
	st, err := store.Open(ctx, db)
	if err != nil {
		return fmt.Errorf("opening %s: %w", db, err)
	}
	defer st.Close()
	if err := st.SeedChannels(ctx, central.DefaultChannels(repoURL), seedActor); err != nil {
		return fmt.Errorf("seeding channels: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, a := range []api.InfrastructureAccount{
		{ID: testAccount, Name: "platform-test", Owner: "team-platform", Environment: "test",
			ConfigItems: map[string]string{"node_image_id": "ami-04681a1dbd79675a5"}},
		{ID: productionAccount, Name: "platform-production", Owner: "team-platform", Environment: api.EnvironmentProduction,
			ConfigItems: map[string]string{"node_image_id": "ami-04681a1dbd79675a5", "api_server_allowed_cidr": "10.0.0.0/8"}},
	} {
		a.CreatedAt, a.UpdatedAt = now, now
		if err := host.CreateAccount(ctx, st, a); err != nil {
			return err
		}
	}
	r.clusters = fleet(n, now)
	for _, c := range r.clusters {
		if err := host.CreateCluster(ctx, st, c); err != nil {
			return err
		}
	}
	t, err := st.CreateToken(ctx, "bench-render-reader", api.RoleReader, "", seedActor)
	if err != nil {
		return fmt.Errorf("creating the reader token: %w", err)
	}
	r.token = t.Secret
	return nil
}

// fleet is n clusters over the four channels, the same first clusters
// whatever n: dev and alpha clusters are test clusters, beta and stable
// clusters mostly production ones; each has 1 to 3 node pools and a few
// config items of its own.
func fleet(n int, now time.Time) []api.Cluster {
	rng := rand.New(rand.NewPCG(16, 1000))
	out := make([]api.Cluster, n)
	for i := range n {
		out[i] = benchCluster(i, rng, now)
	}
	return out
}

func benchCluster(i int, rng *rand.Rand, now time.Time) api.Cluster {
	channel, region := channels[i%len(channels)], regions[(i/len(channels))%len(regions)]
	env, account := "test", testAccount
	if (channel == "beta" && rng.IntN(2) == 0) || (channel == "stable" && rng.IntN(5) > 0) {
		env, account = api.EnvironmentProduction, productionAccount
	}
	local := fmt.Sprintf("kube-%04d", i)
	items := map[string]string{
		// Each cluster its own VPC range (of its region and account).
		"vpc_cidr":                       fmt.Sprintf("10.%d.0.0/16", i%256),
		"default_container_memory_limit": []string{"512Mi", "1Gi", "2Gi"}[rng.IntN(3)],
		"hosted_zone":                    region + ".k8s.example.com",
	}
	if rng.IntN(3) == 0 {
		items["coredns_replicas"] = strconv.Itoa(2 + rng.IntN(4))
	}
	if rng.IntN(4) == 0 {
		items["availability_zones"] = "a,b"
	}
	if rng.IntN(10) == 0 {
		items["agent_log_level"] = "debug"
	}
	if env == api.EnvironmentProduction && rng.IntN(4) == 0 {
		items["drain_grace_period"] = "12h"
	}
	c := api.Cluster{
		ID: account + ":" + region + ":" + local, Alias: local, InfrastructureAccount: account, Region: region,
		APIServerURL: "https://" + local + "." + region + ".k8s.example.com", Environment: env, Channel: channel,
		LifecycleStatus: api.LifecycleReady, CriticalityLevel: 1 + rng.IntN(3), ConfigItems: items,
		NodePools: nodePools(rng), CreatedAt: now, UpdatedAt: now,
	}
	c.Normalize()
	for j := range c.NodePools {
		c.NodePools[j].CreatedAt, c.NodePools[j].UpdatedAt = now, now
	}
	return c
}

// nodePools is 1 to 3 pools: always a worker pool, on demand or spot, then
// maybe control-plane nodes of their own and a spot pool for batch work.
func nodePools(rng *rand.Rand) []api.NodePool {
	worker := api.NodePool{Name: "default-worker", Profile: "worker-default", InstanceTypes: []string{"m6i.large"},
		MinSize: 2, MaxSize: 10 + 10*rng.IntN(3), DiscountStrategy: api.DiscountNone}
	if rng.IntN(3) == 0 {
		worker.DiscountStrategy = api.DiscountSpot
		worker.InstanceTypes = []string{"m6i.large", "m5.large", "m5a.large"}
	}
	if rng.IntN(2) == 0 {
		worker.ConfigItems = map[string]string{"node_volume_size": []string{"100", "200"}[rng.IntN(2)]}
	}
	pools := []api.NodePool{worker}
	if rng.IntN(2) == 0 {
		pools = append(pools, api.NodePool{Name: "default-master", Profile: "master-default", InstanceTypes: []string{"m6i.large"},
			MinSize: 3, MaxSize: 3, DiscountStrategy: api.DiscountNone,
			Taints: []api.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}})
	}
	if rng.IntN(3) == 0 {
		pools = append(pools, api.NodePool{Name: "worker-batch", Profile: "worker-batch", InstanceTypes: []string{"c6i.xlarge", "c5.xlarge"},
			MinSize: 0, MaxSize: 50, DiscountStrategy: api.DiscountSpot,
			ConfigItems: map[string]string{"node_volume_type": "gp2", "node_volume_size": "80"},
			Labels:      map[string]string{"caravan.io/workload": "batch"},
			Taints:      []api.Taint{{Key: "dedicated", Value: "batch", Effect: "NoSchedule"}}})
	}
	return pools
}

// shape describes the fleet for the report: clusters by environment and
// channel, pools by kind.
type shape struct {
	clusters, production, pools, spot, master int
	pools1, pools2, pools3                    int
	itemsMin, itemsMax                        int
}

func fleetShape(clusters []api.Cluster) shape {
	s := shape{clusters: len(clusters), itemsMin: -1}
	for _, c := range clusters {
		if c.Environment == api.EnvironmentProduction {
			s.production++
		}
		s.pools += len(c.NodePools)
		switch len(c.NodePools) {
		case 1:
			s.pools1++
		case 2:
			s.pools2++
		default:
			s.pools3++
		}
		for _, p := range c.NodePools {
			if p.DiscountStrategy == api.DiscountSpot {
				s.spot++
			}
			if strings.HasPrefix(p.Profile, "master") {
				s.master++
			}
		}
		if s.itemsMin < 0 || len(c.ConfigItems) < s.itemsMin {
			s.itemsMin = len(c.ConfigItems)
		}
		s.itemsMax = max(s.itemsMax, len(c.ConfigItems))
	}
	return s
}

// requests reads the registry's request counters by route and method.
func (r *registry) requests(ctx context.Context) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the registry's metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseRequests(resp.Body)
}

// parseRequests sums caravan_central_http_requests_total by "METHOD route"
// (the route label names the method) from a Prometheus text exposition,
// the benchmark's own /metrics scrapes left out.
func parseRequests(body io.Reader) (map[string]int, error) {
	out := map[string]int{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, requestsMetric+"{")
		if !ok {
			continue
		}
		labelText, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("unexpected metric line %q", line)
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(labelText, ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = strings.Trim(v, `"`)
		}
		route := labels["route"]
		if !strings.HasPrefix(route, labels["method"]+" ") {
			route = labels["method"] + " " + route
		}
		if strings.HasSuffix(route, " /metrics") {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		out[route] += int(f)
	}
	return out, sc.Err()
}

// diffRequests is after - before, without the routes that saw none.
func diffRequests(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if d := after[k] - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
