// Package apicount counts the requests one client makes to a
// kube-apiserver. A Proxy is a reverse proxy on loopback in front of the
// real kube-apiserver; a process given a kubeconfig that points at its own
// Proxy has every request it makes recorded, with its time, verb (as the
// API server's authorizer names it) and resource, so that a benchmark can
// say what each of several clients of the same control plane asked for.
package apicount

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// Request is one request the client made.
type Request struct {
	At time.Time
	// Verb is the API server's: get, list, watch, create, update, patch,
	// delete, deletecollection; "discovery" for /api, /apis, /openapi and
	// /version, "non-resource" for any other path without a resource.
	Verb string
	// DryRun is set for requests with ?dryRun, which change nothing.
	DryRun bool
	// Apply is set for server-side apply PATCHes.
	Apply       bool
	Group       string
	Resource    string
	Subresource string
	Namespace   string
	// Name is the object's, also when a list or watch selects one object by
	// metadata.name, as the API server's authorizer reads it.
	Name      string
	Path      string
	UserAgent string
}

// Write tells whether the request changed, or asked to change, what the API
// server stores.
func (r Request) Write() bool {
	switch r.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return !r.DryRun
	}
	return false
}

// Label is the request's kind as reports name it: its verb, "apply" for a
// server-side apply PATCH, prefixed "dry-run " when it changed nothing.
func (r Request) Label() string {
	v := r.Verb
	if r.Apply {
		v = "apply"
	}
	if r.DryRun {
		v = "dry-run " + v
	}
	return v
}

// GroupResource is "resource.group", or "resource" for the core group,
// with "/subresource" when there is one.
func (r Request) GroupResource() string {
	s := r.Resource
	if r.Group != "" {
		s += "." + r.Group
	}
	if r.Subresource != "" {
		s += "/" + r.Subresource
	}
	return s
}

// Proxy forwards a client's requests to the real kube-apiserver over TLS,
// with HTTP/2 as the client would have it, and records them.
type Proxy struct {
	// URL is where the client reaches the proxy: https on loopback, with a
	// certificate of its own that clients do not verify, as the test
	// control plane's kubeconfig already does not.
	URL      string
	upstream *rest.Config
	srv      *http.Server
	served   chan error

	mu   sync.Mutex
	reqs []Request
}

// Start listens on a free loopback port and forwards to the API server of
// upstream. Requests pass with the client's own credentials; upstream's
// are only written into Kubeconfig.
func Start(upstream *rest.Config) (*Proxy, error) {
	target, err := url.Parse(upstream.Host)
	if err != nil {
		return nil, fmt.Errorf("the upstream's host %q: %w", upstream.Host, err)
	}
	// The transport carries no credentials of its own: a client with none
	// is refused by the API server as it would be without the proxy.
	tlsCfg, err := rest.TLSConfigFor(rest.AnonymousClientConfig(upstream))
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 100,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext}
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "https://" + ln.Addr().String(), upstream: upstream, served: make(chan error, 1)}
	quiet := log.New(io.Discard, "", 0) // a client that ends its watch is no error
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport:     transport,
		FlushInterval: -1, // watch events reach the client as they come
		ErrorLog:      quiet,
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.record(r)
		rp.ServeHTTP(w, r)
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ErrorLog: quiet, ReadHeaderTimeout: 10 * time.Second}
	go func() { p.served <- p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

// Close stops the proxy, ending the connections of its client.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	if serr := <-p.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Config is a copy of upstream that reaches the API server through the
// proxy, for a client in this process.
func (p *Proxy) Config() *rest.Config {
	cfg := rest.CopyConfig(p.upstream)
	cfg.Host = p.URL
	cfg.TLSClientConfig = rest.TLSClientConfig{Insecure: true}
	return cfg
}

// WriteKubeconfig writes a kubeconfig for a client process: the proxy's
// address and upstream's bearer token.
func (p *Proxy) WriteKubeconfig(path string) error {
	if p.upstream.BearerToken == "" {
		return errors.New("apicount: the upstream config has no bearer token to write into a kubeconfig")
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: proxy
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: client
  user:
    token: %s
contexts:
- name: proxy
  context: {cluster: proxy, user: client}
current-context: proxy
`, p.URL, p.upstream.BearerToken)
	return os.WriteFile(path, []byte(kubeconfig), 0o600)
}

// Requests are the requests that arrived from from on, before to; a zero
// to means until now.
func (p *Proxy) Requests(from, to time.Time) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Request
	for _, r := range p.reqs {
		if !r.At.Before(from) && (to.IsZero() || r.At.Before(to)) {
			out = append(out, r)
		}
	}
	return out
}

func (p *Proxy) record(r *http.Request) {
	req := Classify(r)
	req.At = time.Now()
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
}

// Classify reads a request as the API server's request info does: the
// verb from the method and path, the resource and the object's name.
func Classify(r *http.Request) Request {
	req := Request{Path: r.URL.Path, UserAgent: r.UserAgent()}
	q := r.URL.Query()
	req.DryRun = q.Has("dryRun")
	req.Apply = r.Method == http.MethodPatch && strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch")
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		req.Group, parts = parts[1], parts[3:]
	default:
		req.Verb = "non-resource"
		if slices.Contains([]string{"api", "apis", "openapi", "version"}, parts[0]) {
			req.Verb = "discovery"
		}
		return req
	}
	watch := q.Get("watch") == "true" || q.Get("watch") == "1"
	if parts[0] == "watch" { // the old /watch/ paths
		watch, parts = true, parts[1:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		req.Namespace = parts[1]
		// namespaces/NS and its status and finalize are the Namespace itself.
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	if len(parts) > 0 {
		req.Resource = parts[0]
	}
	if len(parts) > 1 {
		req.Name = parts[1]
	}
	if len(parts) > 2 {
		req.Subresource = parts[2]
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			req.Verb = "watch"
		case req.Name != "":
			req.Verb = "get"
		default:
			req.Verb = "list"
		}
	case http.MethodPost:
		req.Verb = "create"
	case http.MethodPut:
		req.Verb = "update"
	case http.MethodPatch:
		req.Verb = "patch"
	case http.MethodDelete:
		req.Verb = "delete"
		if req.Name == "" {
			req.Verb = "deletecollection"
		}
	default:
		req.Verb = strings.ToLower(r.Method)
	}
	if req.Name == "" && (req.Verb == "list" || req.Verb == "watch") {
		// A list or watch of one object by name, as informers of a
		// single object make it.
		for _, sel := range strings.Split(q.Get("fieldSelector"), ",") {
			if name, ok := strings.CutPrefix(sel, "metadata.name="); ok {
				req.Name = name
			}
		}
	}
	return req
}

// Tally counts requests by Label, in a stable order: reads, then writes,
// then dry-runs and the rest.
type Tally struct {
	Total  int
	Labels []string
	Counts map[string]int
}

var labelOrder = []string{"watch", "list", "get", "discovery", "non-resource", "create", "apply", "patch", "update", "delete", "deletecollection", "dry-run apply", "dry-run patch"}

// Count tallies requests.
func Count(reqs []Request) Tally {
	t := Tally{Counts: map[string]int{}}
	for _, r := range reqs {
		t.Counts[r.Label()]++
		t.Total++
	}
	for _, l := range labelOrder {
		if t.Counts[l] > 0 {
			t.Labels = append(t.Labels, l)
		}
	}
	var rest []string
	for l := range t.Counts {
		if !slices.Contains(labelOrder, l) {
			rest = append(rest, l)
		}
	}
	slices.Sort(rest)
	t.Labels = append(t.Labels, rest...)
	return t
}

// String is "N: a watch + b list + ...", or "0".
func (t Tally) String() string {
	if t.Total == 0 {
		return "0"
	}
	parts := make([]string, 0, len(t.Labels))
	for _, l := range t.Labels {
		parts = append(parts, grouped(t.Counts[l])+" "+l)
	}
	return grouped(t.Total) + ": " + strings.Join(parts, " + ")
}

// grouped writes n with comma separators, as the benchmarks write counts.
func grouped(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// selfSigned is the proxy's certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "apicount"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
