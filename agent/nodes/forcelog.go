package nodes

import (
	"maps"
	"time"
)

// ForceLog is what a Roller knows of the forced deletions behind the
// times recorded on Nodes and budgets. A force's time is recorded before
// its deletion is made (an agent killed between the two must not forget
// it), so the deletion comes later than the time recorded, by as long as
// the writes before it took. The drain SLA's intervals count from the
// deletion for this Roller's own forces, and from the time recorded for
// those of an agent before it, which it cannot tell: a force whose agent
// was killed while deleting may be followed that much early.
type ForceLog struct {
	// Made is when each of this Roller's deletions was made at the
	// latest, by the time recorded for it (the annotation's value).
	Made map[string]time.Time
}

// forceTimeout bounds a force's writes and deletion; apiServerTimeout is
// how long the API server may still carry out a request whose client gave
// up (kube-apiserver's --request-timeout default).
const (
	forceTimeout     = time.Minute
	apiServerTimeout = time.Minute
)

// forceLogRetention is how long a deletion's instant is kept: beyond it an
// interval counts from the time recorded, early by the force's writes,
// which only a drain_force_evict_interval over a day would notice.
const forceLogRetention = 24 * time.Hour

// Instant is when the force recorded in annotations (LastForcedAnnotation)
// was made, as far as this Roller knows; zero when none is recorded.
func (l ForceLog) Instant(annotations map[string]string) time.Time {
	raw := annotations[LastForcedAnnotation]
	if made, ok := l.Made[raw]; ok {
		return made
	}
	recorded, _ := time.Parse(time.RFC3339, raw)
	return recorded
}

func (l ForceLog) clone() ForceLog {
	return ForceLog{Made: maps.Clone(l.Made)}
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
