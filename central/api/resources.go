package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// resource is how one kind of resource is served: what the store keeps,
// how a request maps to it and what the server sets on the way.
type resource[T any] struct {
	kind store.Kind[T]
	// pathRef addresses an existing resource from the request path.
	pathRef func(r *http.Request) store.Ref
	// newRef addresses a resource about to be created.
	newRef func(r *http.Request, v T) store.Ref
	// owner, for nested resources, checks that the owning cluster exists.
	owner func(ctx context.Context, r *http.Request) error
	// filters maps query parameters to filterable columns; "parent" filters by owner.
	filters map[string]string
	// prepareCreate fills server-set fields and defaults, then validates.
	prepareCreate func(ctx context.Context, r *http.Request, v *T) error
	// prepareUpdate keeps what a client may not change from old, then validates.
	prepareUpdate func(ctx context.Context, r *http.Request, old T, v *T) error
	// create stores a new resource when more than the resource itself is
	// stored with it; store.Create otherwise.
	create func(ctx context.Context, v T, actor string) (store.Record[T], error)
	// conditionalGet answers If-None-Match with 304. Off for kinds served
	// with more than their stored document, whose ETag does not cover all.
	conditionalGet bool
	// checkDelete refuses deletes the resource's state does not allow.
	checkDelete func(old T) error
	// present completes resources before they are answered.
	present func(ctx context.Context, items []T) error
}

func (s *Server) resourceRoutes(collection, item string, res any) {
	switch r := res.(type) {
	case resource[api.InfrastructureAccount]:
		registerResource(s, collection, item, r)
	case resource[api.Cluster]:
		registerResource(s, collection, item, r)
	case resource[api.NodePool]:
		registerResource(s, collection, item, r)
	case resource[api.Channel]:
		registerResource(s, collection, item, r)
	case resource[api.Block]:
		registerResource(s, collection, item, r)
	default:
		panic("unknown resource type")
	}
}

func registerResource[T any](s *Server, collection, item string, res resource[T]) {
	path := collection + "/" + item
	s.route("GET "+collection, auth.Read, func(w http.ResponseWriter, r *http.Request) { listResource(s, w, r, res) })
	s.route("POST "+collection, auth.Write, func(w http.ResponseWriter, r *http.Request) { createResource(s, w, r, res, collection) })
	s.route("GET "+path, auth.Read, func(w http.ResponseWriter, r *http.Request) { getResource(w, r, s, res) })
	s.route("PUT "+path, auth.Write, func(w http.ResponseWriter, r *http.Request) { replaceResource(s, w, r, res, false) })
	s.route("PATCH "+path, auth.Write, func(w http.ResponseWriter, r *http.Request) { replaceResource(s, w, r, res, true) })
	s.route("DELETE "+path, auth.Write, func(w http.ResponseWriter, r *http.Request) { deleteResource(s, w, r, res) })
}

func listResource[T any](s *Server, w http.ResponseWriter, r *http.Request, res resource[T]) {
	q := r.URL.Query()
	limit, err := parseLimit(q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if res.owner != nil {
		if err := res.owner(r.Context(), r); err != nil {
			writeError(w, r, err)
			return
		}
	}
	f := store.Filter{Equal: map[string]string{}, Limit: limit, Continue: q.Get("continue")}
	if res.owner != nil {
		f.Parent = r.PathValue("id")
	}
	for param, column := range res.filters {
		if v := q.Get(param); v != "" {
			if column == "parent" {
				f.Parent = v
			} else {
				f.Equal[column] = v
			}
		}
	}
	recs, next, err := store.List(r.Context(), s.store, res.kind, f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	items := make([]T, len(recs))
	for i, rec := range recs {
		items[i] = rec.Value
	}
	if res.present != nil {
		if err := res.present(r.Context(), items); err != nil {
			writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, api.List[T]{Items: items, Next: next})
}

func parseLimit(q url.Values) (int, error) {
	raw := q.Get("limit")
	if raw == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 1000 {
		return 0, queryProblem("limit", "must be a whole number from 1 to 1000, got "+strconv.Quote(raw))
	}
	return n, nil
}

func createResource[T any](s *Server, w http.ResponseWriter, r *http.Request, res resource[T], collection string) {
	ctx := r.Context()
	if res.owner != nil {
		if err := res.owner(ctx, r); err != nil {
			writeError(w, r, err)
			return
		}
	}
	var v T
	if p := decodeBody(r, &v, "application/json"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	if err := res.prepareCreate(ctx, r, &v); err != nil {
		writeError(w, r, err)
		return
	}
	ref := res.newRef(r, v)
	var rec store.Record[T]
	var err error
	if res.create != nil {
		rec, err = res.create(ctx, v, principalFrom(ctx).Name)
	} else {
		rec, err = store.Create(ctx, s.store, res.kind, ref, v, principalFrom(ctx).Name)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := presentOne(ctx, res, &rec.Value); err != nil {
		writeError(w, r, err)
		return
	}
	key := ref.Key
	if i := strings.LastIndex(key, "/"); i >= 0 {
		key = key[i+1:]
	}
	w.Header().Set("Location", strings.Replace(collection, "{id}", url.PathEscape(r.PathValue("id")), 1)+"/"+url.PathEscape(key))
	w.Header().Set("ETag", rec.ETag)
	writeJSON(w, http.StatusCreated, rec.Value)
}

func getResource[T any](w http.ResponseWriter, r *http.Request, s *Server, res resource[T]) {
	rec, err := store.Get(r.Context(), s.store, res.kind, res.pathRef(r).Key)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if res.conditionalGet && etagMatches(r.Header.Get("If-None-Match"), rec.ETag) {
		w.Header().Set("ETag", rec.ETag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err := presentOne(r.Context(), res, &rec.Value); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", rec.ETag)
	writeJSON(w, http.StatusOK, rec.Value)
}

func replaceResource[T any](s *Server, w http.ResponseWriter, r *http.Request, res resource[T], patch bool) {
	ctx := r.Context()
	ref := res.pathRef(r)
	old, ok := readForWrite(s, w, r, res, ref)
	if !ok {
		return
	}
	var v T
	if patch {
		if p := decodePatch(r, old.Value, &v); p != nil {
			writeProblem(w, r, *p)
			return
		}
	} else if p := decodeBody(r, &v, "application/json"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	if err := res.prepareUpdate(ctx, r, old.Value, &v); err != nil {
		writeError(w, r, err)
		return
	}
	rec, err := store.Update(ctx, s.store, res.kind, ref, old.Revision, old.Value, v, principalFrom(ctx).Name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := presentOne(ctx, res, &rec.Value); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", rec.ETag)
	writeJSON(w, http.StatusOK, rec.Value)
}

// readForWrite reads the resource a write addresses and checks the
// client's If-Match against it; it has answered the request when it reports false.
func readForWrite[T any](s *Server, w http.ResponseWriter, r *http.Request, res resource[T], ref store.Ref) (store.Record[T], bool) {
	old, err := store.Get(r.Context(), s.store, res.kind, ref.Key)
	if err != nil {
		writeError(w, r, err)
		return old, false
	}
	if p := checkIfMatch(r, old.ETag); p != nil {
		writeProblem(w, r, *p)
		return old, false
	}
	return old, true
}

func deleteResource[T any](s *Server, w http.ResponseWriter, r *http.Request, res resource[T]) {
	ctx := r.Context()
	ref := res.pathRef(r)
	old, ok := readForWrite(s, w, r, res, ref)
	if !ok {
		return
	}
	if res.checkDelete != nil {
		if err := res.checkDelete(old.Value); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if err := store.Delete(ctx, s.store, res.kind, ref, old.Revision, old.Value, principalFrom(ctx).Name); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func presentOne[T any](ctx context.Context, res resource[T], v *T) error {
	if res.present == nil {
		return nil
	}
	items := []T{*v}
	if err := res.present(ctx, items); err != nil {
		return err
	}
	*v = items[0]
	return nil
}

// checkIfMatch answers 412 when the client's If-Match names another version.
func checkIfMatch(r *http.Request, etag string) *api.Problem {
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" || ifMatch == "*" || strongMatch(ifMatch, etag) {
		return nil
	}
	p := problem(http.StatusPreconditionFailed, "Precondition failed", "If-Match",
		"the resource changed since it was read: If-Match "+ifMatch+" but the current ETag is "+etag)
	return &p
}

// strongMatch compares If-Match's entity tags with etag; RFC 9110 wants the
// strong comparison there, so a weak tag never matches.
func strongMatch(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		if strings.TrimSpace(candidate) == etag {
			return true
		}
	}
	return false
}

// etagMatches compares If-None-Match's entity tags with etag (weak comparison).
func etagMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		c := strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if c == etag || c == "*" {
			return true
		}
	}
	return false
}

// readValid decodes the request's JSON body into v and validates it; on
// a problem it answers it and returns false.
func readValid(w http.ResponseWriter, r *http.Request, v interface{ Validate() error }) bool {
	if p := decodeBody(r, v, "application/json"); p != nil {
		writeProblem(w, r, *p)
		return false
	}
	if err := v.Validate(); err != nil {
		writeError(w, r, err)
		return false
	}
	return true
}

func decodeBody(r *http.Request, v any, wantType string) *api.Problem {
	if p := checkContentType(r, wantType); p != nil {
		return p
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyReadProblem(err)
	}
	return decodeStrict(body, v)
}

func decodeStrict(body []byte, v any) *api.Problem {
	if len(bytes.TrimSpace(body)) == 0 {
		p := problem(http.StatusBadRequest, "Empty body", "(body)", "the request needs a JSON object")
		return &p
	}
	if p := checkJSONText(body); p != nil {
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && strings.HasPrefix(typeErr.Value, "number") {
			// JSON (and OpenAPI 3.1) counts 3.0 as an integer; Go does not.
			if whole, ok := wholeNumbersAsIntegers(body); ok {
				return decodeStrict(whole, v)
			}
		}
		p := decodeError(err)
		return &p
	}
	if dec.More() {
		p := problem(http.StatusBadRequest, "Malformed JSON", "(body)", "the body holds more than one JSON value")
		return &p
	}
	return nil
}

func bodyReadProblem(err error) *api.Problem {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		p := problem(http.StatusRequestEntityTooLarge, "Body too large", "(body)", "the body must be at most 1 MiB")
		return &p
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		p := problem(http.StatusBadRequest, "Body too slow", "(body)", "the body did not arrive in time; send it at once")
		return &p
	}
	p := problem(http.StatusBadRequest, "Unreadable body", "(body)", err.Error())
	return &p
}

func checkContentType(r *http.Request, want string) *api.Problem {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == want || mt == "application/json") {
		return nil
	}
	p := problem(http.StatusUnsupportedMediaType, "Unsupported media type", "Content-Type", "send "+want+", not "+ct)
	return &p
}

// decodePatch applies an RFC 7396 JSON merge patch to the current resource.
func decodePatch[T any](r *http.Request, current T, v *T) *api.Problem {
	if p := checkContentType(r, "application/merge-patch+json"); p != nil {
		return p
	}
	patch, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyReadProblem(err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(patch, &probe); err != nil {
		p := problem(http.StatusBadRequest, "Malformed merge patch", "(body)", "a JSON merge patch must be a JSON object: "+err.Error())
		return &p
	}
	doc, err := json.Marshal(current)
	if err != nil {
		p := problem(http.StatusInternalServerError, "Internal error", "", err.Error())
		return &p
	}
	merged, err := jsonpatch.MergePatch(doc, patch)
	if err != nil {
		p := problem(http.StatusBadRequest, "Malformed merge patch", "(body)", err.Error())
		return &p
	}
	return decodeStrict(merged, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// queryProblem is a 400 naming a bad query parameter.
func queryProblem(param, detail string) *api.Problem {
	return &api.Problem{Type: api.ProblemTypeBase + "invalid-query-parameter", Status: http.StatusBadRequest,
		Title: "Invalid query parameter " + param, Field: param, Detail: param + " " + detail}
}

// wholeNumbersAsIntegers rewrites numbers such as 3.0 or 1e2 as 3 and 100;
// it reports false when there was nothing to rewrite.
func wholeNumbersAsIntegers(body []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if dec.Decode(&doc) != nil {
		return nil, false
	}
	changed := false
	var walk func(any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = walk(e)
			}
		case []any:
			for i, e := range t {
				t[i] = walk(e)
			}
		case json.Number:
			if _, err := t.Int64(); err == nil {
				return t
			}
			f, err := t.Float64()
			if err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				changed = true
				return json.Number(strconv.FormatInt(int64(f), 10))
			}
		}
		return x
	}
	doc = walk(doc)
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(doc)
	return out, err == nil
}
