package reconciler

import (
	"fmt"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// clockSkew is how far the agent's clock is from the registry's, as the
// registry's last answer showed. Windows and freezes are evaluated with the
// agent's clock, so a clock that is off opens them at the wrong time.
type clockSkew struct {
	skew  time.Duration
	since time.Time
}

// observe takes the registry's time from an answer and the agent's time
// when it arrived; an answer without the registry's time changes nothing.
func (c *clockSkew) observe(registry, local time.Time) {
	if registry.IsZero() {
		return
	}
	c.skew = local.Sub(registry)
	switch {
	case !c.off():
		c.since = time.Time{}
	case c.since.IsZero():
		c.since = local
	}
}

func (c *clockSkew) off() bool {
	return c.skew > api.MaxClockSkew || c.skew < -api.MaxClockSkew
}

// problems is the skew as a problem, while it is over api.MaxClockSkew.
func (c *clockSkew) problems() []api.StatusProblem {
	if !c.off() {
		return nil
	}
	return []api.StatusProblem{{
		Type:  api.ProblemTypeBase + "clock-skew",
		Title: "The agent's clock differs from the registry's by more than " + api.MaxClockSkew.String(),
		Detail: fmt.Sprintf("the agent's clock is %s %s the registry's; update windows and freezes are evaluated with the agent's clock: fix the node's time sync (NTP)",
			c.skew.Abs().Round(time.Second), aheadOrBehind(c.skew)),
		Since: c.since,
	}}
}

func aheadOrBehind(d time.Duration) string {
	if d > 0 {
		return "ahead of"
	}
	return "behind"
}
