package api

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/central/store"
)

// probeMethods are the methods probed on every path. HEAD is left out: the
// mux answers HEAD wherever GET is routed, and the spec does not list it.
var probeMethods = []string{
	http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
	http.MethodOptions, http.MethodTrace,
}

// specOperation is one operation of the OpenAPI description.
type specOperation struct {
	method, path string
	public       bool // security: [] — no token needed
	responses    map[string]any
}

// TestOpenAPIDescribesEveryRoute checks that the spec and the server agree on
// which routes exist: every documented operation is routed, and every route
// the server registers (found in this package's source, then confirmed by
// probing) is documented, with the same methods.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	ops := loadSpecOperations(t)
	srv := newProbeServer(t)

	documented := map[string]specOperation{}
	paths := map[string]bool{}
	for _, op := range ops {
		documented[op.method+" "+op.path] = op
		paths[op.path] = true
	}
	registeredPaths := registeredRoutePaths(t)
	for _, p := range registeredPaths {
		if !paths[p] {
			t.Errorf("the server registers routes on %s, which the spec does not document", p)
		}
		paths[p] = true
	}

	for _, path := range sortedKeys(paths) {
		var allow []string
		for _, method := range probeMethods {
			if _, ok := documented[method+" "+path]; ok {
				allow = append(allow, method)
			}
		}
		for _, method := range probeMethods {
			key := method + " " + path
			resp := probe(srv, method, path)
			op, isDocumented := documented[key]
			routed := isRouted(resp)
			switch {
			case !routed && !isDocumented && len(allow) > 0:
				// The path exists for other methods: 405 naming them.
				got := strings.Split(resp.Header().Get("Allow"), ", ")
				slices.Sort(got)
				want := slices.Sorted(slices.Values(allow))
				if resp.Code != http.StatusMethodNotAllowed || !slices.Equal(got, want) {
					t.Errorf("%s answers %d with Allow %q, want 405 with Allow listing the documented %s",
						key, resp.Code, resp.Header().Get("Allow"), strings.Join(allow, ", "))
				}
			case routed && !isDocumented:
				t.Errorf("%s is routed (it answers %d to a request without a token) but the spec does not document it", key, resp.Code)
			case !routed && isDocumented:
				t.Errorf("the spec documents %s but the server has no such route (it answers %d: %s)", key, resp.Code, strings.TrimSpace(resp.Body.String()))
			case routed && op.public:
				if resp.Code == http.StatusUnauthorized {
					t.Errorf("%s is documented as needing no token (security: []) but answers 401", key)
				}
				if _, ok := op.responses[strconv.Itoa(resp.Code)]; !ok {
					t.Errorf("%s answers %d, which the spec does not list", key, resp.Code)
				}
			case routed:
				if resp.Code != http.StatusUnauthorized {
					t.Errorf("%s answers %d without a token, want 401 as the spec's bearer security says", key, resp.Code)
				}
				for _, status := range []string{"401", "403"} {
					if _, ok := op.responses[status]; !ok {
						t.Errorf("the spec does not list %s for %s, which needs a token", status, key)
					}
				}
			}
		}
	}
}

// TestOpenAPIErrorsAreProblems checks that the spec describes every error
// response as application/problem+json, as writeProblem answers.
func TestOpenAPIErrorsAreProblems(t *testing.T) {
	spec := loadSpec(t)
	components, _ := spec["components"].(map[string]any)
	sharedResponses, _ := components["responses"].(map[string]any)
	for _, op := range loadSpecOperations(t) {
		for status, resp := range op.responses {
			code, err := strconv.Atoi(status)
			if err != nil {
				t.Errorf("%s %s: response %q is not a status code", op.method, op.path, status)
				continue
			}
			if code < 400 {
				continue
			}
			r, _ := resp.(map[string]any)
			if ref, ok := r["$ref"].(string); ok {
				r, _ = sharedResponses[strings.TrimPrefix(ref, "#/components/responses/")].(map[string]any)
			}
			content, _ := r["content"].(map[string]any)
			if _, ok := content["application/problem+json"]; !ok || len(content) != 1 {
				t.Errorf("%s %s: response %s is not described as application/problem+json alone", op.method, op.path, status)
			}
		}
	}
}

func loadSpec(t *testing.T) map[string]any {
	t.Helper()
	doc, err := yaml.YAMLToJSON(OpenAPISpec)
	if err != nil {
		t.Fatalf("openapi.yaml is not valid YAML: %v", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(doc, &spec); err != nil {
		t.Fatalf("decoding openapi.yaml: %v", err)
	}
	if v, _ := spec["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi.yaml declares OpenAPI %q, want 3.1.x", v)
	}
	return spec
}

func loadSpecOperations(t *testing.T) []specOperation {
	t.Helper()
	spec := loadSpec(t)
	paths, ok := spec["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		t.Fatal("openapi.yaml has no paths")
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}
	var ops []specOperation
	for path, item := range paths {
		for key, v := range item.(map[string]any) {
			if !methods[key] {
				continue
			}
			op := v.(map[string]any)
			security, hasSecurity := op["security"].([]any)
			responses, _ := op["responses"].(map[string]any)
			ops = append(ops, specOperation{
				method: strings.ToUpper(key), path: path,
				public:    hasSecurity && len(security) == 0,
				responses: responses,
			})
		}
	}
	return ops
}

func newProbeServer(t *testing.T) *Server {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatalf("opening the store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return New(Options{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// probe sends a request without a token; path parameters get a sample value.
func probe(srv *Server, method, path string) *httptest.ResponseRecorder {
	target := pathParam.ReplaceAllString(path, "probe")
	req := httptest.NewRequest(method, target, nil)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// isRouted tells a response of a registered route from the mux's answer to
// an unregistered method or path: 405, or the catch-all's 404 "no route".
func isRouted(resp *httptest.ResponseRecorder) bool {
	if resp.Code == http.StatusMethodNotAllowed {
		return false
	}
	if resp.Code == http.StatusNotFound && strings.Contains(resp.Body.String(), "no route for ") {
		return false
	}
	return true
}

// registeredRoutePaths reads the paths this package registers from its
// source: the first argument of every s.plain and s.route call, and the
// collection and item paths of every s.resourceRoutes call. A registration
// this does not understand fails the test, so that no route goes unnoticed.
func registeredRoutePaths(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if fn, ok := n.(*ast.FuncDecl); ok && fn.Name.Name == "registerResource" {
				// It registers the routes of each s.resourceRoutes call, read there.
				return false
			}
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			recv, ok := sel.X.(*ast.Ident)
			if !ok || recv.Name != "s" {
				return true
			}
			lit := func(i int) string {
				if i >= len(call.Args) {
					t.Errorf("%s: s.%s has no argument %d", fset.Position(call.Pos()), sel.Sel.Name, i)
					return ""
				}
				b, ok := call.Args[i].(*ast.BasicLit)
				if !ok || b.Kind != token.STRING {
					t.Errorf("%s: s.%s is called with a pattern that is not a string literal; teach registeredRoutePaths to read it",
						fset.Position(call.Pos()), sel.Sel.Name)
					return ""
				}
				v, err := strconv.Unquote(b.Value)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			switch sel.Sel.Name {
			case "plain", "route":
				pattern := lit(0)
				if _, path, ok := strings.Cut(pattern, " "); ok {
					pattern = path
				}
				if pattern != "" && pattern != "/" { // "/" is the catch-all answering 404
					seen[pattern] = true
				}
			case "resourceRoutes":
				collection, item := lit(0), lit(1)
				if collection != "" && item != "" {
					seen[collection] = true
					seen[collection+"/"+item] = true
				}
			}
			return true
		})
	}
	if len(seen) == 0 {
		t.Fatal("found no route registrations in the package source")
	}
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
