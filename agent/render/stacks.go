package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Paths of the CloudFormation templates, documented in docs/config-repo.md.
const (
	CloudFormationDir = "cloudformation"
	ClusterTemplate   = "cloudformation/cluster.yaml"
	NodePoolTemplate  = "cloudformation/node-pool.yaml"
)

// launchTemplateType is the resource whose data shapes a node, and so the
// node pool revision.
const launchTemplateType = "AWS::EC2::LaunchTemplate"

// Stack is one rendered CloudFormation stack.
type Stack struct {
	Name     string // "<local id>" or "nodepool-<pool>-<local id>"
	NodePool string // "" for the cluster stack
	Body     []byte // the rendered template
	Revision string // pool stacks: the node pool revision put on every instance
	Digest   string // sha256 hex of Body (the agent stores it in a stack tag for no-op detection)
}

// clusterData is .Cluster in both templates.
type clusterData struct {
	ID, LocalID, Alias     string
	AccountID              string // the 12 digits of InfrastructureAccount
	InfrastructureAccount  string
	Region, Environment    string
	APIServerURL, Provider string
	CriticalityLevel       int
	Channel                string
	ConfigItems            map[string]string
}

// nodePoolData is .NodePool in the node pool template.
type nodePoolData struct {
	Name, Profile    string
	InstanceTypes    []string
	MinSize, MaxSize int
	DiscountStrategy string
	Spot             bool
	ConfigItems      map[string]string
	Labels           map[string]string
	Taints           []api.Taint
	Revision         string
}

// templateData is the root of both templates. NodePool is nil and Outputs
// empty in the cluster template, so that using them there is an error.
type templateData struct {
	Cluster  clusterData
	NodePool *nodePoolData
	Outputs  map[string]string
}

// ClusterStack renders cloudformation/cluster.yaml. A repo without it
// manages no infrastructure: the stack is nil.
func ClusterStack(repo fs.FS, a api.Assignment, items map[string]string) (*Stack, error) {
	t, err := readTemplate(repo, ClusterTemplate)
	if t == nil || err != nil {
		return nil, err
	}
	body, _, err := executeTemplate(t, templateData{Cluster: newClusterData(a, items)})
	if err != nil {
		return nil, err
	}
	return newStack(a.Cluster.LocalID, "", body, ""), nil
}

// NodePoolStack renders cloudformation/node-pool.yaml for one pool, with
// the cluster stack's outputs. A repo without it has no pool stacks: nil.
//
// The template is rendered twice: first with an empty revision, to hash the
// launch template data (everything that shapes a node), then with that hash
// as the revision. So the revision changes exactly when a node would come
// out different, and not when, say, the pool's maximum size changes.
func NodePoolStack(repo fs.FS, a api.Assignment, items map[string]string, pool api.AssignedNodePool, outputs map[string]string) (*Stack, error) {
	t, err := readTemplate(repo, NodePoolTemplate)
	if t == nil || err != nil {
		return nil, err
	}
	data := templateData{Cluster: newClusterData(a, items), NodePool: newNodePoolData(a, items, pool), Outputs: cloneOrEmpty(outputs)}
	_, draft, err := executeTemplate(t, data)
	if err == nil {
		data.NodePool.Revision, err = nodePoolRevision(draft)
	}
	var body []byte
	if err == nil {
		body, _, err = executeTemplate(t, data)
	}
	if err != nil {
		return nil, poolError(pool.Name, err)
	}
	return newStack("nodepool-"+pool.Name+"-"+a.Cluster.LocalID, pool.Name, body, data.NodePool.Revision), nil
}

// OutputNames lists the Outputs a rendered cluster template declares, sorted.
func OutputNames(cluster *Stack) ([]string, error) {
	if cluster == nil {
		return nil, nil
	}
	t, err := parseRendered(ClusterTemplate, cluster.Body)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(t.Outputs)), nil
}

// Stacks renders the cluster stack and every pool's stack with placeholder
// outputs. A repo without a cluster template has no stacks.
func Stacks(repo fs.FS, a api.Assignment, items map[string]string) (*Stack, []*Stack, error) {
	cluster, err := ClusterStack(repo, a, items)
	if err != nil || cluster == nil {
		return nil, nil, err
	}
	names, err := OutputNames(cluster)
	if err != nil {
		return nil, nil, err
	}
	pools, err := PlaceholderNodePoolStacks(repo, a, items, names)
	if err != nil {
		return nil, nil, err
	}
	return cluster, pools, nil
}

// PlaceholderNodePoolStacks renders every pool's template with placeholder
// outputs (placeholder-<name> for each name of OutputNames), so that a
// broken pool template is found before the cluster stack changes: the
// cluster stack is applied first, and a pool template that failed only
// afterwards would leave the cluster half updated. An agent renders each
// pool's stack again with the real outputs when it applies it.
func PlaceholderNodePoolStacks(repo fs.FS, a api.Assignment, items map[string]string, outputNames []string) ([]*Stack, error) {
	outputs := map[string]string{}
	for _, name := range outputNames {
		outputs[name] = "placeholder-" + name
	}
	var stacks []*Stack
	for _, pool := range a.NodePools {
		s, err := NodePoolStack(repo, a, items, pool, outputs)
		if err != nil {
			return nil, err
		}
		if s != nil {
			stacks = append(stacks, s)
		}
	}
	return stacks, nil
}

func newStack(name, pool string, body []byte, revision string) *Stack {
	sum := sha256.Sum256(body)
	return &Stack{Name: name, NodePool: pool, Body: body, Revision: revision, Digest: hex.EncodeToString(sum[:])}
}

func newClusterData(a api.Assignment, items map[string]string) clusterData {
	c := a.Cluster
	return clusterData{
		ID: c.ID, LocalID: c.LocalID, Alias: c.Alias,
		AccountID: strings.TrimPrefix(c.InfrastructureAccount, "aws:"), InfrastructureAccount: c.InfrastructureAccount,
		Region: c.Region, Environment: c.Environment, APIServerURL: c.APIServerURL, Provider: c.Provider,
		CriticalityLevel: c.CriticalityLevel, Channel: a.Channel.Name, ConfigItems: maps.Clone(items),
	}
}

func newNodePoolData(a api.Assignment, items map[string]string, p api.AssignedNodePool) *nodePoolData {
	return &nodePoolData{
		Name: p.Name, Profile: p.Profile, InstanceTypes: slices.Clone(p.InstanceTypes), MinSize: p.MinSize, MaxSize: p.MaxSize,
		DiscountStrategy: p.DiscountStrategy, Spot: p.DiscountStrategy == api.DiscountSpot,
		ConfigItems: api.PoolConfigItems(a.ConfigItems, items, p.ConfigItems), Labels: cloneOrEmpty(p.Labels), Taints: slices.Clone(p.Taints),
	}
}

func cloneOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// readTemplate parses a template of the repo; nil without error when the
// repo has none. missingkey=error makes a misspelt config item or output
// (map keys) an error; a misspelt field is one anyway.
func readTemplate(repo fs.FS, file string) (*template.Template, error) {
	source, err := fs.ReadFile(repo, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{File: file, Reason: err.Error()}
	}
	t, err := template.New(file).Option("missingkey=error").Funcs(templateFuncs).Parse(string(source))
	if err != nil {
		return nil, templateError(file, err)
	}
	return t, nil
}

// executeTemplate runs a template and checks that its output is a CloudFormation
// template, which it returns parsed too.
func executeTemplate(t *template.Template, data templateData) ([]byte, *cfnTemplate, error) {
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, nil, templateError(t.Name(), err)
	}
	parsed, err := parseRendered(t.Name(), out.Bytes())
	if err != nil {
		return nil, nil, err
	}
	return out.Bytes(), parsed, nil
}

// templatePosition reads "template: NAME:LINE[:COL]: REST" of text/template
// errors; NAME is the file, or a {{define}} of it (whose lines are the file's).
var templatePosition = regexp.MustCompile(`(?s)^template: .*?:(\d+):(?:(\d+):)? (.*)$`)

// executing is the prefix of exec errors that repeats the template's name.
var executing = regexp.MustCompile(`^executing "[^"]*" at `)

func templateError(file string, err error) *Error {
	e := &Error{File: file, Reason: err.Error()}
	if m := templatePosition.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Reason = executing.ReplaceAllString(m[3], "")
		if m[2] != "" {
			e.Reason = "column " + m[2] + ": " + e.Reason
		}
	}
	return e
}

// cfnTemplate is what the agent reads of a rendered template.
type cfnTemplate struct {
	Resources map[string]cfnResource `json:"Resources"`
	Outputs   map[string]any         `json:"Outputs"`
}

type cfnResource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
}

// parseRendered checks that the rendered output is a CloudFormation
// template, before anything reaches AWS. Its line numbers are those of the
// output, not of the source, so they are told apart from the source's.
func parseRendered(file string, body []byte) (*cfnTemplate, error) {
	var t cfnTemplate
	if err := yaml.Unmarshal(body, &t); err != nil {
		return nil, renderedError(file, body, err)
	}
	if len(t.Resources) == 0 {
		return nil, &Error{File: file, Reason: "the rendered template has no Resources"}
	}
	for name, r := range t.Resources {
		if r.Type == "" {
			return nil, &Error{File: file, Reason: fmt.Sprintf("resource %s of the rendered template has no Type", name)}
		}
	}
	return &t, nil
}

// renderedError quotes the output line the YAML parser stopped at, which
// is the way back to the source line.
func renderedError(file string, body []byte, err error) *Error {
	reason := "the rendered template is not valid YAML: " + err.Error()
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		if lines := strings.Split(string(body), "\n"); n >= 1 && n <= len(lines) {
			reason = fmt.Sprintf("line %d of the rendered output (%q) is not valid YAML: %v", n, strings.TrimSpace(lines[n-1]), err)
		}
	}
	return &Error{File: file, Reason: reason}
}

func poolError(pool string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		// A name the registry would refuse is quoted, and shortened: it may
		// be what the template refused.
		if !plainName.MatchString(pool) {
			pool = shorten(pool)
		}
		return &Error{File: e.File, Line: e.Line, Reason: fmt.Sprintf("node pool %s: %s", pool, e.Reason)}
	}
	return err
}

var plainName = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// nodePoolRevision hashes the data of every launch template of a rendered
// pool template, in resource-name order: the first 16 hex digits of the
// sha256 of their canonical JSON (encoding/json sorts map keys). A template
// without launch template has no revision.
func nodePoolRevision(t *cfnTemplate) (string, error) {
	var shapes []any
	for _, name := range slices.Sorted(maps.Keys(t.Resources)) {
		if r := t.Resources[name]; r.Type == launchTemplateType {
			shapes = append(shapes, r.Properties["LaunchTemplateData"])
		}
	}
	if shapes == nil {
		return "", nil
	}
	canonical, err := json.Marshal(shapes)
	if err != nil {
		return "", &Error{File: NodePoolTemplate, Reason: err.Error()}
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])[:16], nil
}

// templateFuncs are the few functions templates get, documented in
// docs/config-repo.md. Each is small and total over its documented inputs:
// a template is data, and its functions must not reach out of the render.
var templateFuncs = template.FuncMap{
	"base64":  func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"indent":  fnIndent,
	"nindent": func(n int, s string) string { return "\n" + fnIndent(n, s) },
	"toYAML":  fnToYAML,
	"toJSON":  fnToJSON,
	"sha256": func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	},
	"split":   fnSplit,
	"join":    fnJoin,
	"quote":   fnQuote,
	"lower":   strings.ToLower,
	"upper":   strings.ToUpper,
	"trim":    strings.TrimSpace,
	"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	"default": func(fallback, value any) any {
		if fnEmpty(value) {
			return fallback
		}
		return value
	},
	"hasKey": fnHasKey,
	// Encodings for values that must never become structure or code.
	"shellQuote": fnShellQuote,
	"number":     fnNumber,
	"match":      fnMatch,
}

// fnShellQuote makes one POSIX shell word of s: in single quotes, inside
// which the shell interprets nothing, with each single quote of s written
// as: end the quotes, a backslash-escaped quote, open quotes again. So a
// value in user data stays a value whatever it holds: $(...), backticks,
// newlines, quotes. NUL is refused: no shell word can hold it (bash drops
// it silently).
func fnShellQuote(v any) (string, error) {
	s := fmt.Sprint(v)
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("shellQuote: %s holds a NUL byte, which no shell word can", shorten(s))
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// numberPattern is a decimal number as YAML and CloudFormation read it:
// no exponent, no leading zero, no hex, no .inf.
var numberPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// fnNumber gives value, trimmed, when it is a decimal number, so that it
// can stand unquoted where CloudFormation wants a number (VolumeSize);
// anything else is an error naming the item, never YAML structure.
func fnNumber(name string, value any) (string, error) {
	s := strings.TrimSpace(fmt.Sprint(value))
	if !numberPattern.MatchString(s) {
		return "", fmt.Errorf("%s: %s is not a number", name, shorten(fmt.Sprint(value)))
	}
	return s, nil
}

// patterns caches match's compiled patterns: a template calls it once per
// value, and the patterns are few.
var patterns sync.Map // string -> *regexp.Regexp

// fnMatch gives value when all of it matches pattern (anchored at both
// ends), else an error naming the item. Templates check with it what goes
// where a value could be read as more than a value: a logical ID, a file
// of the node's.
func fnMatch(name, pattern string, value any) (string, error) {
	re, ok := patterns.Load(pattern)
	if !ok {
		compiled, err := regexp.Compile(`^(?:` + pattern + `)$`)
		if err != nil {
			return "", fmt.Errorf("match %s: the pattern %q: %w", name, pattern, err)
		}
		re, _ = patterns.LoadOrStore(pattern, compiled)
	}
	s := fmt.Sprint(value)
	if !re.(*regexp.Regexp).MatchString(s) {
		return "", fmt.Errorf("%s: %s does not match %s", name, shorten(s), pattern)
	}
	return s, nil
}

// shorten quotes a value for an error message, cut to 64 characters: a
// value may be a megabyte.
func shorten(s string) string {
	const limit = 64
	if r := []rune(s); len(r) > limit {
		return fmt.Sprintf("%q... (%d bytes)", string(r[:limit]), len(s))
	}
	return strconv.Quote(s)
}

// fnIndent puts n spaces before every line of s, the first one included.
func fnIndent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// fnToYAML has no final newline, so that it composes with indent.
func fnToYAML(v any) (string, error) {
	out, err := yaml.Marshal(v)
	return strings.TrimSuffix(string(out), "\n"), err
}

func fnToJSON(v any) (string, error) {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return strings.TrimSuffix(out.String(), "\n"), err
}

// fnQuote makes a double-quoted YAML scalar (JSON's strings are YAML's), so
// that a value is a string whatever it looks like ("true", "0123", "a: b").
func fnQuote(v any) (string, error) {
	return fnToJSON(fmt.Sprint(v))
}

// fnSplit cuts s at sep and trims the parts, dropping empty ones: a config
// item "a, b," is the list [a b], and an empty item an empty list.
func fnSplit(sep, s string) []string {
	parts := []string{}
	for _, part := range strings.Split(s, sep) {
		if part = strings.TrimSpace(part); part != "" {
			parts = append(parts, part)
		}
	}
	return parts
}

// fnJoin joins a list of any element type: .NodePool.InstanceTypes, what
// split made, a list of a map.
func fnJoin(sep string, list any) (string, error) {
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return "", fmt.Errorf("join: %T is not a list", list)
	}
	parts := make([]string, v.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(v.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

// fnHasKey tells whether a map (config items, labels, outputs) has a key:
// with it a template can test for an optional item without the error a
// missing key is.
func fnHasKey(m any, key string) (bool, error) {
	v := reflect.ValueOf(m)
	if v.Kind() != reflect.Map || v.Type().Key().Kind() != reflect.String {
		return false, fmt.Errorf("hasKey: %T is not a map with string keys", m)
	}
	return v.MapIndex(reflect.ValueOf(key).Convert(v.Type().Key())).IsValid(), nil
}

// fnEmpty is what default replaces: nil, a zero number, false, and an empty
// string, list or map.
func fnEmpty(v any) bool {
	r := reflect.ValueOf(v)
	if !r.IsValid() {
		return true
	}
	switch r.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return r.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return r.IsNil()
	}
	return r.IsZero()
}
