package apply

import (
	"testing"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The health wait computes status from trimmed objects: it must come to
// the same result as from the whole object, whatever the kind and state.
func TestTrimmedObjectsHaveTheSameStatus(t *testing.T) {
	seen := map[status.Status]bool{}
	for name, doc := range map[string]string{
		"deployment rolling out": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, generation: 2, annotations: {a: b}, managedFields: [{manager: caravan}]}
spec: {replicas: 3, progressDeadlineSeconds: 600, template: {spec: {containers: [{name: app, image: app}]}}}
status: {observedGeneration: 2, replicas: 3, updatedReplicas: 1, readyReplicas: 3, availableReplicas: 3,
  conditions: [{type: Progressing, status: "True", reason: ReplicaSetUpdated}, {type: Available, status: "True"}]}`,
		"deployment current": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, generation: 2}
spec: {replicas: 2, template: {spec: {containers: [{name: app, image: app}]}}}
status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2,
  conditions: [{type: Progressing, status: "True", reason: NewReplicaSetAvailable}, {type: Available, status: "True"}]}`,
		"statefulset with a partition": `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default, generation: 1}
spec: {replicas: 3, updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}, template: {spec: {containers: [{name: db, image: db}]}}}
status: {observedGeneration: 1, replicas: 3, readyReplicas: 3, currentReplicas: 2, updatedReplicas: 1, currentRevision: a, updateRevision: b}`,
		"job running": `apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default, generation: 1}
spec: {parallelism: 2, completions: 4, template: {spec: {containers: [{name: m, image: m}]}}}
status: {active: 2, succeeded: 1}`,
		"load balancer without an address": `apiVersion: v1
kind: Service
metadata: {name: edge, namespace: default}
spec: {type: LoadBalancer, clusterIP: 10.0.0.7, ports: [{port: 443}]}
status: {loadBalancer: {}}`,
		"custom resource not ready": `apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: default, generation: 3}
spec: {size: 4, template: {big: true}}
status: {observedGeneration: 3, conditions: [{type: Ready, status: "False", reason: Waiting, message: not yet}]}`,
		"crd established": `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com, generation: 1}
spec: {group: example.com, versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]}
status: {conditions: [{type: NamesAccepted, status: "True"}, {type: Established, status: "True"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := yaml.YAMLToJSON([]byte(doc))
			require.NoError(t, err)
			whole := &unstructured.Unstructured{}
			require.NoError(t, whole.UnmarshalJSON(raw))
			trimmed := whole.DeepCopy()
			trimForStatus(trimmed)
			want, err := status.Compute(whole)
			require.NoError(t, err)
			got, err := status.Compute(trimmed)
			require.NoError(t, err)
			seen[want.Status] = true
			assert.Equal(t, want.Status, got.Status)
			assert.Equal(t, want.Message, got.Message)
			assert.NotContains(t, trimmed.Object["spec"], "template")
			assert.Empty(t, trimmed.GetManagedFields())
		})
	}
	assert.True(t, seen[status.InProgressStatus] && seen[status.CurrentStatus], "the cases cover healthy and unhealthy objects: %v", seen)
}
