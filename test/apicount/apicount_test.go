package apicount

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		method, target, contentType string
		want                        Request
	}{
		{"GET", "/api/v1/namespaces/a/configmaps/x", "", Request{Verb: "get", Resource: "configmaps", Namespace: "a", Name: "x"}},
		{"GET", "/api/v1/namespaces/a/configmaps", "", Request{Verb: "list", Resource: "configmaps", Namespace: "a"}},
		{"GET", "/api/v1/configmaps?watch=true&resourceVersion=5", "", Request{Verb: "watch", Resource: "configmaps"}},
		{"GET", "/api/v1/watch/namespaces/a/configmaps", "", Request{Verb: "watch", Resource: "configmaps", Namespace: "a"}},
		{"GET", "/apis/apps/v1/namespaces/a/deployments?watch=1&fieldSelector=metadata.name%3Dweb", "",
			Request{Verb: "watch", Group: "apps", Resource: "deployments", Namespace: "a", Name: "web"}},
		{"PATCH", "/apis/apps/v1/namespaces/a/deployments/web?fieldManager=m&force=true", "application/apply-patch+yaml",
			Request{Verb: "patch", Apply: true, Group: "apps", Resource: "deployments", Namespace: "a", Name: "web"}},
		{"PATCH", "/apis/apps/v1/namespaces/a/deployments/web?dryRun=All", "application/apply-patch+yaml",
			Request{Verb: "patch", Apply: true, DryRun: true, Group: "apps", Resource: "deployments", Namespace: "a", Name: "web"}},
		{"PUT", "/apis/apps/v1/namespaces/a/deployments/web/scale", "application/json",
			Request{Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale", Namespace: "a", Name: "web"}},
		{"GET", "/api/v1/namespaces/a", "", Request{Verb: "get", Resource: "namespaces", Namespace: "a", Name: "a"}},
		{"PUT", "/api/v1/namespaces/a/finalize", "", Request{Verb: "update", Resource: "namespaces", Subresource: "finalize", Namespace: "a", Name: "a"}},
		{"GET", "/api/v1/namespaces", "", Request{Verb: "list", Resource: "namespaces"}},
		{"POST", "/api/v1/namespaces/a/events", "", Request{Verb: "create", Resource: "events", Namespace: "a"}},
		{"DELETE", "/api/v1/namespaces/a/configmaps", "", Request{Verb: "deletecollection", Resource: "configmaps", Namespace: "a"}},
		{"GET", "/apis/kustomize.toolkit.fluxcd.io/v1", "", Request{Verb: "discovery"}},
		{"GET", "/openapi/v3", "", Request{Verb: "discovery"}},
		{"GET", "/readyz", "", Request{Verb: "non-resource"}},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if c.contentType != "" {
			r.Header.Set("Content-Type", c.contentType)
		}
		got := Classify(r)
		got.Path, got.UserAgent = "", ""
		if got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.method, c.target, got, c.want)
		}
	}
}

// The proxy forwards with the client's token, streams a watch as it
// comes, and records what its client asked.
func TestProxyForwardsAndCounts(t *testing.T) {
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("watch") == "true" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintln(w, `{"type":"ADDED"}`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer upstream.Close()
	p, err := Start(&rest.Config{Host: upstream.URL, BearerToken: "secret", TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}()
	client, err := rest.HTTPClientFor(p.Config())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := client.Get(p.URL + "/api/v1/namespaces/a/configmaps/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("the proxy spoke %s, want HTTP/2 as the API server does", resp.Proto)
	}

	// The first event arrives while the watch stays open.
	resp, err = client.Get(p.URL + "/api/v1/configmaps?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, err := resp.Body.Read(line)
	if err != nil || !strings.Contains(string(line[:n]), "ADDED") {
		t.Fatalf("the watch's first event: %q, %v", line[:n], err)
	}
	resp.Body.Close()

	got := Count(p.Requests(start, time.Time{}))
	if got.String() != "2: 1 watch + 1 get" {
		t.Errorf("counted %s", got)
	}
	if reqs := p.Requests(time.Now(), time.Time{}); len(reqs) != 0 {
		t.Errorf("requests after now: %+v", reqs)
	}
}
