package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caravan-gitops/caravan/central/auth"
)

// A git webhook announces a push to the config repo. The registry then
// reads the pushed branch's head from git at once, as its periodic refresh
// does (the payload's commit is only a hint, never taken as the head), and
// a new head that the channels following that branch publish (an enforced
// gate holds one no promotion records) wakes the long-polls of their
// clusters, on every replica (channels.Heads' change callback records it
// with store.SetChannelHead, which decides and notifies). The request is
// authenticated by the shared secret of --webhook-secret-file alone:
//
//   - GitHub: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>,
//     X-GitHub-Event: push (ping is answered 204, other events 202);
//   - GitLab: X-Gitlab-Token equal to the secret, X-Gitlab-Event: Push Hook;
//   - anything else: the GitHub signature over a plain {"ref", "after"}
//     (optionally "repository_url").
//
// Without a secret the endpoint answers 404. However often pushes are
// announced, one branch is read at most once per channels.Heads' refresh gap.

// webhookPush is what the registry reads of a push event, whichever sender.
type webhookPush struct {
	Ref   string `json:"ref"`
	After string `json:"after"`
	// RepositoryURL is the plain payload's optional repository.
	RepositoryURL string `json:"repository_url"`
	// Repository is GitHub's and GitLab's repository, Project GitLab's.
	Repository *webhookRepository `json:"repository"`
	Project    *webhookRepository `json:"project"`
}

type webhookRepository struct {
	CloneURL   string `json:"clone_url"`
	SSHURL     string `json:"ssh_url"`
	GitURL     string `json:"git_url"`
	HTMLURL    string `json:"html_url"`
	URL        string `json:"url"`
	GitHTTPURL string `json:"git_http_url"`
	GitSSHURL  string `json:"git_ssh_url"`
	WebURL     string `json:"web_url"`
	Homepage   string `json:"homepage"`
}

// urls returns the repository URLs the payload names.
func (p webhookPush) urls() []string {
	out := []string{p.RepositoryURL}
	for _, r := range []*webhookRepository{p.Repository, p.Project} {
		if r != nil {
			out = append(out, r.CloneURL, r.SSHURL, r.GitURL, r.HTMLURL, r.URL, r.GitHTTPURL, r.GitSSHURL, r.WebURL, r.Homepage)
		}
	}
	var keys []string
	for _, u := range out {
		if k := repositoryKey(u); k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Webhook outcomes, the label of caravan_central_webhooks_total.
const (
	webhookRefreshed    = "refreshed"
	webhookIgnored      = "ignored"
	webhookUnauthorized = "unauthorized"
	webhookInvalid      = "invalid"
	webhookDisabled     = "disabled"
)

func newWebhookMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caravan_central_webhooks_total",
		Help: "Git webhook requests by outcome: refreshed (a channel's head was read again), ignored (no channel follows the ref), unauthorized, invalid, disabled (no --webhook-secret-file).",
	}, []string{"outcome"})
	reg.MustRegister(c)
	for _, o := range []string{webhookRefreshed, webhookIgnored, webhookUnauthorized, webhookInvalid, webhookDisabled} {
		c.WithLabelValues(o)
	}
	return c
}

func (s *Server) receiveGitWebhook(w http.ResponseWriter, r *http.Request) {
	count := func(outcome string) { s.webhooks.WithLabelValues(outcome).Inc() }
	if len(s.webhookSecret) == 0 {
		count(webhookDisabled)
		writeProblem(w, r, problem(http.StatusNotFound, "Not found", "",
			"git webhooks are off: caravan-central was started without --webhook-secret-file"))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		count(webhookInvalid)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, r, problem(http.StatusRequestEntityTooLarge, "Request body too large", "", "a webhook's body may hold at most 1 MiB"))
			return
		}
		writeProblem(w, r, problem(http.StatusBadRequest, "Unreadable body", "", err.Error()))
		return
	}
	gitlab := r.Header.Get("X-Gitlab-Token") != ""
	if !s.webhookAuthentic(r, body, gitlab) {
		count(webhookUnauthorized)
		writeProblem(w, r, problem(http.StatusUnauthorized, "Bad webhook signature", "X-Hub-Signature-256",
			"the request needs X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the webhook secret>, or X-Gitlab-Token with the secret"))
		return
	}
	auth.MarkAuthenticated(r.Context())
	event := r.Header.Get("X-GitHub-Event")
	if gitlab {
		event = r.Header.Get("X-Gitlab-Event")
	}
	switch event {
	case "", "push", "Push Hook":
	case "ping":
		count(webhookIgnored)
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		s.webhookIgnored(w, "the event "+event+" is not a push")
		return
	}
	var push webhookPush
	if err := json.Unmarshal(body, &push); err != nil {
		count(webhookInvalid)
		writeProblem(w, r, problem(http.StatusBadRequest, "Invalid JSON body", "", "a push event is JSON with ref and after: "+err.Error()))
		return
	}
	branch, ok := strings.CutPrefix(push.Ref, "refs/heads/")
	if !ok || branch == "" {
		s.webhookIgnored(w, "the ref "+push.Ref+" is not a branch")
		return
	}
	chans, err := s.store.AllChannels(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	urls := push.urls()
	type branchRef struct{ repo, branch string }
	var refs []branchRef
	for _, ch := range chans {
		ref := branchRef{ch.RepositoryURL, ch.Branch}
		if ch.Branch != branch || ch.RepositoryURL == "" || slices.Contains(refs, ref) {
			continue
		}
		if len(urls) > 0 && !slices.Contains(urls, repositoryKey(ch.RepositoryURL)) {
			continue
		}
		refs = append(refs, ref)
	}
	if len(refs) == 0 {
		s.webhookIgnored(w, "no channel follows the branch "+branch+" of this repository")
		return
	}
	// The read outlives a sender that gives up: the push happened either way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, ref := range refs {
		wg.Go(func() { s.heads.Refresh(ctx, ref.repo, ref.branch) })
	}
	wg.Wait()
	loggerFrom(r.Context()).Info("git webhook: channel heads read again", "branch", branch, "after", push.After, "repositories", len(refs))
	count(webhookRefreshed)
	w.WriteHeader(http.StatusNoContent)
}

// webhookIgnored answers 202 to an authentic request that asks for nothing.
func (s *Server) webhookIgnored(w http.ResponseWriter, reason string) {
	s.webhooks.WithLabelValues(webhookIgnored).Inc()
	writeJSON(w, http.StatusAccepted, map[string]string{"ignored": reason})
}

// webhookAuthentic checks the GitLab token, or the HMAC signature of body.
func (s *Server) webhookAuthentic(r *http.Request, body []byte, gitlab bool) bool {
	if gitlab {
		return subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Gitlab-Token")), s.webhookSecret) == 1
	}
	sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, s.webhookSecret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// repositoryKey reduces a repository URL to host and path, so that the
// HTTPS, SSH and web URLs of one repository compare equal: no scheme, user
// or port, no trailing / or .git, lower case.
func repositoryKey(raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		return ""
	}
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	} else if at := strings.Index(s, "@"); at >= 0 {
		// scp-like: git@host:owner/repo.git
		s = strings.Replace(s[at+1:], ":", "/", 1)
	}
	host, path, _ := strings.Cut(s, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = host[at+1:]
	}
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	path = strings.TrimSuffix(strings.TrimSuffix(path, "/"), ".git")
	return strings.ToLower(host + "/" + path)
}
