package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Every text the registry keeps must be valid UTF-8 without NUL characters:
// PostgreSQL refuses anything else ("invalid byte sequence for encoding
// UTF8"), and SQLite would keep what PostgreSQL cannot. The checks here
// refuse such text at the edge, with a problem naming where it was, so that
// both databases answer alike.

// checkText guards a route: a path value that is not valid text names no
// resource (404), a query parameter that is not is malformed (400).
func checkText(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, name := range patternWildcards(r.Pattern) {
			if !store.ValidText(r.PathValue(name)) {
				writeProblem(w, r, problem(http.StatusNotFound, "Not found", name,
					name+" holds a NUL character or invalid UTF-8, which no "+name+" of the registry does"))
				return
			}
		}
		for name, values := range r.URL.Query() {
			for _, v := range values {
				if !store.ValidText(v) {
					writeProblem(w, r, *queryProblem(name, "must be UTF-8 text without NUL characters"))
					return
				}
			}
		}
		h(w, r)
	}
}

// patternWildcards names the wildcards of a route pattern such as
// "GET /api/v1/clusters/{id}/blocks/{block_id}".
func patternWildcards(pattern string) []string {
	var out []string
	for {
		open := strings.IndexByte(pattern, '{')
		if open < 0 {
			return out
		}
		end := strings.IndexByte(pattern[open:], '}')
		if end < 0 {
			return out
		}
		name := strings.TrimSuffix(pattern[open+1:open+end], "...")
		if name != "$" {
			out = append(out, name)
		}
		pattern = pattern[open+end+1:]
	}
}

// checkJSONText finds the first string of a JSON body, key or value, that
// is not valid text, and names its field, such as config_items.zone or
// node_pools[0].name. It reports nil when every string is valid, or when
// the body is not JSON at all (the decoder then says what is wrong).
func checkJSONText(body []byte) *api.Problem {
	bad := int64(-1)
	if !utf8.Valid(body) {
		// Go's decoder would quietly turn the bytes into U+FFFD; refuse them instead.
		for i := 0; i < len(body); {
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				bad = int64(i)
				break
			}
			i += size
		}
	}
	if bad < 0 && !bytes.Contains(body, []byte(`\u0000`)) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		array bool
		index int
		key   string
		// wantKey: in an object, the next string is a key.
		wantKey bool
	}
	var stack []*level
	field := func(extra string) string {
		var b strings.Builder
		for _, l := range stack {
			switch {
			case l.array:
				b.WriteString("[" + strconv.Itoa(l.index) + "]")
			case l.key != "":
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.key)
			}
		}
		if extra != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(extra)
		}
		if b.Len() == 0 {
			return "(body)"
		}
		return b.String()
	}
	invalid := func(f string) *api.Problem {
		return &api.Problem{Type: api.ProblemTypeBase + "invalid-field", Status: http.StatusBadRequest, Title: "Invalid field " + f, Field: f,
			Detail: f + " must be UTF-8 text without NUL characters"}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && !top.array && top.wantKey
		if str, ok := tok.(string); ok {
			if isKey {
				top.key, top.wantKey = str, false
				if !store.ValidText(str) || (bad >= start && bad < dec.InputOffset()) {
					return invalid(field(""))
				}
				continue
			}
			if !store.ValidText(str) || (bad >= start && bad < dec.InputOffset()) {
				return invalid(field(""))
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &level{wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &level{array: true, index: 0})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the next string of an object is a key again, the
		// next value of an array has the next index.
		if len(stack) > 0 {
			top = stack[len(stack)-1]
			if top.array {
				top.index++
			} else {
				top.wantKey = true
			}
		}
	}
}
