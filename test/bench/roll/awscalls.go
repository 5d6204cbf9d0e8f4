//go:build linux

package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// awsCall is one call the agent made to AWS.
type awsCall struct {
	Op       string
	At       time.Time
	Instance string // TerminateInstanceInAutoScalingGroup's
	Desired  int    // SetDesiredCapacity's
}

// awsRecorder is a reverse proxy in front of moto, the agent's AWS
// endpoint, that records each call as it arrives: its operation (the
// query protocol's Action, or the JSON protocol's X-Amz-Target) and, for
// the calls a roll's steps are timed by, the instance or the capacity.
type awsRecorder struct {
	url string
	srv *http.Server

	mu    sync.Mutex
	calls []awsCall
}

func startAWSRecorder(endpoint string) (*awsRecorder, error) {
	target, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &awsRecorder{url: "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
	proxy := httputil.NewSingleHostReverseProxy(target)
	r.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := r.record(req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		proxy.ServeHTTP(w, req)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *awsRecorder) record(req *http.Request) error {
	call := awsCall{At: time.Now()}
	if target := req.Header.Get("X-Amz-Target"); target != "" {
		call.Op = target[strings.LastIndex(target, ".")+1:]
	} else if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return err
		}
		call.Op, call.Instance = form.Get("Action"), form.Get("InstanceId")
		call.Desired, _ = strconv.Atoi(form.Get("DesiredCapacity"))
	}
	if call.Op == "" {
		call.Op = req.Method + " " + req.URL.Path
	}
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
	return nil
}

// between is the calls that arrived from from to to.
func (r *awsRecorder) between(from, to time.Time) []awsCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(r.calls), func(c awsCall) bool { return c.At.Before(from) || c.At.After(to) })
}

func (r *awsRecorder) close() error { return r.srv.Close() }
