// Package channels is the channel model and promotion: the channels'
// branch heads and histories (read from git through pkg/configrepo), where
// a commit stands on a channel's clusters (from the registry's status
// history), and the promotion gate. The computations over registry data are
// pure functions, shared by the registry's API and its web UI.
package channels
