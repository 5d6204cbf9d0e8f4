// Package controlplane runs a real Kubernetes control plane for tests and
// the demo: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// and kwok, which plays kubelet for fake nodes so that pods are scheduled,
// become Running and Ready, and are evicted, with no container run.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KwokNodeAnnotation marks the nodes kwok manages.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// ControlPlane is a running control plane.
type ControlPlane struct {
	Dir        string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	bin        string
	// priorityAndFairness: WithPriorityAndFairness.
	priorityAndFairness bool
	mu                  sync.Mutex
	procs               []*process
}

type process struct {
	name string
	cmd  *exec.Cmd
	done chan error
	log  string
}

// Start runs a control plane until the test ends; a missing binary fails
// the test and names `make tools`, it never skips.
func Start(t testing.TB, opts ...Option) *ControlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp, err := Launch(ctx, t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	return cp
}

// Option changes how a control plane runs.
type Option func(*ControlPlane)

// WithPriorityAndFairness runs the API server with API priority and
// fairness, off by default: a test can then throttle a client with a
// FlowSchema, as a busy production API server would.
func WithPriorityAndFairness() Option {
	return func(cp *ControlPlane) { cp.priorityAndFairness = true }
}

// Launch starts a control plane whose files live in dir, until Stop.
func Launch(ctx context.Context, dir string, opts ...Option) (*ControlPlane, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, bin: bin}
	for _, o := range opts {
		o(cp)
	}
	if err := cp.launch(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) launch(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	token := randomHex(16)
	if err := cp.writeCredentials(token); err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := cp.run("etcd", "--data-dir", cp.path("etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := cp.run("kube-apiserver", "--etcd-servers", etcdURL, "--service-account-key-file", cp.path("sa.pub"),
		"--service-account-signing-key-file", cp.path("sa.key"), "--service-account-issuer", "https://kubernetes.default.svc",
		"--token-auth-file", cp.path("tokens.csv"), "--authorization-mode", "RBAC", "--cert-dir", cp.path("certs"),
		"--secure-port", strconv.Itoa(apiPort), "--bind-address", "127.0.0.1", "--service-cluster-ip-range", "10.0.0.0/24",
		"--enable-priority-and-fairness="+strconv.FormatBool(cp.priorityAndFairness), "--v", "0"); err != nil {
		return err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := cp.writeKubeconfig(server, token); err != nil {
		return err
	}
	if err := cp.waitReady(ctx); err != nil {
		return err
	}
	if err := cp.run("kube-controller-manager", "--kubeconfig", cp.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--service-account-private-key-file", cp.path("sa.key"), "--use-service-account-credentials=false",
		"--controllers=*,-node-ipam-controller", "--v", "0"); err != nil {
		return err
	}
	if err := cp.run("kube-scheduler", "--kubeconfig", cp.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--v", "0"); err != nil {
		return err
	}
	failStage := cp.path("pod-fail-stage.yaml")
	if err := os.WriteFile(failStage, podFailStage, 0o600); err != nil {
		return err
	}
	if err := cp.run("kwok", "--kubeconfig", cp.Kubeconfig, "--config", StagesFile(cp.bin), "--config", failStage,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector", KwokNodeAnnotation+"=fake",
		"--node-ip", "10.0.1.1", "--node-lease-duration-seconds", "40", "--server-address", "127.0.0.1:0"); err != nil {
		return err
	}
	return cp.waitControllers(ctx)
}

func (cp *ControlPlane) path(name string) string { return filepath.Join(cp.Dir, name) }

// writeCredentials writes the service account signing key and the static
// admin token, in the admin group system:masters.
func (cp *ControlPlane) writeCredentials(token string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(token + `,admin,admin,"system:masters"` + "\n"),
	}
	for name, content := range files {
		if err := os.WriteFile(cp.path(name), content, 0o600); err != nil {
			return err
		}
	}
	return os.MkdirAll(cp.path("certs"), 0o700)
}

func (cp *ControlPlane) writeKubeconfig(server, token string) error {
	cp.Kubeconfig = cp.path("kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`, server, token)
	if err := os.WriteFile(cp.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cp.Config = cfg
	cp.Client, err = kubernetes.NewForConfig(cfg)
	return err
}

// run starts a binary in the background with its output in DIR/NAME.log.
func (cp *ControlPlane) run(name string, args ...string) error {
	logPath := cp.path(name + ".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(cp.bin, name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A test binary that crashes runs no cleanup; its control plane must
	// not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() {
		p.done <- cmd.Wait()
		logFile.Close()
	}()
	cp.mu.Lock()
	cp.procs = append(cp.procs, p)
	cp.mu.Unlock()
	return nil
}

// exited returns an error naming the first process that ended, with the
// end of its log, or nil while all run.
func (cp *ControlPlane) exited() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, p := range cp.procs {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("%s exited (%v):\n%s", p.name, err, tail(p.log, 30))
		default:
		}
	}
	return nil
}

func (cp *ControlPlane) waitReady(ctx context.Context) error {
	return cp.poll(ctx, "kube-apiserver to be ready", func(ctx context.Context) (bool, error) {
		body, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && strings.TrimSpace(string(body)) == "ok", nil
	})
}

// waitControllers waits for signs of the controller-manager (the default
// service account) and of kwok being able to take a node.
func (cp *ControlPlane) waitControllers(ctx context.Context) error {
	return cp.poll(ctx, "kube-controller-manager to create the default service account", func(ctx context.Context) (bool, error) {
		_, err := cp.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

func (cp *ControlPlane) poll(ctx context.Context, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := cp.exited(); err != nil {
			return false, err
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// Stop ends every process, newest first, and waits for them.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	procs := cp.procs
	cp.procs = nil
	cp.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
}

// stop interrupts the process, kills it when it has not ended within ten
// seconds, and waits for it.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// RestartAPIServer stops kube-apiserver and starts it again on the same
// port and etcd, as an upgrade or a crash of the API server would: every
// watch breaks, and clients must list again or resume.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	var old *process
	for i, p := range cp.procs {
		if p.name == "kube-apiserver" {
			old = p
			cp.procs = append(cp.procs[:i:i], cp.procs[i+1:]...)
			break
		}
	}
	cp.mu.Unlock()
	if old == nil {
		return fmt.Errorf("kube-apiserver is not running")
	}
	old.stop()
	if err := cp.run("kube-apiserver", old.cmd.Args[1:]...); err != nil {
		return err
	}
	return cp.waitReady(ctx)
}

// Node describes a fake node for AddNode.
type Node struct {
	Name       string
	Labels     map[string]string
	Taints     []corev1.Taint
	ProviderID string
	CPU        string
	Memory     string
}

// AddNode registers a node that kwok runs: it becomes Ready and pods
// scheduled to it become Running and Ready.
func (cp *ControlPlane) AddNode(ctx context.Context, n Node) (*corev1.Node, error) {
	if n.CPU == "" {
		n.CPU = "4"
	}
	if n.Memory == "" {
		n.Memory = "16Gi"
	}
	labels := map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "type": "kwok"}
	for k, v := range n.Labels {
		labels[k] = v
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    mustQuantity(n.CPU),
		corev1.ResourceMemory: mustQuantity(n.Memory),
		corev1.ResourcePods:   mustQuantity("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels, Annotations: map[string]string{KwokNodeAnnotation: "fake"}},
		Spec:       corev1.NodeSpec{Taints: n.Taints, ProviderID: n.ProviderID},
		Status:     corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	created, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating node %s: %w", n.Name, err)
	}
	return created, cp.poll(ctx, "node "+n.Name+" to be Ready", func(ctx context.Context) (bool, error) {
		got, err := cp.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// BinDir finds the control plane's binaries: $CARAVAN_TOOLS_BIN, else
// .cache/tools at the root of this repository, which `make tools` links.
func BinDir() (string, error) {
	dir := os.Getenv("CARAVAN_TOOLS_BIN")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "tools")
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("the test control plane needs %s in %s: run `make tools` (make test does): %w", name, dir, err)
		}
	}
	if _, err := os.Stat(StagesFile(dir)); err != nil {
		return "", fmt.Errorf("kwok's stages are missing: run `make tools`: %w", err)
	}
	return dir, nil
}

// podFailStage is the test control plane's own kwok Stage: a pod with the
// annotation PodExitCodeAnnotation fails with that exit code.
//
//go:embed stages/pod-fail.yaml
var podFailStage []byte

// PodExitCodeAnnotation makes a pod fail with its value as exit code, once
// Running and Ready; its pod also needs PodCompleteWeightAnnotation "0".
const (
	PodExitCodeAnnotation       = "stage.caravan.io/exit-code"
	PodCompleteWeightAnnotation = "pod-complete.stage.kwok.x-k8s.io/weight"
)

// StagesFile is kwok's configuration: the node and pod stages it plays.
func StagesFile(binDir string) string { return filepath.Join(binDir, "kwok-stages.yaml") }

// VenvBinary is the path of a command of the tests' Python venv:
// $CARAVAN_VENV/bin/NAME, else .cache/venv/bin/NAME at the root of this
// repository. A missing one is an error that says what needs it and names
// `make test-deps`, which installs it.
func VenvBinary(name, neededBy string) (string, error) {
	venv := os.Getenv("CARAVAN_VENV")
	if venv == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		venv = filepath.Join(root, ".cache", "venv")
	}
	bin := filepath.Join(venv, "bin", name)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s need %s: run `make test-deps` (make test does), which installs it in %s: %w", neededBy, name, venv, err)
	}
	return bin, nil
}

// RepoRoot is the root of the caravan repository the caller runs in.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/caravan-gitops/caravan\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the caravan repository; set CARAVAN_TOOLS_BIN")
		}
		dir = parent
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
