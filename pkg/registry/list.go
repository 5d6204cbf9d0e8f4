package registry

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Page selects one page of a collection. The zero Page asks for the first
// page in the server's default size.
type Page struct {
	// Limit is the most items the page holds; 0 leaves it to the server.
	Limit int
	// Continue is the Next cursor of the previous page.
	Continue string
}

func (p Page) addTo(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Continue != "" {
		q.Set("continue", p.Continue)
	}
	return q
}

// All follows the Next cursors from the first page to the last and returns
// every item. list fetches one page, typically a closure over a List method:
//
//	clusters, err := registry.All(func(p registry.Page) (*api.List[api.Cluster], error) {
//		return c.ListClusters(ctx, registry.ClusterFilter{Channel: "dev"}, p)
//	})
func All[T any](list func(Page) (*api.List[T], error)) ([]T, error) {
	items := []T{}
	var page Page
	for {
		l, err := list(page)
		if err != nil {
			return nil, err
		}
		items = append(items, l.Items...)
		if l.Next == "" {
			return items, nil
		}
		// A server that hands back the cursor it was given would loop forever.
		if l.Next == page.Continue {
			return nil, fmt.Errorf("listing: the server repeated the cursor %q", l.Next)
		}
		page.Continue = l.Next
	}
}

// AccountFilter narrows a list of infrastructure accounts; empty fields match all.
type AccountFilter struct {
	Environment     string
	LifecycleStatus string
}

func (f AccountFilter) query() url.Values {
	return filterQuery(map[string]string{
		"environment":      f.Environment,
		"lifecycle_status": f.LifecycleStatus,
	})
}

// ClusterFilter narrows a list of clusters; empty fields match all.
type ClusterFilter struct {
	Channel               string
	Environment           string
	LifecycleStatus       string
	Alias                 string
	InfrastructureAccount string
}

func (f ClusterFilter) query() url.Values {
	return filterQuery(map[string]string{
		"channel":                f.Channel,
		"environment":            f.Environment,
		"lifecycle_status":       f.LifecycleStatus,
		"alias":                  f.Alias,
		"infrastructure_account": f.InfrastructureAccount,
	})
}

// AuditFilter narrows the audit log; empty fields match all.
type AuditFilter struct {
	ResourceType string
	ResourceID   string
	Actor        string
}

func (f AuditFilter) query() url.Values {
	return filterQuery(map[string]string{
		"resource_type": f.ResourceType,
		"resource_id":   f.ResourceID,
		"actor":         f.Actor,
	})
}

func filterQuery(fields map[string]string) url.Values {
	q := url.Values{}
	for k, v := range fields {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}
