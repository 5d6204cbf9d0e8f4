package gitserver

import (
	"bufio"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
)

// What a smart-HTTP request to a repository does, as the server counts it.
const (
	// RefListing lists the refs for reading: an ls-remote, and the start of
	// every fetch and clone. Under git's protocol v0 and v1 (go-git's) it is
	// GET info/refs?service=git-upload-pack; under v2 (the git command's) a
	// POST git-upload-pack with command=ls-refs, after a Handshake.
	RefListing = "ref-listing"
	// Handshake is protocol v2's GET info/refs, which lists capabilities, no refs.
	Handshake = "handshake"
	// Fetch sends objects to a reader (POST git-upload-pack), after a RefListing.
	Fetch = "fetch"
	// Push is either request of a push (info/refs?service=git-receive-pack, POST git-receive-pack).
	Push = "push"
)

// RequestKey names a count of Requests: the repository (NAME of NAME.git),
// the kind of request, and the client's User-Agent product, such as "git"
// for the git command or "go-git" for the registry's and the agent's reads.
type RequestKey struct {
	Repo, Kind, Client string
}

// requestCounts counts the authenticated requests the server answers, so
// that a test or a benchmark can tell how often each client reads a repository.
type requestCounts struct {
	mu     sync.Mutex
	counts map[RequestKey]int
}

func (c *requestCounts) count(r *http.Request) {
	key, ok := requestKeyOf(r)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[RequestKey]int{}
	}
	c.counts[key]++
}

// requestKeyOf classifies a smart-HTTP request; other requests are not counted.
func requestKeyOf(r *http.Request) (RequestKey, bool) {
	repoPath, action, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), ".git/")
	if !ok {
		return RequestKey{}, false
	}
	client, _, _ := strings.Cut(r.UserAgent(), "/")
	key := RequestKey{Repo: repoPath, Client: client}
	v2 := strings.Contains(r.Header.Get("Git-Protocol"), "version=2")
	switch service := r.URL.Query().Get("service"); {
	case action == "info/refs" && service == "git-upload-pack" && v2:
		key.Kind = Handshake
	case action == "info/refs" && service == "git-upload-pack":
		key.Kind = RefListing
	case action == "git-upload-pack" && v2 && commandOf(r) == "ls-refs":
		key.Kind = RefListing
	case action == "git-upload-pack":
		key.Kind = Fetch
	case action == "git-receive-pack", action == "info/refs" && service == "git-receive-pack":
		key.Kind = Push
	default:
		return RequestKey{}, false
	}
	return key, true
}

// commandOf reads the command of a protocol v2 request from the first
// pkt-line of its body ("0014command=ls-refs\n"), leaving the body whole
// for git; a compressed body is a large one, a fetch.
func commandOf(r *http.Request) string {
	if r.Header.Get("Content-Encoding") != "" {
		return ""
	}
	body := bufio.NewReader(r.Body)
	r.Body = struct {
		io.Reader
		io.Closer
	}{body, r.Body}
	head, _ := body.Peek(4 + len("command=ls-refs"))
	if len(head) < 4 {
		return ""
	}
	command, _ := strings.CutPrefix(string(head[4:]), "command=")
	command, _, _ = strings.Cut(command, "\n")
	return command
}

// Requests returns how many requests of each kind the server answered so
// far, by repository and client.
func (s *Server) Requests() map[RequestKey]int {
	s.requests.mu.Lock()
	defer s.requests.mu.Unlock()
	return maps.Clone(s.requests.counts)
}
