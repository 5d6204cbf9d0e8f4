package nodes

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSameSiblingsTellsAChangeSinceTheDecision(t *testing.T) {
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	a := Sibling{Name: "a", Ready: true, ReadySince: at, Created: at.Add(-time.Minute)}
	b := Sibling{Name: "b", Ready: true, ReadySince: at, Created: at.Add(-time.Minute)}
	self := Sibling{Name: "self", Ready: true, ReadySince: at, Created: at}
	younger := b
	younger.ReadySince = at.Add(time.Second)
	going := b
	going.Terminating = true
	for name, c := range map[string]struct {
		now  []Sibling
		same bool
	}{
		"the same, the pod itself left aside":    {[]Sibling{a, self, b}, true},
		"the same, read twice (two budgets)":     {[]Sibling{a, b, a, b}, true},
		"a sibling joined":                       {[]Sibling{a, b, {Name: "c"}}, false},
		"a sibling left":                         {[]Sibling{a}, false},
		"a sibling became ready again since":     {[]Sibling{a, younger}, false},
		"a sibling is terminating now":           {[]Sibling{a, going}, false},
		"a sibling replaced by one of its names": {[]Sibling{a, {Name: "b", Created: at}}, false},
	} {
		assert.Equal(t, c.same, sameSiblings([]Sibling{a, b}, c.now, "self"), name)
	}
}
