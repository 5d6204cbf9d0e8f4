// Package flux runs Flux's kustomize-controller beside Caravan, as the peer
// of the benchmarks: the released controller (v1.9.6, built by `make tools`
// from test/flux/controller) as a process against a kubeconfig, the CRDs it
// ships, and what source-controller would otherwise provide: GitRepository
// objects whose status names an artifact, a tarball of manifests served
// over HTTP on loopback with its sha256 digest. The controller cannot tell
// the difference: it fetches artifact URLs and verifies their digests
// exactly as with source-controller.
package flux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/test/controlplane"
)

// Version is the kustomize-controller release test/flux/controller pins.
const Version = "v1.9.6"

// Paths of what `make tools` builds for Flux, in the tools folder.
const (
	binaryName = "kustomize-controller"
	crdsFolder = "flux-crds"
)

// Tools finds the kustomize-controller binary and the folder of its CRDs in
// the test control plane's tools folder; a missing one is an error that
// names `make tools`, never a reason to skip.
func Tools() (binary, crds string, err error) {
	dir, err := controlplane.BinDir()
	if err != nil {
		return "", "", err
	}
	binary, crds = filepath.Join(dir, binaryName), filepath.Join(dir, crdsFolder)
	for _, p := range []string{binary, crds} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("kustomize-controller (Flux) is missing, %s: run `make tools`, which builds it from test/flux/controller: %w", p, err)
		}
	}
	return binary, crds, nil
}

// Options are how Start runs the controller.
type Options struct {
	// Kubeconfig is the controller's: the API server, or a counting proxy
	// in front of it.
	Kubeconfig string
	// Admin is this process's access, to install the CRDs and write the
	// sources' status.
	Admin *rest.Config
	// Dir holds the controller's log and temporary files.
	Dir string
	// Namespace holds the GitRepository and Kustomization objects and is
	// the controller's runtime namespace; flux-system when empty.
	Namespace string
}

// Flux is a running kustomize-controller, with its artifact server.
type Flux struct {
	Namespace string
	// Log is the controller's log file (JSON lines).
	Log string
	// MetricsURL is the controller's Prometheus endpoint.
	MetricsURL string
	cmd        *exec.Cmd
	exited     chan error
	dyn        dynamic.Interface
	artifacts  *artifactServer
}

// Start installs the CRDs and the namespace, starts the artifact server
// and the controller, and returns once the controller is ready.
func Start(ctx context.Context, o Options) (*Flux, error) {
	binary, crds, err := Tools()
	if err != nil {
		return nil, err
	}
	if o.Namespace == "" {
		o.Namespace = "flux-system"
	}
	if err := InstallCRDs(ctx, o.Admin, crds); err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(o.Admin)
	if err != nil {
		return nil, err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(o.Admin)
	if err != nil {
		return nil, err
	}
	f := &Flux{Namespace: o.Namespace, Log: filepath.Join(o.Dir, "kustomize-controller.log"), dyn: dyn}
	if f.artifacts, err = startArtifactServer(); err != nil {
		return nil, err
	}
	if err := f.startController(ctx, binary, o); err != nil {
		f.artifacts.close()
		return nil, err
	}
	return f, nil
}

func (f *Flux) startController(ctx context.Context, binary string, o Options) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	metrics, health := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	f.MetricsURL = "http://" + metrics + "/metrics"
	tmp := filepath.Join(o.Dir, "kustomize-controller-tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	logFile, err := os.Create(f.Log)
	if err != nil {
		return err
	}
	// As Flux's own install runs it, less what needs a cluster of its own:
	// no leader election (one replica), no notification-controller to send
	// events to (they go to the API server as Kubernetes Events only).
	f.cmd = exec.Command(binary, "--metrics-addr", metrics, "--health-addr", health, "--watch-all-namespaces=true",
		"--enable-leader-election=false", "--events-addr", "", "--log-encoding", "json", "--log-level", "info")
	f.cmd.Env = append(os.Environ(), "KUBECONFIG="+o.Kubeconfig, "RUNTIME_NAMESPACE="+o.Namespace, "TMPDIR="+tmp)
	f.cmd.Stdout, f.cmd.Stderr = logFile, logFile
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting kustomize-controller: %w", err)
	}
	f.exited = make(chan error, 1)
	go func() {
		f.exited <- f.cmd.Wait()
		logFile.Close()
	}()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-f.exited:
			f.exited <- err
			return false, fmt.Errorf("kustomize-controller exited (%v):\n%s", err, tail(f.Log, 3000))
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return errors.Join(fmt.Errorf("waiting for kustomize-controller to be ready: %w", err), f.stopController())
	}
	return nil
}

// Pid is the controller process's.
func (f *Flux) Pid() int { return f.cmd.Process.Pid }

// Stop ends the controller and the artifact server.
func (f *Flux) Stop() error {
	err := f.stopController()
	f.artifacts.close()
	return err
}

func (f *Flux) stopController() error {
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.exited
		return errors.New("kustomize-controller did not stop within 30 s of SIGTERM; killed")
	}
}

// InstallCRDs creates every CRD in the YAML files of dir and waits until
// the API server serves them.
func InstallCRDs(ctx context.Context, cfg *rest.Config, dir string) error {
	client, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no CRDs in %s: run `make tools`", dir)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(b, crd); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating the CRD %s: %w", crd.Name, err)
		}
		err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for the CRD %s to be established: %w", crd.Name, err)
		}
	}
	return nil
}

// freePorts finds n free loopback ports, all different: each stays
// listened on until the function returns.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
