package render

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInputDigestChangesWithWhatRenderReadsAndNothingElse(t *testing.T) {
	repo := func(change func(fstest.MapFS)) fstest.MapFS {
		r := fstest.MapFS{
			"README.md":                           {Data: []byte("docs")},
			"cloudformation/cluster.yaml":         {Data: []byte("Resources: {}")},
			DefaultsFile:                          {Data: []byte("defaults: {a: b}")},
			DeletionsFile:                         {Data: []byte("pre_apply: []")},
			"kubernetes/base/kustomization.yaml":  {Data: []byte("resources: []")},
			"kubernetes/overlays/test/patch.yaml": {Data: []byte("x: 1")},
		}
		if change != nil {
			change(r)
		}
		return r
	}
	a := assignment("test", map[string]string{"replicas": "2"})
	digest := func(r fstest.MapFS, renderer string) string {
		d, err := InputDigest(r, a, renderer)
		require.NoError(t, err)
		return d
	}
	base := digest(repo(nil), "v1")
	assert.Equal(t, base, digest(repo(nil), "v1"), "the digest is stable")
	assert.Equal(t, base, digest(repo(func(r fstest.MapFS) { r["README.md"] = &fstest.MapFile{Data: []byte("more docs")} }), "v1"))
	assert.Equal(t, base, digest(repo(func(r fstest.MapFS) { r["docs/new.md"] = &fstest.MapFile{Data: []byte("x")} }), "v1"))

	for name, change := range map[string]func(fstest.MapFS){
		"an overlay file": func(r fstest.MapFS) { r["kubernetes/overlays/test/patch.yaml"] = &fstest.MapFile{Data: []byte("x: 2")} },
		"a new base file": func(r fstest.MapFS) { r["kubernetes/base/new.yaml"] = &fstest.MapFile{} },
		"a file moved": func(r fstest.MapFS) {
			r["kubernetes/base/moved.yaml"] = r["kubernetes/overlays/test/patch.yaml"]
			delete(r, "kubernetes/overlays/test/patch.yaml")
		},
		"a stack template": func(r fstest.MapFS) {
			r["cloudformation/cluster.yaml"] = &fstest.MapFile{Data: []byte("Resources: {A: {}}")}
		},
		"the defaults":          func(r fstest.MapFS) { r[DefaultsFile] = &fstest.MapFile{Data: []byte("defaults: {a: c}")} },
		"the deletions":         func(r fstest.MapFS) { delete(r, DeletionsFile) },
		"content across a path": func(r fstest.MapFS) { r[DeletionsFile] = &fstest.MapFile{Data: []byte("pre_apply: [")} },
	} {
		assert.NotEqual(t, base, digest(repo(change), "v1"), name)
	}
	assert.NotEqual(t, base, digest(repo(nil), "v2"), "another renderer may render differently")
	a.ConfigItems = map[string]string{"replicas": "3"}
	assert.NotEqual(t, base, digest(repo(nil), "v1"), "a config item is an input")
	a = assignment("production", map[string]string{"replicas": "2"})
	assert.NotEqual(t, base, digest(repo(nil), "v1"), "the cluster's fields are inputs")
}

func TestResultDigestFollowsTheObjectsAndDeletions(t *testing.T) {
	repo := func(comment, data, deletions string) fstest.MapFS {
		return fstest.MapFS{
			"kubernetes/overlays/test/kustomization.yaml": {Data: []byte("resources:\n  - settings.yaml\n")},
			"kubernetes/overlays/test/settings.yaml":      {Data: []byte(comment + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\ndata: {zone: " + data + "}\n")},
			DeletionsFile:                                 {Data: []byte(deletions)},
		}
	}
	digest := func(r fstest.MapFS) string {
		res, err := Render(r, assignment("test", nil))
		require.NoError(t, err)
		d, err := res.Digest()
		require.NoError(t, err)
		return d
	}
	base := digest(repo("", "a", ""))
	assert.Equal(t, base, digest(repo("# a comment kustomize drops\n", "a", "")), "a change that renders the same objects")
	assert.NotEqual(t, base, digest(repo("", "b", "")), "a changed object")
	assert.NotEqual(t, base, digest(repo("", "a", "pre_apply: [{kind: ConfigMap, name: old, namespace: default}]\n")), "a deletion")
}
