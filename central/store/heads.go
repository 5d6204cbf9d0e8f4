package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// SetChannelHead records commit as the head of the repository's branch,
// read from git, and decides again what the channels following that branch
// publish. The clusters of a channel whose published commit changed are
// announced changed, here and (PostgreSQL) on every replica, so that their
// waiting long-polls answer with the new commit; clusters of other channels,
// and of a channel whose gate holds the new head, are not woken. It reports
// whether the head changed.
func (s *Store) SetChannelHead(ctx context.Context, repositoryURL, branch, commit string) (bool, error) {
	if repositoryURL == "" || branch == "" || commit == "" {
		return false, nil
	}
	changed := false
	err := s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		if err := s.lockPublications(ctx, tx); err != nil {
			return err
		}
		old, err := s.headIn(ctx, tx, repositoryURL, branch)
		if err != nil {
			return err
		}
		if old != commit {
			changed = true
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO channel_heads (repository_url, branch, commit_id, read_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (repository_url, branch) DO UPDATE SET commit_id = excluded.commit_id, read_at = excluded.read_at`),
				repositoryURL, branch, commit, formatTime(s.now())); err != nil {
				return fmt.Errorf("recording the head of %s %s: %w", repositoryURL, branch, err)
			}
		}
		// Decided again even for a head recorded before: the first read
		// after a start comes here, and finds what a crash left undecided.
		return s.republish(ctx, tx, n, func(ch api.Channel) bool {
			return ch.RepositoryURL == repositoryURL && ch.Branch == branch
		}, nil)
	})
	return changed, err
}

// headIn returns the recorded head commit of the repository's branch, ""
// when none was read yet.
func (s *Store) headIn(ctx context.Context, q querier, repositoryURL, branch string) (string, error) {
	var commit string
	err := q.QueryRowContext(ctx, s.rebind(`SELECT commit_id FROM channel_heads WHERE repository_url = ? AND branch = ?`), repositoryURL, branch).Scan(&commit)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the recorded head of %s %s: %w", repositoryURL, branch, err)
	}
	return commit, nil
}
