package gitserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// AnnouncePush posts the plain git webhook of a push to branch to a
// registry, signed with secret (the registry's --webhook-secret-file), as
// a git host does after a push: the registry reads the branch before it
// answers, so its agents learn the new head at once.
func AnnouncePush(ctx context.Context, registryURL, secret, branch string) error {
	body := `{"ref": "refs/heads/` + branch + `"}`
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(registryURL, "/")+"/api/v1/webhooks/git", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("announcing a push to %s: %w", branch, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		return fmt.Errorf("announcing a push to %s: the registry answered %s", branch, res.Status)
	}
	return nil
}
