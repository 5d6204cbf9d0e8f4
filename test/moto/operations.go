package moto

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Operations stands in front of a Server and plays what moto lacks of
// CloudFormation's asynchronous stack operations. moto carries out a
// CreateStack or an UpdateStack before it answers; CloudFormation answers
// at once, shows the stack CREATE_IN_PROGRESS or UPDATE_IN_PROGRESS while
// the operation runs (minutes, on AWS), and meanwhile refuses to update or
// delete the stack with a ValidationError ("Stack:ARN is in
// UPDATE_IN_PROGRESS state and can not be updated."). The proxy passes
// each operation to moto and, from the moment it sends it until the hold
// given to StartOperations has passed after moto's answer, shows the stack
// in progress in DescribeStacks and refuses UpdateStack and DeleteStack of
// it as CloudFormation does (and CreateStack, which CloudFormation refuses
// for any stack that exists). It records the operations moto took and those
// it refused, so that a test can tell whether a client ever started an
// operation on a stack whose last one was still under way.
//
// Stacks are named by their name, as the agent names them, not by ARN.
// An operation once sent is carried out even when its caller goes away
// before the answer, as on AWS. While the server is Down, the proxy drops
// every connection, as the unreachable endpoint would.
type Operations struct {
	// Endpoint is http://localhost:PORT, for the reason Server.Endpoint is.
	Endpoint string

	hold  time.Duration
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	running map[string]runningOperation
	taken   []StackOperation
	refused []StackOperation
}

// StackOperation is one CreateStack, UpdateStack or DeleteStack request.
type StackOperation struct {
	Action string
	Stack  string
	// Tags are the stack tags the request sets, none for DeleteStack.
	Tags map[string]string
	// At is when the proxy received the request.
	At time.Time
}

// runningOperation is an operation that DescribeStacks shows in progress:
// sent, until moto answered, and then until the hold has passed.
type runningOperation struct {
	status string
	sent   bool
	until  time.Time
}

func (r runningOperation) inProgress(now time.Time) bool { return r.sent || now.Before(r.until) }

// StartOperations starts the proxy in front of s for the test; hold is how
// long a creation or an update stays in progress after moto carried it out.
func (s *Server) StartOperations(t testing.TB, hold time.Duration) *Operations {
	t.Helper()
	target, err := url.Parse("http://127.0.0.1:" + strconv.Itoa(s.Port))
	if err != nil {
		t.Fatal(err)
	}
	o := &Operations{hold: hold, running: map[string]runningOperation{}, proxy: httputil.NewSingleHostReverseProxy(target)}
	o.proxy.ModifyResponse = o.afterResponse
	o.proxy.ErrorHandler = func(_ http.ResponseWriter, r *http.Request, _ error) {
		if op, ok := r.Context().Value(operationKey{}).(StackOperation); ok {
			o.answered(op, false)
		}
		panic(http.ErrAbortHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	o.Endpoint = "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	return o
}

// SetHold changes the hold of the operations sent from now on.
func (o *Operations) SetHold(hold time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hold = hold
}

// Finish ends the operation under way on a stack now, as CloudFormation
// does when it completes, whatever its hold.
func (o *Operations) Finish(stack string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r, ok := o.running[stack]; ok && !r.sent {
		r.until = time.Now()
		o.running[stack] = r
	}
}

// Taken lists the operations moto carried out, in the order they were sent.
func (o *Operations) Taken() []StackOperation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.taken)
}

// Refused lists the operations refused because one was under way.
func (o *Operations) Refused() []StackOperation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.refused)
}

// Running lists the stacks whose operation is in progress now.
func (o *Operations) Running() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	var out []string
	for stack, r := range o.running {
		if r.inProgress(now) {
			out = append(out, stack)
		}
	}
	slices.Sort(out)
	return out
}

// operationKey marks, in a request's context, the stack operation it carries.
type operationKey struct{}

// describeKey marks a DescribeStacks, whose answer shows running operations.
type describeKey struct{}

func (o *Operations) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	form, ok := cloudFormationForm(r)
	if !ok {
		o.proxy.ServeHTTP(w, r)
		return
	}
	switch action := form.Get("Action"); action {
	case "CreateStack", "UpdateStack", "DeleteStack":
		op := StackOperation{Action: action, Stack: form.Get("StackName"), Tags: formTags(form), At: time.Now()}
		if status, busy := o.begin(op); busy {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, validationErrorResponse, fmt.Sprintf("Stack:%s is in %s state and can not be updated.", stackARN(op.Stack), status))
			return
		}
		// A context that the client's going away does not end, yet with a
		// Done channel: ReverseProxy cancels a request whose context has
		// none when the client's connection closes.
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		r = r.WithContext(context.WithValue(ctx, operationKey{}, op))
	case "DescribeStacks":
		// The answer is rewritten: it must come uncompressed.
		r.Header.Del("Accept-Encoding")
		r = r.WithContext(context.WithValue(r.Context(), describeKey{}, true))
	}
	o.proxy.ServeHTTP(w, r)
}

// begin records op as sent, or as refused when an operation on its stack
// is in progress; then it returns that operation's status.
func (o *Operations) begin(op StackOperation) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r, ok := o.running[op.Stack]; ok && r.inProgress(op.At) {
		o.refused = append(o.refused, op)
		return r.status, true
	}
	if op.Action != "DeleteStack" {
		o.running[op.Stack] = runningOperation{status: inProgressStatus(op.Action), sent: true}
	}
	return "", false
}

func inProgressStatus(action string) string {
	if action == "CreateStack" {
		return "CREATE_IN_PROGRESS"
	}
	return "UPDATE_IN_PROGRESS"
}

// answered ends the sending of op: moto took it, and it runs for the hold,
// or it did not, and nothing runs.
func (o *Operations) answered(op StackOperation, took bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !took {
		delete(o.running, op.Stack)
		return
	}
	o.taken = append(o.taken, op)
	if op.Action == "DeleteStack" {
		delete(o.running, op.Stack)
		return
	}
	o.running[op.Stack] = runningOperation{status: inProgressStatus(op.Action), until: time.Now().Add(o.hold)}
}

func (o *Operations) afterResponse(resp *http.Response) error {
	ctx := resp.Request.Context()
	if op, ok := ctx.Value(operationKey{}).(StackOperation); ok {
		o.answered(op, resp.StatusCode == http.StatusOK)
		return nil
	}
	if ctx.Value(describeKey{}) == nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading moto's DescribeStacks answer: %w", err)
	}
	body = o.showRunning(body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// showRunning puts the status of the operations in progress into a
// DescribeStacks answer, in which each stack's StackName comes before its
// StackStatus.
func (o *Operations) showRunning(body []byte) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	for stack, r := range o.running {
		if !r.inProgress(now) {
			continue
		}
		status := regexp.MustCompile(`(?s)(<StackName>` + regexp.QuoteMeta(stack) + `</StackName>.*?<StackStatus>)[A-Z_]+(</StackStatus>)`)
		body = status.ReplaceAll(body, []byte("${1}"+r.status+"${2}"))
	}
	return body
}

// formTags reads the Tags.member.N.Key and .Value of a request.
func formTags(form url.Values) map[string]string {
	tags := map[string]string{}
	for i := 1; ; i++ {
		key := form.Get("Tags.member." + strconv.Itoa(i) + ".Key")
		if key == "" {
			return tags
		}
		tags[key] = form.Get("Tags.member." + strconv.Itoa(i) + ".Value")
	}
}

// validationErrorResponse is CloudFormation's ValidationError.
const validationErrorResponse = `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <Error>
    <Type>Sender</Type>
    <Code>ValidationError</Code>
    <Message>%s</Message>
  </Error>
  <RequestId>5ccc7dcd-744c-11e5-be70-1b08c228efb5</RequestId>
</ErrorResponse>`
