//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/moto"
)

// podTerminationGrace is the pods' terminationGracePeriodSeconds: kwok
// removes a deleted pod at its deletionTimestamp, within a second.
const podTerminationGrace = 1

// kwokPodDelays make kwok start and ready a pod in 0.1 to 0.3 s each,
// instead of its 1 to 6 s.
var kwokPodDelays = map[string]string{
	"pod-create.stage.kwok.x-k8s.io/delay": "100ms", "pod-create.stage.kwok.x-k8s.io/jitter-delay": "300ms",
	"pod-ready.stage.kwok.x-k8s.io/delay": "100ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "300ms",
}

// Kinds of workload, by the PodDisruptionBudget over their pods.
const (
	// kindStrict: minAvailable 100%, which refuses every eviction: each
	// pod is forced once the drain SLA allows it.
	kindStrict = "strict"
	// kindTolerant: maxUnavailable 1: evictions pass one at a time, each
	// once the last evicted pod's replacement is ready.
	kindTolerant = "tolerant"
	// kindNone: no budget.
	kindNone = "none"
)

// app is a workload of 10 pods. A paired one runs as two Deployments of 5,
// part a and part b, whose pods share a node two by two (part b requires a
// node with a pod of part a, and neither part puts two pods on one node):
// draining such a node moves two pods of one budget, so the second waits
// for the first (the sibling rules). The others run as one Deployment
// whose pods the scheduler spreads.
type app struct {
	namespace, name, kind string
	paired                bool
}

// label is how the report names the app's kind.
func (a app) label() string {
	if a.paired {
		return a.kind + ", paired"
	}
	return a.kind
}

// apps are the pool's workloads, as many as nodes: of every 5 (one
// namespace), a strict paired one, a tolerant paired one, two tolerant
// ones and one without a budget.
func apps(n int) []app {
	var out []app
	for i := range n {
		a := app{namespace: fmt.Sprintf("team-%d", i/5), name: fmt.Sprintf("app-%02d", i)}
		switch i % 5 {
		case 0:
			a.kind, a.paired = kindStrict, true
		case 1:
			a.kind, a.paired = kindTolerant, true
		case 4:
			a.kind = kindNone
		default:
			a.kind = kindTolerant
		}
		out = append(out, a)
	}
	return out
}

// world is everything the roll runs on.
type world struct {
	opts        options
	dir         string
	moto        *moto.Server
	cp          *controlplane.ControlPlane
	bridge      *cloudbridge.Bridge
	bridgeCalls *moto.Calls
	bridgeLog   *os.File
	facts       *facts
	stopFacts   context.CancelFunc

	fleet *fleet
	agent *agent

	setupAWS aws.Config // uncounted: the bench's own calls
	ec2      *ec2.Client
	asg      *autoscaling.Client

	kubeVersion, motoVersion string
}

// startWorld starts moto and the control plane side by side, the git
// server and the registry, then the fact recorder's watches.
func startWorld(ctx context.Context, o options, dir string) (*world, error) {
	w := &world{opts: o, dir: dir}
	host.Progress("starting moto_server and a control plane")
	var wg sync.WaitGroup
	var motoErr, cpErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		w.moto, motoErr = moto.Launch(ctx)
	}()
	go func() {
		defer wg.Done()
		w.cp, cpErr = controlplane.Launch(ctx, filepath.Join(dir, "cluster"))
	}()
	wg.Wait()
	if err := errors.Join(motoErr, cpErr); err != nil {
		_ = w.stop()
		if motoErr != nil {
			return nil, fmt.Errorf("%w (bash test/deps.sh installs moto in .cache/venv)", err)
		}
		return nil, err
	}
	var err error
	if w.fleet, err = startFleet(ctx, dir, o.poll); err != nil {
		_ = w.stop()
		return nil, err
	}
	w.motoVersion = motoVersion()
	if v, err := w.cp.Client.Discovery().ServerVersion(); err == nil {
		w.kubeVersion = v.GitVersion
	}
	if w.kubeVersion == "" || strings.HasPrefix(w.kubeVersion, "v0.0.0") {
		// Built from source without version stamps: say what it was built from.
		w.kubeVersion = toolVersion("k8s.io/kubernetes")
	}
	w.setupAWS = w.moto.AWSConfig(region)
	w.ec2, w.asg = ec2.NewFromConfig(w.setupAWS), autoscaling.NewFromConfig(w.setupAWS)
	var factsCtx context.Context
	factsCtx, w.stopFacts = context.WithCancel(ctx)
	if w.facts, err = startFacts(factsCtx, w.cp.Client); err != nil {
		_ = w.stop()
		return nil, err
	}
	return w, nil
}

func (w *world) stop() error {
	var errs []error
	if w.agent != nil {
		errs = append(errs, w.agent.stop())
	}
	if w.fleet != nil {
		errs = append(errs, w.fleet.stop())
	}
	if w.stopFacts != nil {
		w.stopFacts()
	}
	if w.bridge != nil {
		w.bridge.Stop()
	}
	if w.bridgeLog != nil {
		w.bridgeLog.Close()
	}
	if w.cp != nil {
		w.cp.Stop()
	}
	if w.moto != nil {
		w.moto.Stop()
	}
	return errors.Join(errs...)
}

// setUp starts the cloud bridge and caravan-agent, which makes the pool's
// group through its stacks, waits for the group's Nodes, runs the
// workloads and waits until they and their budgets are settled, and until
// every pod is older than the SLA's minimum pod lifetime: a steady
// cluster.
func (w *world) setUp(ctx context.Context, rep *report) error {
	start := time.Now()
	cfg := w.moto.AWSConfig(region)
	w.bridgeCalls = moto.CountCalls(&cfg)
	var err error
	if w.bridgeLog, err = os.Create(filepath.Join(w.dir, "cloudbridge.log")); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(w.bridgeLog, nil))
	w.bridge, err = cloudbridge.Start(ctx, cloudbridge.Config{AWS: cfg, ClusterID: clusterID, Kube: w.cp.Client, Interval: w.opts.bridgeInterval,
		Log: func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) }})
	if err != nil {
		return fmt.Errorf("starting the cloud bridge: %w", err)
	}
	host.Progress("starting caravan-agent, whose stacks make the pool's group of %d instances", w.opts.nodes)
	if err := w.startAgent(ctx); err != nil {
		return fmt.Errorf("starting caravan-agent: %w", err)
	}
	if _, _, err := w.fleet.admin.CreateNodePool(ctx, clusterID, &api.NodePool{Name: pool, Profile: "worker-default",
		InstanceTypes: []string{instanceType}, MinSize: w.opts.nodes, MaxSize: w.opts.nodes + surgeRoom, DiscountStrategy: api.DiscountNone}); err != nil {
		return fmt.Errorf("registering the node pool: %w", err)
	}
	if err := w.waitNodes(ctx, w.opts.nodes); err != nil {
		return err
	}
	rep.nodesUp = time.Since(start)

	host.Progress("running %d workloads of %d pods", w.opts.nodes, replicas)
	start = time.Now()
	if err := w.createWorkloads(ctx); err != nil {
		return err
	}
	if err := w.waitWorkloads(ctx, rep); err != nil {
		return err
	}
	rep.podsUp = time.Since(start)
	// Every pod past the minimum pod lifetime, as in a steady cluster.
	last := w.facts.lastPodSeen()
	mpl, _ := time.ParseDuration(scaledSLA["drain_min_pod_lifetime"])
	if wait := time.Until(last.Add(mpl + time.Second)); wait > 0 {
		host.Progress("waiting %s until every pod is older than drain_min_pod_lifetime", wait.Round(100*time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil
}

// waitNodes waits until the pool has n Ready Nodes.
func (w *world) waitNodes(ctx context.Context, n int) error {
	return poll(ctx, 3*time.Minute, fmt.Sprintf("%d Ready nodes in pool %s", n, pool), func() (bool, error) {
		list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, node := range list.Items {
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == n && len(list.Items) == n, nil
	})
}

func (w *world) createWorkloads(ctx context.Context) error {
	cs := w.cp.Client
	for i, a := range apps(w.opts.nodes) {
		if i%5 == 0 {
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.namespace}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		if !a.paired {
			if err := createDeployment(ctx, cs, a, "", replicas, nil); err != nil {
				return err
			}
		} else {
			onePerNode := func(part string) corev1.PodAffinityTerm {
				return corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname,
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": a.name, "part": part}}}
			}
			partA := &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{onePerNode("a")}}}
			partB := &corev1.Affinity{
				PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{onePerNode("a")}},
				PodAntiAffinity: &corev1.PodAntiAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{onePerNode("b")}}}
			if err := createDeployment(ctx, cs, a, "a", replicas/2, partA); err != nil {
				return err
			}
			if err := createDeployment(ctx, cs, a, "b", replicas/2, partB); err != nil {
				return err
			}
		}
		var spec policyv1.PodDisruptionBudgetSpec
		switch a.kind {
		case kindStrict:
			all := intstr.FromString("100%")
			spec = policyv1.PodDisruptionBudgetSpec{MinAvailable: &all}
		case kindTolerant:
			one := intstr.FromInt32(1)
			spec = policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one}
		default:
			continue
		}
		spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": a.name}}
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: a.namespace, Labels: map[string]string{"kind": a.kind}}, Spec: spec}
		if _, err := cs.PolicyV1().PodDisruptionBudgets(a.namespace).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// createDeployment runs the app's pods, or one part of them.
func createDeployment(ctx context.Context, cs kubernetes.Interface, a app, part string, n int32, affinity *corev1.Affinity) error {
	name, labels := a.name, map[string]string{"app": a.name}
	if part != "" {
		name += "-" + part
		labels["part"] = part
	}
	grace := int64(podTerminationGrace)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.namespace, Labels: map[string]string{"kind": a.kind}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: kwokPodDelays},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{nodes.PoolLabel: pool},
					Affinity:                      affinity,
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{Name: "app", Image: "registry.example.org/app:1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}}},
				},
			},
		},
	}
	_, err := cs.AppsV1().Deployments(a.namespace).Create(ctx, d, metav1.CreateOptions{})
	return err
}

// waitWorkloads waits until every pod is Ready and every budget counts its
// pods; it notes how the pods spread over the nodes.
func (w *world) waitWorkloads(ctx context.Context, rep *report) error {
	total := w.opts.nodes * replicas
	var list *corev1.PodList
	err := poll(ctx, 4*time.Minute, fmt.Sprintf("%d Ready pods", total), func() (bool, error) {
		var err error
		list, err = w.cp.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app"})
		if err != nil {
			return false, err
		}
		ready := 0
		for i := range list.Items {
			if podReady(&list.Items[i]) && list.Items[i].DeletionTimestamp == nil {
				ready++
			}
		}
		return ready == total && len(list.Items) == total, nil
	})
	if err != nil {
		return err
	}
	perNode := map[string]int{}
	for _, p := range list.Items {
		perNode[p.Spec.NodeName]++
	}
	counts := make([]int, 0, len(perNode))
	for _, n := range perNode {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	rep.pods, rep.podsPerNode = total, counts
	return poll(ctx, 2*time.Minute, "the PodDisruptionBudgets to count their pods", func() (bool, error) {
		pdbs, err := w.cp.Client.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{LabelSelector: "kind"})
		if err != nil {
			return false, err
		}
		for _, b := range pdbs.Items {
			if b.Status.ObservedGeneration != b.Generation || b.Status.ExpectedPods != replicas || b.Status.CurrentHealthy != replicas {
				return false, nil
			}
		}
		rep.budgets = len(pdbs.Items)
		return true, nil
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poll calls cond every 200 ms until it is true, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// motoVersion is the version of the moto package in moto_server's venv.
func motoVersion() string {
	bin, err := moto.Binary()
	if err != nil {
		return "unknown"
	}
	out, err := exec.Command(filepath.Join(filepath.Dir(bin), "python"), "-c", "import importlib.metadata as m; print(m.version('moto'))").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// toolVersion is the version of a module the control plane's binaries are
// built from, as test/tools/go.mod pins it.
func toolVersion(module string) string {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return "unknown"
	}
	b, err := os.ReadFile(filepath.Join(root, "test", "tools", "go.mod"))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	return "unknown"
}
