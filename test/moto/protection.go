package moto

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Protection stands in front of moto and plays CloudFormation's
// termination protection, which moto 5.2 lacks: it answers
// UpdateTerminationProtection with 500 (not implemented) and deletes
// protected stacks. The proxy remembers which stacks were created or
// updated with protection, answers UpdateTerminationProtection with the
// response CloudFormation documents for it, and refuses DeleteStack of a
// protected stack with CloudFormation's error; every other request goes to
// moto unchanged.
type Protection struct {
	// Endpoint is http://localhost:PORT, for the reason Server.Endpoint is.
	Endpoint string

	mu        sync.Mutex
	protected map[string]bool
	calls     []string
}

// StartProtection starts the proxy in front of s for the test.
func (s *Server) StartProtection(t testing.TB) *Protection {
	t.Helper()
	target, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", s.Port))
	if err != nil {
		t.Fatal(err)
	}
	p := &Protection{protected: map[string]bool{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p.handler(proxy)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.Endpoint = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	return p
}

// Calls lists the protection calls in order, as "Action StackName".
func (p *Protection) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// Protected says whether the stack is protected now.
func (p *Protection) Protected(stack string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.protected[stack]
}

func (p *Protection) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, ok := cloudFormationForm(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		stack := form.Get("StackName")
		switch form.Get("Action") {
		case "CreateStack":
			p.set(stack, form.Get("EnableTerminationProtection") == "true", "")
		case "UpdateTerminationProtection":
			p.set(stack, form.Get("EnableTerminationProtection") == "true", "UpdateTerminationProtection "+stack)
			w.Header().Set("Content-Type", "text/xml")
			fmt.Fprintf(w, updateTerminationProtectionResponse, stackARN(stack))
			return
		case "DeleteStack":
			if p.Protected(stack) {
				p.record("DeleteStack refused " + stack)
				w.Header().Set("Content-Type", "text/xml")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, deleteProtectedResponse, stack)
				return
			}
			p.record("DeleteStack " + stack)
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Protection) set(stack string, protected bool, call string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.protected[stack] = protected
	if call != "" {
		p.calls = append(p.calls, call)
	}
}

func (p *Protection) record(call string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, call)
}

// cloudFormationForm reads a CloudFormation query-protocol request's form
// and puts the body back for the proxy.
func cloudFormationForm(r *http.Request) (url.Values, bool) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return nil, false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if err != nil || !strings.Contains(form.Get("Version"), "2010-05-15") {
		return nil, false
	}
	return form, true
}

func stackARN(stack string) string {
	return "arn:aws:cloudformation:eu-central-1:" + AccountID + ":stack/" + stack + "/00000000-0000-0000-0000-000000000000"
}

// The responses CloudFormation's API reference documents for these calls.
const (
	updateTerminationProtectionResponse = `<UpdateTerminationProtectionResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <UpdateTerminationProtectionResult>
    <StackId>%s</StackId>
  </UpdateTerminationProtectionResult>
  <ResponseMetadata>
    <RequestId>5ccc7dcd-744c-11e5-be70-1b08c228efb3</RequestId>
  </ResponseMetadata>
</UpdateTerminationProtectionResponse>`
	deleteProtectedResponse = `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <Error>
    <Type>Sender</Type>
    <Code>ValidationError</Code>
    <Message>Stack [%s] cannot be deleted while TerminationProtection is enabled</Message>
  </Error>
  <RequestId>5ccc7dcd-744c-11e5-be70-1b08c228efb4</RequestId>
</ErrorResponse>`
)
