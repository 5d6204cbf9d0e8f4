package preview

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"sigs.k8s.io/yaml"
)

func parse(t *testing.T, doc string) map[string]any {
	t.Helper()
	var out map[string]any
	if err := yaml.Unmarshal([]byte(doc), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestChangedFieldsNamesTheChangedValues(t *testing.T) {
	live := parse(t, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  resourceVersion: "41"
  generation: 3
  managedFields: [{manager: caravan}]
  labels: {app: web, app.kubernetes.io/version: "1"}
spec:
  replicas: 2
  template:
    spec:
      containers:
        - {name: web, image: web:1, args: [a, b]}
status: {replicas: 2}
`)
	dryRun := parse(t, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  resourceVersion: "42"
  generation: 4
  managedFields: [{manager: caravan}, {manager: other}]
  labels: {app: web, app.kubernetes.io/version: "2"}
  annotations: {note: new}
spec:
  replicas: 3
  template:
    spec:
      containers:
        - {name: web, image: web:2, args: [a, b, c]}
status: {replicas: 3}
`)
	assert.Equal(t, []string{
		`metadata.annotations`,
		`metadata.labels["app.kubernetes.io/version"]`,
		`spec.replicas`,
		`spec.template.spec.containers[0].args`,
		`spec.template.spec.containers[0].image`,
	}, ChangedFields(live, dryRun))
}

func TestChangedFieldsOfEqualObjectsIsEmpty(t *testing.T) {
	doc := "kind: ConfigMap\nmetadata: {name: a, uid: x}\ndata: {key: v, app.conf: x}\n"
	assert.Empty(t, ChangedFields(parse(t, doc), parse(t, doc)))
}

func TestChangedFieldsOfAddedAndRemovedKeys(t *testing.T) {
	live := parse(t, "kind: ConfigMap\ndata: {old: v, kept: v, app.conf: a}\n")
	dryRun := parse(t, "kind: ConfigMap\ndata: {new: v, kept: v, app.conf: b}\nbinaryData: {b: AA==}\n")
	assert.Equal(t, []string{"binaryData", `data["app.conf"]`, "data.new", "data.old"}, ChangedFields(live, dryRun))
}
