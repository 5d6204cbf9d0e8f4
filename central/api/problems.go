package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// writeProblem answers with an RFC 9457 problem document.
func writeProblem(w http.ResponseWriter, r *http.Request, p api.Problem) {
	if p.Type == "" {
		p.Type = api.ProblemTypeBase + strings.ReplaceAll(strings.ToLower(http.StatusText(p.Status)), " ", "-")
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = r.URL.Path
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func problem(status int, title, field, detail string) api.Problem {
	return api.Problem{Status: status, Title: title, Field: field, Detail: detail}
}

// writeError maps an error from validation or the store to its problem.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var verr *api.ValidationError
	var inUse *store.InUseError
	var p *api.Problem
	switch {
	case errors.As(err, &p):
		writeProblem(w, r, *p)
	case errors.As(err, &verr):
		first := verr.Errors[0]
		writeProblem(w, r, api.Problem{
			Type: api.ProblemTypeBase + "invalid-field", Status: http.StatusUnprocessableEntity,
			Title: "Invalid field " + first.Field, Detail: verr.Error(), Field: first.Field, Errors: verr.Errors,
		})
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, r, problem(http.StatusNotFound, "Not found", "", err.Error()))
	case errors.Is(err, store.ErrExists):
		writeProblem(w, r, problem(http.StatusConflict, "Already exists", "", err.Error()))
	case errors.Is(err, store.ErrStale):
		writeProblem(w, r, problem(http.StatusPreconditionFailed, "Precondition failed", "If-Match", err.Error()+"; read it again and retry"))
	case errors.As(err, &inUse):
		writeProblem(w, r, problem(http.StatusConflict, "In use", "", inUse.Reason))
	case r.Context().Err() != nil:
		// The client left (or its connection broke) while the request was
		// served: whatever failed then is no fault of the server.
		loggerFrom(r.Context()).Info("the client left before its answer", "error", err)
		w.WriteHeader(statusClientClosed)
	default:
		loggerFrom(r.Context()).Error("request failed", "error", err)
		writeProblem(w, r, problem(http.StatusInternalServerError, "Internal error", "", "the server failed to answer; see its log for request "+requestIDFrom(r.Context())))
	}
}

// decodeError names the offending field of a body that did not decode.
func decodeError(err error) api.Problem {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(body)"
		}
		return api.Problem{Type: api.ProblemTypeBase + "invalid-field", Status: http.StatusBadRequest, Title: "Invalid field " + field, Field: field,
			Detail: fmt.Sprintf("%s must be %s, got %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)}
	case errors.As(err, &syntaxErr):
		return problem(http.StatusBadRequest, "Malformed JSON", "(body)", fmt.Sprintf("at byte %d: %v", syntaxErr.Offset, err))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return api.Problem{Type: api.ProblemTypeBase + "unknown-field", Status: http.StatusBadRequest, Title: "Unknown field " + field, Field: field,
			Detail: fmt.Sprintf("%q is not a field of this resource", field)}
	}
	return problem(http.StatusBadRequest, "Malformed body", "(body)", err.Error())
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32":
		return "an integer"
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "a boolean"
	case "ptr":
		return "a timestamp or null"
	}
	return "a " + goKind
}
