package preview

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

func TestReplacedNodesAreTheOutdatedOnes(t *testing.T) {
	spec := nodes.PoolSpec{Name: "workers", Revision: "r2", InstanceTypes: []string{"m6i.large"}}
	instances := serving([]nodes.Instance{
		{ID: "i-1", Type: "m6i.large", Revision: "r1", Lifecycle: "InService"},
		{ID: "i-2", Type: "m6i.large", Revision: "r2", Lifecycle: "InService"},
		{ID: "i-3", Type: "m5.large", Revision: "r2", Lifecycle: "InService"},
		{ID: "i-4", Type: "m6i.large", Revision: "r1", Lifecycle: "Pending"},
		{ID: "i-5", Type: "m6i.large", Revision: "r1", Lifecycle: "Terminating"},
	})
	assert.Len(t, instances, 4, "an instance the group terminates is no node to replace")
	names := map[string]string{"i-1": "node-b", "i-2": "node-c", "i-3": "node-a"}
	assert.Equal(t, []string{"i-4", "node-a", "node-b"}, replaced(spec, instances, names),
		"another revision or instance type; an instance without a node yet by its id")
	assert.Equal(t, []string{}, replaced(nodes.PoolSpec{Name: "workers", Revision: "r1"}, instances[:1], names))
}
