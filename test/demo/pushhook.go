package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// newWebhookSecret makes the secret the registry checks the git server's
// push announcements against.
func newWebhookSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making the webhook secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// installPushHook makes the bare repository announce every pushed branch
// to the registry's git webhook, as a GitLab project's push webhook does
// (the X-Gitlab-Token header holds the secret). git runs post-receive
// before it answers the push, and the registry answers once it has read
// the branch's head: when `git push` returns, the registry knows the new
// head, its gate judges that commit, and the channel's agents are woken.
// A failed announcement is printed to the pusher ("remote: curl: ...");
// the registry's periodic read (--git-refresh) still finds the head.
func installPushHook(bareRepo, registryURL, secret string) error {
	script := fmt.Sprintf(`#!/bin/sh
# Written by the Caravan demo (test/demo): announces each pushed branch to caravan-central.
while read -r old new ref; do
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    -H 'X-Gitlab-Event: Push Hook' -H 'X-Gitlab-Token: %s' \
    --data "{\"ref\":\"$ref\",\"after\":\"$new\"}" '%s/api/v1/webhooks/git'
done
`, secret, registryURL)
	hook := filepath.Join(bareRepo, "hooks", "post-receive")
	if err := os.WriteFile(hook, []byte(script), 0o700); err != nil {
		return fmt.Errorf("installing the config repo's push hook: %w", err)
	}
	return nil
}
