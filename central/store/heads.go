package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// SetChannelHead records commit as the head of the repository's branch,
// read from git. When it differs from the head recorded before, the
// clusters of the channels following that branch are announced changed,
// here and (PostgreSQL) on every replica, so that their waiting long-polls
// answer with the new head; clusters of other channels are not woken. It
// reports whether the head changed.
func (s *Store) SetChannelHead(ctx context.Context, repositoryURL, branch, commit string) (bool, error) {
	if repositoryURL == "" || branch == "" || commit == "" {
		return false, nil
	}
	chans, err := s.AllChannels(ctx)
	if err != nil {
		return false, err
	}
	var following []any
	for _, ch := range chans {
		if ch.RepositoryURL == repositoryURL && ch.Branch == branch {
			following = append(following, ch.Name)
		}
	}
	changed := false
	err = s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		var old string
		err := tx.QueryRowContext(ctx, s.rebind(`SELECT commit_id FROM channel_heads WHERE repository_url = ? AND branch = ?`), repositoryURL, branch).Scan(&old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("reading the recorded head of %s %s: %w", repositoryURL, branch, err)
		case old == commit:
			return nil
		}
		changed = true
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO channel_heads (repository_url, branch, commit_id, read_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (repository_url, branch) DO UPDATE SET commit_id = excluded.commit_id, read_at = excluded.read_at`),
			repositoryURL, branch, commit, formatTime(s.now())); err != nil {
			return fmt.Errorf("recording the head of %s %s: %w", repositoryURL, branch, err)
		}
		if len(following) == 0 {
			return nil
		}
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(following)), ", ")
		rows, err := tx.QueryContext(ctx, s.rebind(`SELECT key FROM clusters WHERE channel IN (`+marks+`)`), following...)
		if err != nil {
			return fmt.Errorf("reading the clusters of the channels of %s %s: %w", repositoryURL, branch, err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("reading the clusters of the channels of %s %s: %w", repositoryURL, branch, err)
			}
			n.clusters = append(n.clusters, id)
		}
		return rows.Err()
	})
	return changed, err
}

// channelHead returns the recorded head commit of the repository's branch,
// "" when none was read yet.
func (s *Store) channelHead(ctx context.Context, repositoryURL, branch string) (string, error) {
	var commit string
	err := s.read.QueryRowContext(ctx, s.rebind(`SELECT commit_id FROM channel_heads WHERE repository_url = ? AND branch = ?`), repositoryURL, branch).Scan(&commit)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the recorded head of %s %s: %w", repositoryURL, branch, err)
	}
	return commit, nil
}
