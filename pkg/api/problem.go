package api

import (
	"fmt"
	"strings"
)

// ProblemTypeBase prefixes every problem type the registry answers with.
const ProblemTypeBase = "https://caravan.io/problems/"

// Problem types of the decommission protocol, for clients that act on them.
const (
	// ProblemDecommissionNotRequested (409): a decommission is confirmed
	// only while the cluster's lifecycle_status is decommission-requested.
	ProblemDecommissionNotRequested = ProblemTypeBase + "decommission-not-requested"
	// ProblemDecommissionNotConfirmed (409): an agent reports the phase
	// decommissioned only after an admin confirmed the decommission.
	ProblemDecommissionNotConfirmed = ProblemTypeBase + "decommission-not-confirmed"
)

// Problem is an RFC 9457 problem detail. Field names the offending request
// field, and Errors lists every invalid field when there are several.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Field    string       `json:"field,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// Error makes a Problem usable as an error by the client and the CLI.
func (p *Problem) Error() string {
	if p.Detail == "" {
		return p.Title
	}
	return p.Title + ": " + p.Detail
}

// FieldError is one invalid field of a request.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError collects every invalid field of a resource.
type ValidationError struct {
	Errors []FieldError
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Errors))
	for i, e := range v.Errors {
		parts[i] = e.Field + ": " + e.Detail
	}
	return strings.Join(parts, "; ")
}

func (v *ValidationError) add(field, format string, args ...any) {
	v.Errors = append(v.Errors, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was added, so callers can return it directly.
func (v *ValidationError) err() error {
	if len(v.Errors) == 0 {
		return nil
	}
	return v
}
