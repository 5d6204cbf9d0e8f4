//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	fluxevents "github.com/fluxcd/pkg/runtime/events"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// step is one piece of a reconcile, timed on its own with the same parts.
type step struct {
	name string
	took time.Duration // the median when the step ran many times
	p99  time.Duration
	note string
}

// reconcileRun is one timed Reconcile.
type reconcileRun struct {
	kind     string
	wall     time.Duration
	cpu      cpuSet
	requests requestCounts
}

// reconciles are goals 2 and 3.
type reconciles struct {
	first      reconcileRun   // the first version, its objects already applied by goal 1
	commits    []reconcileRun // goal 2: a new commit, no object changed
	commitStep []step
	steady     []time.Duration // goal 3: nothing changed
	steadyCPU  cpuSet
	steadyReq  requestCounts
	steadyStep []step
	ccBytes    int // the ClusterConfig's size as JSON
	inventory  int // entries of its status.inventory
}

// agentLoop is the agent's reconciler, assembled as agent.lead does, in
// this process so that its pieces can be timed.
type agentLoop struct {
	rc          *reconciler.Reconciler
	broadcaster record.EventBroadcaster
	kube        client.Client
	reg         *registry.Client
	creds       configrepo.Credentials
	a           *api.Assignment
}

func (b *bench) newAgentLoop(ctx context.Context) (*agentLoop, error) {
	cfg := b.counter.wrap(b.cluster.agentConfig())
	kube, err := b.cluster.kubeClient(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.cluster.prepareAgentNamespace(ctx, agentNamespace, b.fleet.Git); err != nil {
		return nil, err
	}
	if err := clusterconfig.Install(ctx, kube, apply.FieldManager); err != nil {
		return nil, err
	}
	reg, err := b.fleet.agentRegistry(inProcessID)
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(b.dir, "agent-in-process.log"))
	if err != nil {
		return nil, err
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(logFile, nil))
	clientset, err := kubernetes.NewForConfig(b.cluster.agentConfig())
	if err != nil {
		return nil, err
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clientset.CoreV1().Events("")})
	s := kube.Scheme()
	recorder, err := fluxevents.NewRecorder(log, "", "caravan-agent", fluxevents.WithScheme(s),
		fluxevents.WithLegacyEventRecorder(broadcaster.NewRecorder(s, corev1.EventSource{Component: "caravan-agent"})))
	if err != nil {
		return nil, err
	}
	creds := configrepo.Credentials{Username: b.fleet.Git.User, Password: b.fleet.Git.Password}
	keeper := assignment.New(reg, kube, inProcessID, agentNamespace)
	upd, err := keeper.Poll(ctx, 0)
	if err != nil || upd.Assignment == nil || upd.RegistryErr != nil {
		return nil, fmt.Errorf("polling the assignment: %v %v", err, upd.RegistryErr)
	}
	rc := reconciler.New(reconciler.Config{ClusterID: inProcessID, AgentVersion: "bench", Interval: 30 * time.Second,
		HealthTimeout: 5 * time.Minute, Git: creds}, keeper, reg, kube, b.applier, recorder, log, reconciler.NewMetrics(prometheus.NewRegistry()))
	return &agentLoop{rc: rc, broadcaster: broadcaster, kube: kube, reg: reg, creds: creds, a: upd.Assignment}, nil
}

// reconcileOnce runs one Reconcile and checks it ended at the version of
// commit, healthy and without problems.
func (b *bench) reconcileOnce(ctx context.Context, l *agentLoop, commit string) (reconcileRun, error) {
	req0, cpu0 := b.counter.take(), takeCPU()
	start := time.Now()
	l.rc.Reconcile(ctx, l.a)
	run := reconcileRun{wall: time.Since(start)}
	run.cpu, run.requests = takeCPU().sub(cpu0), b.counter.take().sub(req0)
	cc := &clusterconfig.ClusterConfig{}
	if err := l.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc); err != nil {
		return run, err
	}
	st := cc.Status
	if !strings.HasPrefix(st.CurrentVersion, commit+"#") || len(st.Problems) > 0 || st.NextVersion != "" {
		return run, fmt.Errorf("the reconcile did not end at %s: current %q, next %q, problems %+v (log: %s)",
			commit, st.CurrentVersion, st.NextVersion, st.Problems, filepath.Join(b.dir, "agent-in-process.log"))
	}
	return run, nil
}

// measureReconciles measures goals 2 and 3 with the agent's reconciler
// against the real git server, registry and cluster.
func (b *bench) measureReconciles(ctx context.Context, commits, steadyRuns int) error {
	r := &b.rep.reconciles
	l, err := b.newAgentLoop(ctx)
	if err != nil {
		return err
	}
	defer l.broadcaster.Shutdown()
	repo, err := configrepo.Open(l.a.Channel.RepositoryURL, l.creds)
	if err != nil {
		return err
	}
	head, err := repo.Head(ctx, l.a.Channel.Branch)
	if err != nil {
		return err
	}
	host.Progress("2. the reconciler's first version (its objects already applied by step 1)")
	if r.first, err = b.reconcileOnce(ctx, l, head); err != nil {
		return err
	}
	kustomization, err := os.ReadFile(filepath.Join(b.fleet.repos[inProcessRepo], filepath.FromSlash(overlay), "kustomization.yaml"))
	if err != nil {
		return err
	}
	for i := range 2 * commits {
		kind, files := commitReadme, map[string][]byte{"README.md": fmt.Appendf(nil, "Generated by test/bench/agent; commit %d.\n", i+1)}
		if i >= commits {
			kind = commitComment
			files = map[string][]byte{overlay + "/kustomization.yaml": fmt.Appendf(kustomization, "# commit %d\n", i+1)}
		}
		sha, err := b.fleet.Git.Commit(inProcessRepo, "dev", fmt.Sprintf("bench: a commit that changes no object (%d, %s)", i+1, kind), files)
		if err != nil {
			return err
		}
		if _, err := waitQuiet(ctx, 10*time.Second); err != nil {
			return err
		}
		run, err := b.reconcileOnce(ctx, l, sha)
		if err != nil {
			return err
		}
		run.kind = kind
		if run.requests.patches > 1 {
			// The ClusterConfig status is the one PATCH a reconcile of
			// unchanged objects makes; more means objects changed.
			return fmt.Errorf("a commit that changes no object made %d PATCH requests", run.requests.patches)
		}
		host.Progress("2. a new commit, no object changed (%s): %s (%s requests)", kind, seconds(run.wall), host.Thousands(int(run.requests.total())))
		r.commits = append(r.commits, run)
		head = sha
	}
	if err := b.commitSteps(ctx, l, repo); err != nil {
		return err
	}

	host.Progress("3. %d reconciles with nothing changed", steadyRuns)
	if _, err := waitQuiet(ctx, 10*time.Second); err != nil {
		return err
	}
	runtime.GC() // not the garbage of the steps before
	req0, cpu0 := b.counter.take(), takeCPU()
	for range steadyRuns {
		run, err := b.reconcileOnce(ctx, l, head)
		if err != nil {
			return err
		}
		r.steady = append(r.steady, run.wall)
	}
	r.steadyCPU, r.steadyReq = takeCPU().sub(cpu0), b.counter.take().sub(req0)
	return b.steadySteps(ctx, l, steadyRuns)
}

// commitSteps times the pieces of a reconcile of a new commit one by one,
// to show where goal 2's time goes.
func (b *bench) commitSteps(ctx context.Context, l *agentLoop, repo *configrepo.Repo) error {
	r := &b.rep.reconciles
	cc := &clusterconfig.ClusterConfig{}
	if err := l.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc); err != nil {
		return err
	}
	if _, err := waitQuiet(ctx, 10*time.Second); err != nil {
		return err
	}
	t := time.Now()
	if _, err := repo.Head(ctx, l.a.Channel.Branch); err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "branch head (ref listing over smart HTTP)", took: time.Since(t)})
	t = time.Now()
	snap, err := repo.Fetch(ctx, l.a.Channel.Branch)
	if err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "fetch of the commit (depth 1, into memory)", took: time.Since(t)})
	t = time.Now()
	if _, err := render.InputDigest(snap.Files, *l.a, "bench"); err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "digest of the render's inputs (`render.InputDigest`)", took: time.Since(t), note: fmt.Sprintf("%s files in the commit", host.Thousands(countFiles(snap.Files)))})
	t = time.Now()
	rendered, err := render.Render(snap.Files, *l.a)
	if err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "render (config items, kustomize, substitution)", took: time.Since(t), note: fmt.Sprintf("%s objects; not when the inputs' digest is unchanged", host.Thousands(len(rendered.Objects)))})
	t = time.Now()
	if _, err := rendered.Digest(); err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "digest of the rendered objects (`Result.Digest`)", took: time.Since(t), note: "not when the inputs' digest is unchanged"})
	t = time.Now()
	st := &api.ClusterStatus{CurrentVersion: cc.Status.CurrentVersion, Phase: api.PhaseIdle, AgentVersion: "bench", Heartbeat: time.Now().UTC()}
	for range 3 {
		if err := l.reg.PutClusterStatus(ctx, inProcessID, st); err != nil {
			return err
		}
	}
	r.commitStep = append(r.commitStep, step{name: "3 status reports to the registry", took: time.Since(t)})
	req0 := b.counter.take()
	t = time.Now()
	res, err := b.applier.Apply(ctx, rendered, cc.Status.Inventory)
	if err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "apply of the unchanged objects (`Applier.Apply`)", took: time.Since(t), note: b.counter.take().sub(req0).String() + " requests; only when an object changed"})
	req0 = b.counter.take()
	t = time.Now()
	if err := b.applier.Wait(ctx, res.Inventory, time.Minute); err != nil {
		return err
	}
	r.commitStep = append(r.commitStep, step{name: "health wait (`Applier.Wait`, all Current at the first poll)", took: time.Since(t), note: b.counter.take().sub(req0).String() + " requests; only when an object changed"})
	return nil
}

// steadySteps times the pieces of a reconcile with nothing changed.
func (b *bench) steadySteps(ctx context.Context, l *agentLoop, runs int) error {
	r := &b.rep.reconciles
	var get, src, head, decide, status, report []time.Duration
	for range runs {
		t := time.Now()
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(clusterconfig.GroupVersion.WithKind("ClusterConfig"))
		if err := l.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, meta); err != nil {
			return err
		}
		get = append(get, time.Since(t))
		cc := &clusterconfig.ClusterConfig{}
		if err := l.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc); err != nil {
			return err
		}
		t = time.Now()
		repo, err := configrepo.Open(l.a.Channel.RepositoryURL, l.creds)
		if err != nil {
			return err
		}
		src = append(src, time.Since(t))
		t = time.Now()
		sha, err := repo.Head(ctx, l.a.Channel.Branch)
		if err != nil {
			return err
		}
		head = append(head, time.Since(t))
		t = time.Now()
		if d := reconciler.Decide(cc.Spec, l.a, sha, cc.Status, time.Now()); d.Action != reconciler.Nothing {
			return fmt.Errorf("nothing changed, yet Decide says %q", d.Reason)
		}
		decide = append(decide, time.Since(t))
		if r.ccBytes == 0 {
			raw, err := json.Marshal(cc)
			if err != nil {
				return err
			}
			r.ccBytes, r.inventory = len(raw), len(cc.Status.Inventory)
		}
		t = time.Now()
		before := cc.DeepCopyObject().(*clusterconfig.ClusterConfig)
		x, err := json.Marshal(before.Status)
		if err != nil {
			return err
		}
		y, err := json.Marshal(cc.Status)
		if err != nil {
			return err
		}
		if !bytes.Equal(x, y) {
			return fmt.Errorf("a copy of the status differs from it")
		}
		status = append(status, time.Since(t))
		t = time.Now()
		if err := l.reg.PutClusterStatus(ctx, inProcessID, &api.ClusterStatus{CurrentVersion: cc.Status.CurrentVersion, LastVersion: cc.Status.LastVersion,
			Phase: api.PhaseIdle, AgentVersion: "bench", Heartbeat: time.Now().UTC()}); err != nil {
			return err
		}
		report = append(report, time.Since(t))
	}
	r.steadyStep = []step{
		{"read the ClusterConfig's metadata (GET as PartialObjectMetadata; the whole object only when its resourceVersion moved)", median(get), percentile(get, 0.99), ""},
		{"`configrepo.Open`", median(src), percentile(src, 0.99), ""},
		{"branch head (`Repo.Head`: ref listing over smart HTTP, one `git http-backend` run)", median(head), percentile(head, 0.99), ""},
		{"`Decide` (with `Version`)", median(decide), percentile(decide, 0.99), ""},
		{"ClusterConfig status: copy and compare, no PATCH when nothing changed", median(status), percentile(status, 0.99), ""},
		{"status report to the registry (PUT, SQLite write)", median(report), percentile(report, 0.99), ""},
	}
	return nil
}

// The kinds of commit that change no object.
const (
	commitReadme  = "README only"
	commitComment = "a comment in the overlay's kustomization.yaml"
)

func countFiles(files fs.FS) int {
	n := 0
	_ = fs.WalkDir(files, ".", func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	return n
}

func median(d []time.Duration) time.Duration { return percentile(d, 0.5) }

// percentile of durations, nearest rank.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
