// Package moto runs moto, the AWS emulator, as a server for tests: the
// moto_server of the Python venv that `make test-deps` makes, on a free
// loopback port, with AWS SDK configurations that talk to it.
//
// One moto server emulates every service at one endpoint, for every region,
// with the account 123456789012. What it does not emulate faithfully is
// noted where it matters, here and in the tests.
package moto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caravan-gitops/caravan/test/controlplane"
)

// AccountID is the account moto puts every resource in.
const AccountID = "123456789012"

// startTimeout bounds the start when the caller's context has no deadline.
// moto starts in well under a second once its files are compiled; the
// first run after installing compiles them.
const startTimeout = time.Minute

// Server is a running moto server.
type Server struct {
	// Endpoint is http://localhost:PORT, not http://127.0.0.1:PORT: moto
	// finds the bucket of a CloudFormation TemplateURL in the path only when
	// the URL contains "localhost"; otherwise it takes the first label of
	// the host, "127" for an IP address, as the bucket's name.
	//
	// It is the front (launchtemplate.go), a proxy that passes every
	// request to moto_server and fills where moto does not behave as AWS.
	Endpoint string
	// Port is the port of Endpoint, at 127.0.0.1.
	Port int

	// motoEndpoint is moto_server's own, behind the front.
	motoEndpoint string
	front        *http.Server

	dir  string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has ended
	err  error         // how it ended, once done is closed
}

// Start runs a moto server until the test ends. It fails the test, never
// skips it, when moto is not installed: `make test-deps` installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := Launch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch runs a moto server until Stop, for a TestMain that shares one
// server between the tests of a package (Reset between them).
func Launch(ctx context.Context) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if err := localhostIsLoopback(ctx); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	// The port is free when picked but may be taken before moto binds it;
	// then moto exits, and another port is tried.
	for attempt := 1; ; attempt++ {
		s, err := launch(ctx, bin)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			return nil, err
		}
	}
}

// Binary is the path of moto_server in the tests' venv.
func Binary() (string, error) { return controlplane.VenvBinary("moto_server", "the AWS tests") }

// localhostIsLoopback checks that localhost reaches 127.0.0.1, where moto
// listens, since the endpoint must be named localhost (see Server.Endpoint).
func localhostIsLoopback(ctx context.Context) error {
	addrs, err := net.DefaultResolver.LookupHost(ctx, "localhost")
	if err != nil {
		return fmt.Errorf("moto's endpoint is http://localhost:PORT: %w", err)
	}
	if !slices.Contains(addrs, "127.0.0.1") {
		return fmt.Errorf("moto listens on 127.0.0.1 and is reached as localhost, but localhost resolves to %v", addrs)
	}
	return nil
}

var errPortTaken = errors.New("port taken")

func launch(ctx context.Context, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "caravan-moto-")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:     "http://localhost:" + strconv.Itoa(port),
		Port:         port,
		motoEndpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		dir:          dir,
		log:          filepath.Join(dir, "moto.log"),
		done:         make(chan struct{}),
	}
	logFile, err := os.Create(s.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// moto reads MOTO_PORT, which -p sets only when it is not in the
	// environment already; unbuffered output puts the log in the file as
	// it happens, for the errors below.
	s.cmd.Env = append(os.Environ(), "MOTO_PORT="+strconv.Itoa(port), "PYTHONUNBUFFERED=1")
	// A test binary that crashes runs no cleanup; moto must not outlive it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.startFront(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls moto's dashboard until it answers.
func (s *Server) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/moto-api/", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			log := tail(s.log, 30)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("moto_server on port %d: %w", s.Port, errPortTaken)
			}
			return fmt.Errorf("moto_server exited (%v):\n%s", s.err, log)
		case <-ctx.Done():
			return fmt.Errorf("waiting for moto_server on port %d to answer: %w\n%s", s.Port, ctx.Err(), tail(s.log, 30))
		case <-tick.C:
		}
	}
}

// Stop ends the server and removes its files. It may be called again.
func (s *Server) Stop() {
	if s.front != nil {
		_ = s.front.Close()
	}
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	os.RemoveAll(s.dir)
}

// Reset forgets every resource of every service, as a new server would.
func (s *Server) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/moto-api/reset", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("resetting moto: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("resetting moto: %s", resp.Status)
	}
	return nil
}

// AWSConfig is an SDK configuration for the server, in a region: static
// credentials, and few quick retries so that a failing call fails the test
// soon. It reads nothing from the environment or ~/.aws. S3 clients also
// need S3PathStyle.
func (s *Server) AWSConfig(region string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(s.Endpoint),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 100 * time.Millisecond
				// Tests provoke errors; no retry quota should run out.
				o.RateLimiter = ratelimit.None
			})
		},
	}
}

// S3PathStyle is the S3 client option moto needs, as in
// s3.NewFromConfig(srv.AWSConfig(region), moto.S3PathStyle): without it the
// SDK puts the bucket in the host name, BUCKET.localhost, which the resolver
// does not know.
func S3PathStyle(o *s3.Options) { o.UsePathStyle = true }

// ObjectURL is the URL of an S3 object on the server, path-style, as
// CloudFormation's TemplateURL takes it.
func (s *Server) ObjectURL(bucket, key string) string {
	return s.Endpoint + "/" + bucket + "/" + key
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail is the end of a file, its last lines.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(string(bytes.TrimRight(b, "\n")), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
