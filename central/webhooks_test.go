package central_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

const webhookSecret = "a-webhook-secret-of-some-length"

func withWebhookSecret(c *central.Config) { c.WebhookSecret = webhookSecret }

func sign(body []byte) string {
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// githubPush is a GitHub push event's body, cut to what matters here.
func githubPush(t *testing.T, repoURL, ref, after string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"ref": ref, "before": "0000000000000000000000000000000000000000", "after": after, "created": false, "deleted": false,
		"repository": map[string]any{"full_name": "fleet/config", "clone_url": repoURL, "html_url": "https://github.example.org/fleet/config"},
		"pusher":     map[string]any{"name": "someone"},
	})
	require.NoError(t, err)
	return b
}

// webhook sends a webhook without a token.
func webhook(t *testing.T, srv *centraltest.Server, body []byte, headers ...string) response {
	t.Helper()
	return newClient(t, srv, "").do("POST", "/api/v1/webhooks/git", string(body), headers...)
}

func (f *channelFleet) credentials() gitauth.Credentials {
	return gitauth.Credentials{Username: f.git.User, Password: f.git.Password}
}

func assignedCommit(t *testing.T, r response) string {
	t.Helper()
	var a struct {
		Channel struct {
			Name   string `json:"name"`
			Commit string `json:"commit"`
		} `json:"channel"`
	}
	r.json(t, &a)
	return a.Channel.Commit
}

func channelHead(t *testing.T, f *channelFleet, name string) string {
	t.Helper()
	var ch api.Channel
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/"+name, nil).json(t, &ch)
	require.NotNil(t, ch.Head)
	return ch.Head.Commit
}

func TestGitHubPushWebhookWakesOnlyThatChannelsPolls(t *testing.T) {
	f := startChannelFleet(t, withWebhookSecret)
	require.Equal(t, f.dns, channelHead(t, f, "dev"))
	agentA := newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterA))
	agentC := newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterC))
	first := agentA.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil)
	assert.Equal(t, f.dns, assignedCommit(t, first), "the assignment carries the head the registry read")
	etagA, etagC := first.Header.Get("ETag"), assignmentETag(t, agentC, clusterC)

	waitingA := poll(agentA, clusterA, etagA, "60s")
	waitingC := poll(agentC, clusterC, etagC, "3s")
	time.Sleep(300 * time.Millisecond)
	pushed := f.commit("dev", "five DNS replicas")
	body := githubPush(t, f.url, "refs/heads/dev", pushed)
	sent := time.Now()
	// GitHub redelivers; a second announcement of the push within the
	// refresh gap is answered by the next read of the branch.
	webhook(t, f.srv, body, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(body))
	r := webhook(t, f.srv, body, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(body))
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	assert.Equal(t, pushed, channelHead(t, f, "dev"), "the channel shows the new head at once")

	select {
	case got := <-waitingA:
		require.Equal(t, http.StatusOK, got.res.Status, "%s", got.res.Body)
		assert.Equal(t, pushed, assignedCommit(t, got.res))
		assert.Less(t, time.Since(sent), 5*time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll of a cluster of dev did not answer the webhook's push")
	}
	got := <-waitingC
	assert.Equal(t, http.StatusNotModified, got.res.Status, "a poll of a cluster on alpha is not woken by a push to dev")
	assert.GreaterOrEqual(t, got.elapsed, 3*time.Second-50*time.Millisecond)
	assert.Equal(t, f.first, assignedCommit(t, agentC.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterC+"/assignment", nil)))

	metrics := newClient(t, f.srv, "").must(http.StatusOK, "GET", "/metrics", nil)
	assert.Contains(t, string(metrics.Body), `caravan_central_webhooks_total{outcome="refreshed"} 2`)
}

func TestWebhookRefusesBadSignaturesAndIgnoresUnfollowedRefs(t *testing.T) {
	f := startChannelFleet(t, withWebhookSecret)
	require.Equal(t, f.dns, channelHead(t, f, "dev"))
	pushed := f.commit("dev", "unannounced")
	body := githubPush(t, f.url, "refs/heads/dev", pushed)

	for name, headers := range map[string][]string{
		"no signature":        {"X-GitHub-Event", "push"},
		"wrong signature":     {"X-GitHub-Event", "push", "X-Hub-Signature-256", sign([]byte("another body"))},
		"not hex":             {"X-GitHub-Event", "push", "X-Hub-Signature-256", "sha256=zz"},
		"no sha256= prefix":   {"X-GitHub-Event", "push", "X-Hub-Signature-256", sign(body)[len("sha256="):]},
		"wrong gitlab token":  {"X-Gitlab-Event", "Push Hook", "X-Gitlab-Token", "not-the-secret"},
		"gitlab token prefix": {"X-Gitlab-Event", "Push Hook", "X-Gitlab-Token", webhookSecret[:10]},
	} {
		r := webhook(t, f.srv, body, headers...)
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s: %s", name, r.Body)
		assert.EqualValues(t, 401, r.problem(t)["status"], name)
	}

	for name, push := range map[string][]byte{
		"unfollowed branch":  githubPush(t, f.url, "refs/heads/nightly", pushed),
		"tag":                githubPush(t, f.url, "refs/tags/dev", pushed),
		"another repository": githubPush(t, "https://git.example.org/other.git", "refs/heads/dev", pushed),
	} {
		r := webhook(t, f.srv, push, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(push))
		require.Equal(t, http.StatusAccepted, r.Status, "%s: %s", name, r.Body)
		assert.Contains(t, string(r.Body), `"ignored"`)
	}
	r := webhook(t, f.srv, body, "X-GitHub-Event", "issues", "X-Hub-Signature-256", sign(body))
	assert.Equal(t, http.StatusAccepted, r.Status, "another event: %s", r.Body)
	r = webhook(t, f.srv, []byte(`{"zen":"hi"}`), "X-GitHub-Event", "ping", "X-Hub-Signature-256", sign([]byte(`{"zen":"hi"}`)))
	assert.Equal(t, http.StatusNoContent, r.Status, "ping: %s", r.Body)
	assert.Equal(t, f.dns, channelHead(t, f, "dev"), "nothing was read again")

	// The git URL with credentials and without .git is the same repository.
	ssh := githubPush(t, "ssh://git@"+f.url[len("http://"):len(f.url)-len(".git")], "refs/heads/dev", pushed)
	r = webhook(t, f.srv, ssh, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(ssh))
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	assert.Equal(t, pushed, channelHead(t, f, "dev"))

	big := make([]byte, 2<<20)
	r = webhook(t, f.srv, big, "X-Hub-Signature-256", sign(big))
	assert.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
}

func TestGitLabAndPlainWebhooks(t *testing.T) {
	f := startChannelFleet(t, withWebhookSecret)
	require.Equal(t, f.dns, channelHead(t, f, "dev"))

	pushed := f.commit("dev", "from gitlab")
	gitlab, err := json.Marshal(map[string]any{
		"object_kind": "push", "ref": "refs/heads/dev", "after": pushed,
		"project": map[string]any{"git_http_url": f.url, "web_url": "https://gitlab.example.org/fleet/config"},
	})
	require.NoError(t, err)
	r := webhook(t, f.srv, gitlab, "X-Gitlab-Event", "Push Hook", "X-Gitlab-Token", webhookSecret)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	assert.Equal(t, pushed, channelHead(t, f, "dev"))

	// The plain form; its after is a hint only: a forged one is not taken.
	pushed = f.commit("alpha", "plain")
	plain := []byte(`{"ref": "refs/heads/alpha", "after": "` + f.first + `"}`)
	r = webhook(t, f.srv, plain, "X-Hub-Signature-256", sign(plain))
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	assert.Equal(t, pushed, channelHead(t, f, "alpha"), "the head is read from git, not taken from after")
	agentC := newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterC))
	assert.Equal(t, pushed, assignedCommit(t, agentC.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterC+"/assignment", nil)))
}

func TestWebhooksAreOffWithoutASecret(t *testing.T) {
	srv := centraltest.Start(t)
	body := []byte(`{"ref":"refs/heads/dev","after":"x"}`)
	r := webhook(t, srv, body, "X-Hub-Signature-256", sign(body))
	require.Equal(t, http.StatusNotFound, r.Status)
	assert.Contains(t, r.problem(t)["detail"], "--webhook-secret-file")
}

func TestWebhookWakesPollsOnTheOtherReplica(t *testing.T) {
	db := pg.NewDatabase(t)
	f := startChannelFleet(t, withWebhookSecret, centraltest.WithDatabase(db))
	require.Equal(t, f.dns, channelHead(t, f, "dev"))
	other := centraltest.Start(t, centraltest.WithDatabase(db), withWebhookSecret, func(c *central.Config) {
		c.Git, c.GitRefresh = f.credentials(), time.Hour
	})
	agentA := newClient(t, other, other.Token(t, api.RoleAgent, clusterA))
	agentC := newClient(t, other, other.Token(t, api.RoleAgent, clusterC))
	first := agentA.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil)
	require.Equal(t, f.dns, assignedCommit(t, first), "both replicas hand out the head recorded in the database")
	waitingA := poll(agentA, clusterA, first.Header.Get("ETag"), "60s")
	waitingC := poll(agentC, clusterC, assignmentETag(t, agentC, clusterC), "3s")
	time.Sleep(300 * time.Millisecond)

	pushed := f.commit("dev", "across replicas")
	body := githubPush(t, f.url, "refs/heads/dev", pushed)
	r := webhook(t, f.srv, body, "X-GitHub-Event", "push", "X-Hub-Signature-256", sign(body))
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	select {
	case got := <-waitingA:
		require.Equal(t, http.StatusOK, got.res.Status, "%s", got.res.Body)
		assert.Equal(t, pushed, assignedCommit(t, got.res))
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook on one replica did not wake the long-poll waiting on the other")
	}
	got := <-waitingC
	assert.Equal(t, http.StatusNotModified, got.res.Status, "the other channel's poll on the other replica keeps waiting")
}
