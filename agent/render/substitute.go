package render

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/fluxcd/pkg/envsubst"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// substitute replaces ${VAR} and ${VAR:=default} in the scalars of each
// rendered object, after kustomize has parsed them: a value replaces part or
// all of one scalar and can never add a key, an object or a document, which
// substituting into YAML text could. An unknown variable without a default
// is an error naming where it is used.
func substitute(repo fs.FS, resources []*resource.Resource, vars map[string]string) ([]*unstructured.Unstructured, error) {
	objects := make([]*unstructured.Unstructured, 0, len(resources))
	for _, res := range resources {
		s := scalarSubstitution{vars: vars}
		if err := s.walk(res.YNode()); err != nil {
			return nil, substitutionError(repo, res.GetKind(), res.GetNamespace(), res.GetName(), s.variable, err)
		}
		m, err := res.Map()
		if err != nil {
			return nil, &Error{Reason: fmt.Sprintf("%s %s: %v", res.GetKind(), res.GetName(), err)}
		}
		object, err := jsonValue(m)
		if err != nil {
			return nil, &Error{Reason: fmt.Sprintf("%s %s: %v", res.GetKind(), res.GetName(), err)}
		}
		objects = append(objects, &unstructured.Unstructured{Object: object.(map[string]any)})
	}
	return objects, nil
}

// scalarSubstitution substitutes the variables of one object and remembers
// the variable that failed, so that the error can name where it is written.
type scalarSubstitution struct {
	vars     map[string]string
	variable string
}

func (s *scalarSubstitution) walk(n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := s.walk(c); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := s.scalar(n.Content[i], true); err != nil {
				return err
			}
			if err := s.walk(n.Content[i+1]); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		return s.scalar(n, false)
	}
	return nil
}

// errNotOneScalar is a value that, written where YAML reads it unquoted,
// would be more than one plain scalar.
var errNotOneScalar = errors.New("is not a single YAML scalar (it would be a map, a list, several lines, a comment, an anchor or a tag); quote the ${...} in the manifest to use it as a string")

// scalar substitutes the variables of one scalar. A quoted, block or key
// scalar stays a string whatever the values are. A plain scalar is typed
// as YAML types its text (replicas: ${n} stays an integer), so each value
// put into one must itself read as one plain scalar: a value that would
// have been structure in the YAML text is refused, not quietly quoted.
func (s *scalarSubstitution) scalar(n *yaml.Node, key bool) error {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") {
		return nil
	}
	var missing, notScalar string
	out, err := envsubst.Eval(n.Value, func(name string) (string, bool) {
		v, ok := s.vars[name]
		switch {
		case !ok && missing == "":
			missing = name
		case ok && notScalar == "" && !plainScalar(v):
			notScalar = name
		}
		return v, ok
	})
	if missing != "" && (err != nil || strings.Contains(out, "${"+missing)) {
		s.variable = missing
		return fmt.Errorf("variable %s is not set and has no default", missing)
	}
	if err != nil {
		return err
	}
	if out == n.Value {
		return nil
	}
	n.Value = out
	switch {
	case key || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		n.Tag = yaml.NodeTagString
	case notScalar != "":
		s.variable = notScalar
		return fmt.Errorf("the value of %s %w", notScalar, errNotOneScalar)
	case n.Style&yaml.TaggedStyle == 0:
		n.Tag = plainTag(out)
	}
	return nil
}

// plainScalar reports whether text, written unquoted as a YAML value, is
// read back as exactly that text in one scalar.
func plainScalar(text string) bool {
	if text == "" {
		return true
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil || len(doc.Content) != 1 {
		return false
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.Style == 0 && n.Anchor == "" &&
		n.HeadComment == "" && n.LineComment == "" && n.FootComment == "" && doc.FootComment == "" &&
		n.Value == text
}

// plainTag is the tag YAML gives text written unquoted, or !!str where it
// would not be read back as one scalar.
func plainTag(text string) string {
	if text == "" {
		return yaml.NodeTagNull
	}
	var doc yaml.Node
	if !plainScalar(text) || yaml.Unmarshal([]byte(text), &doc) != nil {
		return yaml.NodeTagString
	}
	return doc.Content[0].ShortTag()
}

// jsonValue converts what the YAML decoder gives into the types of
// encoding/json, which unstructured objects hold: int64 and float64 numbers
// and string keys.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("%v: %w", k, err)
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []any:
		for i, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			v[i] = c
		}
		return v, nil
	case int:
		return int64(v), nil
	case uint64:
		if v > 1<<63-1 {
			return nil, fmt.Errorf("integer %d does not fit in int64", v)
		}
		return int64(v), nil
	case nil, bool, string, int64, float64:
		return v, nil
	}
	return nil, fmt.Errorf("value %v of type %T has no JSON form", v, v)
}
