// Package publication shows what the registry publishes to each channel's
// agents, as the API and the web UI answer it: what the store decided
// (store.Publications), and what git says of the published commit of a
// channel whose head is held.
package publication

import (
	"context"
	"fmt"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// searchDepth is how many commits of a held head's branch (first parents)
// are searched for the published commit.
const searchDepth = 100

// Of returns the publications of chans by channel name; a channel not
// decided on yet has none. It reads the channels' heads first (those read
// lately are cached): a new head is recorded as it is read, which decides
// its channels again.
func Of(ctx context.Context, st *store.Store, heads *channels.Heads, chans []api.Channel) (map[string]*api.ChannelPublication, error) {
	heads.Of(ctx, chans)
	all, err := st.Publications(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*api.ChannelPublication, len(chans))
	for _, ch := range chans {
		p, ok := all[ch.Name]
		if !ok {
			continue
		}
		if p.Held != nil && p.Commit != "" {
			p.Problem = offBranch(ctx, heads, ch, p.Commit)
		}
		out[ch.Name] = &p
	}
	return out, nil
}

// One returns the publication of one channel, as Of does; nil when it was
// not decided on yet.
func One(ctx context.Context, st *store.Store, heads *channels.Heads, ch api.Channel) (*api.ChannelPublication, error) {
	pubs, err := Of(ctx, st, heads, []api.Channel{ch})
	return pubs[ch.Name], err
}

// Commit is the commit a channel's clusters are given, the one rollouts
// and gates are about unless they name another: the published commit, or
// the head while none was decided on.
func Commit(pub *api.ChannelPublication, head api.ChannelHead) string {
	if pub != nil && pub.Commit != "" {
		return pub.Commit
	}
	return head.Commit
}

// offBranch says that the published commit is no longer on the channel's
// branch, as after a force-push that rewound it; empty when it is there, or
// when the branch cannot be read (its head's error says why).
func offBranch(ctx context.Context, heads *channels.Heads, ch api.Channel, published string) string {
	log, err := heads.Log(ctx, ch, searchDepth)
	if err != nil || len(log) == 0 {
		return ""
	}
	for _, c := range log {
		if c.Hash == published {
			return ""
		}
	}
	where := fmt.Sprintf("is no longer on branch %s (was it force-pushed?)", ch.Branch)
	if len(log) == searchDepth {
		where = fmt.Sprintf("is not among the newest %d commits of branch %s (first parents): was the branch force-pushed?", searchDepth, ch.Branch)
	}
	return fmt.Sprintf("the published commit %s %s; agents that fetch the branch do not find it and apply nothing new until a promotion of the head, or an override with a reason, publishes it",
		configrepo.Short(published), where)
}
