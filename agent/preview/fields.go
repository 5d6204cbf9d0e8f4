package preview

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
)

// ignoredFields change on every write or belong to the cluster, not to
// the config: a dry run that differs only in them changes nothing.
var ignoredFields = map[string]bool{
	"status":                     true,
	"metadata.managedFields":     true,
	"metadata.resourceVersion":   true,
	"metadata.generation":        true,
	"metadata.uid":               true,
	"metadata.creationTimestamp": true,
}

// plainKey is a map key that a path may name after a dot; any other key
// (a label such as app.kubernetes.io/name, a data key with a dot) is
// quoted in brackets.
var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// ChangedFields lists the paths of the values that differ between the live
// object and the dry run of the desired one, such as spec.replicas,
// data.key or metadata.labels["app.kubernetes.io/version"], in order. A
// list of another length is one changed value; within lists of the same
// length each element is compared.
func ChangedFields(live, dryRun map[string]any) []string {
	var out []string
	changedPaths(&out, "", live, dryRun)
	return out
}

func changedPaths(out *[]string, path string, live, dryRun any) {
	if ignoredFields[path] {
		return
	}
	switch l := live.(type) {
	case map[string]any:
		if d, ok := dryRun.(map[string]any); ok {
			keys := slices.Sorted(maps.Keys(l))
			for k := range d {
				if _, ok := l[k]; !ok {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range slices.Compact(keys) {
				changedPaths(out, join(path, k), l[k], d[k])
			}
			return
		}
	case []any:
		if d, ok := dryRun.([]any); ok && len(d) == len(l) {
			for i := range l {
				changedPaths(out, path+"["+strconv.Itoa(i)+"]", l[i], d[i])
			}
			return
		}
	}
	if !reflect.DeepEqual(live, dryRun) {
		*out = append(*out, path)
	}
}

func join(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}
