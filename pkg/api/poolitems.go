package api

import "maps"

// PoolOwnItems are the config items a node pool sets itself. An assignment
// gives each pool the account's and the cluster's registry values merged
// with its own (BuildAssignment), so its own are those whose key the
// cluster lacks or whose value differs, "" included: a pool that sets an
// item to "" means it. Everything that layers a pool's items over the
// cluster's effective ones (the repo's defaults, decrypted values) takes
// them from here, so that a pool item means one thing everywhere.
func PoolOwnItems(cluster, pool map[string]string) map[string]string {
	own := map[string]string{}
	for key, value := range pool {
		if clusterValue, ok := cluster[key]; !ok || clusterValue != value {
			own[key] = value
		}
	}
	return own
}

// PoolConfigItems layers a pool's own items over the cluster's effective
// items.
func PoolConfigItems(cluster, effective, pool map[string]string) map[string]string {
	out := maps.Clone(effective)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, PoolOwnItems(cluster, pool))
	return out
}
