package registry

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// maxErrorBody bounds how much of an error answer is read: enough for any
// problem document, little enough that a misbehaving proxy cannot flood us.
const maxErrorBody = 64 << 10

// problemFrom turns a non-2xx answer into a Problem: the server's own
// problem document when there is one, else one made of status and body text.
func problemFrom(resp *http.Response) *api.Problem {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err == nil && isProblemJSON(resp.Header.Get("Content-Type")) {
		var p api.Problem
		if json.Unmarshal(body, &p) == nil {
			if p.Status == 0 {
				p.Status = resp.StatusCode
			}
			if p.Title == "" {
				p.Title = statusTitle(resp.StatusCode)
			}
			return &p
		}
	}
	return &api.Problem{
		Type:   "about:blank",
		Title:  statusTitle(resp.StatusCode),
		Status: resp.StatusCode,
		Detail: strings.TrimSpace(string(body)),
	}
}

func isProblemJSON(contentType string) bool {
	media, _, err := mime.ParseMediaType(contentType)
	return err == nil && media == mediaProblem
}

func statusTitle(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "HTTP status " + strconv.Itoa(code)
}

// StatusCode returns the HTTP status of the problem err wraps, or 0 when err
// did not come from an answer of the server.
func StatusCode(err error) int {
	var p *api.Problem
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

// IsNotFound reports whether the server answered 404 Not Found.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsConflict reports whether the server answered 409 Conflict, for example
// because the resource to create exists already.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsPreconditionFailed reports whether the server answered 412: the If-Match
// ETag no longer names the current version of the resource.
func IsPreconditionFailed(err error) bool {
	return StatusCode(err) == http.StatusPreconditionFailed
}
