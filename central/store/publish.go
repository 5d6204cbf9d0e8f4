package store

import (
	"fmt"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// publication is what the registry publishes on one channel, as stored:
// every field comparable, so that an unchanged one is not written again.
type publication struct {
	// Gate is the gate in effect: advisory on the first channel.
	Gate string
	// Commit is the commit in the assignments of the channel's clusters.
	Commit      string
	PublishedAt string
	// HeldCommit is the branch head that did not pass the gate, HeldReason
	// why, HeldSince when it was first held; all empty while none is.
	HeldCommit string
	HeldReason string
	HeldSince  string
	// Promoted is the commit of the last promotion that passed the gate.
	Promoted string
	// Promotion is the last promotion recorded into the channel, whatever
	// its verdict, as JSON; empty when none was.
	Promotion string
}

// publishInput is what a channel's publication is decided on, besides
// what it was before.
type publishInput struct {
	Channel api.Channel
	// Previous is the name of the channel before on the promotion path;
	// empty for the first channel.
	Previous string
	// Head is the branch head as the registry last read it; empty while
	// it was never read.
	Head string
	// LastPromotion is the last promotion recorded into the channel.
	LastPromotion *api.Promotion
	// Now is formatted as the stored times are.
	Now string
}

// decidePublication decides what a channel publishes, from what it
// published before. An advisory channel (the first is one, whatever its
// setting) publishes its branch head. An enforced channel publishes its
// head when the head is what it publishes already, or the commit of a
// promotion that passed the gate, or when the channel has never published
// anything (the branch as the registry first finds it is where the channel
// starts); any other head is held, with the reason, and the channel keeps
// publishing what it did. A head never read changes nothing.
func decidePublication(in publishInput, cur publication) publication {
	next := cur
	next.Gate = in.Channel.GateSetting()
	if in.Previous == "" {
		next.Gate = api.GateAdvisory
	}
	head := in.Head
	switch {
	case head == "":
	case next.Gate == api.GateAdvisory, cur.Commit == "", head == cur.Commit, head == cur.Promoted:
		if head != cur.Commit {
			next.Commit, next.PublishedAt = head, in.Now
		}
		next.HeldCommit, next.HeldReason, next.HeldSince = "", "", ""
	default:
		if head != cur.HeldCommit {
			next.HeldSince = in.Now
		}
		next.HeldCommit, next.HeldReason = head, heldReason(in, cur.Commit)
	}
	return next
}

// heldReason says why the head is held and how to let it through.
func heldReason(in publishInput, published string) string {
	ch, head, p := in.Channel.Name, in.Head, in.LastPromotion
	override := fmt.Sprintf("caravan promote %s %s --commit %s --override-gate --reason \"...\" lets it through", in.Previous, ch, head)
	keep := fmt.Sprintf("its agents keep %s", configrepo.Short(published))
	if p == nil || p.Commit != head {
		return fmt.Sprintf("%s arrived on branch %s without a promotion from %s (a push to the branch): %s until a promotion records it; %s",
			configrepo.Short(head), in.Channel.Branch, in.Previous, keep, override)
	}
	return fmt.Sprintf("the promotion of %s from %s recorded by %s at %s did not meet the gate (%s) and gave no override reason: %s; %s",
		configrepo.Short(head), p.From, p.By, p.At.UTC().Format("2006-01-02T15:04:05Z"), firstReasons(p.GateReasons), keep, override)
}

// shownReasons is how many of a gate's reasons a held head's reason
// repeats: a fleet's worth of silent clusters would drown it.
const shownReasons = 3

func firstReasons(reasons []string) string {
	if len(reasons) <= shownReasons {
		return strings.Join(reasons, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(reasons[:shownReasons], "; "), len(reasons)-shownReasons)
}
