package nodes

import "time"

// ForceLog is what a Roller knows of the forced deletions behind the
// times recorded on Nodes and budgets. A force's time is recorded before
// its deletion is made (an agent killed between the two must not forget
// it), so the deletion comes later than the time recorded, by as long as
// the writes before it took. The drain SLA's intervals count from the
// deletion: from when it was made, for this Roller's own forces, and
// from the latest it could have been made, for those of an agent before.
type ForceLog struct {
	// Started is when this Roller started. A force recorded before it was
	// made by an earlier agent, whose deletion, if it was sent, reached
	// the API server before this Roller started or within forceSettle of
	// the time recorded.
	Started time.Time
	// Made is when each of this Roller's deletions was made at the
	// latest, by the time recorded for it (the annotation's value).
	Made map[string]time.Time
}

// forceSettle bounds the time from a force's record to its deletion on
// the API server: the force's own timeout, then the API server's for a
// request it received, which it may carry out after its client gave up.
const (
	forceTimeout     = time.Minute
	apiServerTimeout = time.Minute // kube-apiserver's --request-timeout default
	forceSettle      = forceTimeout + apiServerTimeout
)

// forceLogRetention is how long a deletion's instant is kept: beyond it an
// interval counts from the time recorded, up to forceTimeout early, which
// only a drain_force_evict_interval over a day would notice.
const forceLogRetention = 24 * time.Hour

// Instant is when the force recorded in annotations (LastForcedAnnotation)
// was made at the latest; zero when none is recorded.
func (l ForceLog) Instant(annotations map[string]string) time.Time {
	raw := annotations[LastForcedAnnotation]
	if made, ok := l.Made[raw]; ok {
		return made
	}
	recorded, err := time.Parse(time.RFC3339, raw)
	if err != nil || !recorded.Before(l.Started) {
		return recorded
	}
	return laterTime(recorded, earlierTime(l.Started, recorded.Add(forceSettle)))
}

func (l ForceLog) clone() ForceLog {
	out := ForceLog{Started: l.Started, Made: make(map[string]time.Time, len(l.Made))}
	for k, v := range l.Made {
		out.Made[k] = v
	}
	return out
}

// made notes a deletion recorded at recorded and made by at, and forgets
// the deletions older than forceLogRetention.
func (l *ForceLog) made(recorded string, at time.Time) {
	if l.Made == nil {
		l.Made = map[string]time.Time{}
	}
	l.Made[recorded] = at
	for k, v := range l.Made {
		if at.Sub(v) > forceLogRetention {
			delete(l.Made, k)
		}
	}
}

func earlierTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
