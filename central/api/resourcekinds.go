package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func keyFromPath(param string) func(r *http.Request) store.Ref {
	return func(r *http.Request) store.Ref { return store.Ref{Key: r.PathValue(param)} }
}

func immutable(field, was, now string) error {
	if now != was {
		return &api.ValidationError{Errors: []api.FieldError{{Field: field, Detail: fmt.Sprintf("cannot be changed (is %q, got %q)", was, now)}}}
	}
	return nil
}

func (s *Server) timestamp() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

func accountResource(s *Server) resource[api.InfrastructureAccount] {
	return resource[api.InfrastructureAccount]{
		kind:           store.Accounts,
		pathRef:        keyFromPath("id"),
		newRef:         func(_ *http.Request, a api.InfrastructureAccount) store.Ref { return store.Ref{Key: a.ID} },
		filters:        map[string]string{"environment": "environment", "lifecycle_status": "lifecycle_status"},
		conditionalGet: true,
		prepareCreate: func(_ context.Context, _ *http.Request, a *api.InfrastructureAccount) error {
			a.CreatedAt, a.UpdatedAt = s.timestamp(), s.timestamp()
			a.Normalize()
			return a.Validate()
		},
		prepareUpdate: func(_ context.Context, _ *http.Request, old api.InfrastructureAccount, a *api.InfrastructureAccount) error {
			if a.ID == "" {
				a.ID = old.ID
			}
			if err := immutable("id", old.ID, a.ID); err != nil {
				return err
			}
			a.CreatedAt, a.UpdatedAt = old.CreatedAt, s.timestamp()
			a.Normalize()
			return a.Validate()
		},
	}
}

func clusterResource(s *Server) resource[api.Cluster] {
	return resource[api.Cluster]{
		kind:    store.Clusters,
		pathRef: keyFromPath("id"),
		newRef: func(_ *http.Request, c api.Cluster) store.Ref {
			return store.Ref{Key: c.ID, Parent: c.InfrastructureAccount}
		},
		filters: map[string]string{"channel": "channel", "environment": "environment", "lifecycle_status": "lifecycle_status", "alias": "alias", "infrastructure_account": "parent"},
		prepareCreate: func(ctx context.Context, _ *http.Request, c *api.Cluster) error {
			now := s.timestamp()
			// Only POST .../decommission confirms a decommission.
			c.CreatedAt, c.UpdatedAt, c.Status, c.Schedule, c.DecommissionConfirmedAt = now, now, nil, nil, nil
			for i := range c.NodePools {
				c.NodePools[i].CreatedAt, c.NodePools[i].UpdatedAt = now, now
			}
			c.Normalize()
			return s.validateCluster(ctx, c)
		},
		prepareUpdate: func(ctx context.Context, _ *http.Request, old api.Cluster, c *api.Cluster) error {
			if c.ID == "" {
				c.ID = old.ID
			}
			if err := immutable("id", old.ID, c.ID); err != nil {
				return err
			}
			c.CreatedAt, c.UpdatedAt, c.NodePools, c.Status, c.Schedule = old.CreatedAt, s.timestamp(), nil, nil, nil
			c.Normalize()
			c.CarryDecommissionConfirmation(old)
			return s.validateCluster(ctx, c)
		},
		create: func(ctx context.Context, c api.Cluster, actor string) (store.Record[api.Cluster], error) {
			return store.CreateCluster(ctx, s.store, c, actor)
		},
		checkDelete: func(old api.Cluster) error {
			if old.LifecycleStatus == api.LifecycleRequested || old.LifecycleStatus == api.LifecycleDecommissioned {
				return nil
			}
			return &api.Problem{Status: http.StatusConflict, Title: "Cluster still in service", Field: "lifecycle_status",
				Detail: fmt.Sprintf("a cluster is deleted only when its lifecycle_status is requested or decommissioned, this one is %q", old.LifecycleStatus)}
		},
		present: func(ctx context.Context, cs []api.Cluster) error { return s.store.Details(ctx, cs) },
	}
}

// validateCluster checks a cluster's fields; that its account and channel
// exist is checked by the store, inside the write's transaction.
func (s *Server) validateCluster(_ context.Context, c *api.Cluster) error {
	return c.Validate()
}

func (s *Server) clusterExists(ctx context.Context, r *http.Request) error {
	_, err := store.Get(ctx, s.store, store.Clusters, r.PathValue("id"))
	return err
}

func nodePoolResource(s *Server) resource[api.NodePool] {
	return resource[api.NodePool]{
		kind: store.NodePools,
		pathRef: func(r *http.Request) store.Ref {
			return store.Ref{Key: store.NodePoolKey(r.PathValue("id"), r.PathValue("name")), Parent: r.PathValue("id")}
		},
		newRef: func(r *http.Request, p api.NodePool) store.Ref {
			return store.Ref{Key: store.NodePoolKey(r.PathValue("id"), p.Name), Parent: r.PathValue("id")}
		},
		owner:          s.clusterExists,
		conditionalGet: true,
		prepareCreate: func(_ context.Context, _ *http.Request, p *api.NodePool) error {
			p.CreatedAt, p.UpdatedAt = s.timestamp(), s.timestamp()
			p.Normalize()
			return p.Validate()
		},
		prepareUpdate: func(_ context.Context, _ *http.Request, old api.NodePool, p *api.NodePool) error {
			if p.Name == "" {
				p.Name = old.Name
			}
			if err := immutable("name", old.Name, p.Name); err != nil {
				return err
			}
			p.CreatedAt, p.UpdatedAt = old.CreatedAt, s.timestamp()
			p.Normalize()
			return p.Validate()
		},
	}
}

func channelResource(s *Server) resource[api.Channel] {
	return resource[api.Channel]{
		kind:    store.Channels,
		pathRef: keyFromPath("name"),
		newRef:  func(_ *http.Request, c api.Channel) store.Ref { return store.Ref{Key: c.Name} },
		filters: map[string]string{},
		prepareCreate: func(_ context.Context, _ *http.Request, c *api.Channel) error {
			c.CreatedAt, c.UpdatedAt = s.timestamp(), s.timestamp()
			c.Head, c.Clusters, c.Publication = nil, nil, nil
			if c.RepositoryURL == "" {
				c.RepositoryURL = s.repositoryURL
			}
			c.Gate = c.GateSetting()
			return c.Validate()
		},
		prepareUpdate: func(_ context.Context, _ *http.Request, old api.Channel, c *api.Channel) error {
			if c.Name == "" {
				c.Name = old.Name
			}
			if err := immutable("name", old.Name, c.Name); err != nil {
				return err
			}
			c.CreatedAt, c.UpdatedAt = old.CreatedAt, s.timestamp()
			c.Head, c.Clusters, c.Publication = nil, nil, nil
			c.Gate = c.GateSetting()
			return c.Validate()
		},
		present: s.presentChannels,
	}
}

func blockResource(s *Server) resource[api.Block] {
	return resource[api.Block]{
		kind: store.Blocks,
		pathRef: func(r *http.Request) store.Ref {
			return store.Ref{Key: store.BlockKey(r.PathValue("id"), r.PathValue("block_id")), Parent: r.PathValue("id")}
		},
		newRef: func(r *http.Request, b api.Block) store.Ref {
			return store.Ref{Key: store.BlockKey(r.PathValue("id"), b.ID), Parent: r.PathValue("id")}
		},
		conditionalGet: true,
		owner:          s.clusterExists,
		prepareCreate: func(ctx context.Context, r *http.Request, b *api.Block) error {
			id, err := store.NewID()
			if err != nil {
				return err
			}
			b.ID, b.ClusterID, b.By = id, r.PathValue("id"), principalFrom(ctx).Name
			b.Since, b.UpdatedAt = s.timestamp(), s.timestamp()
			return s.validateBlock(ctx, b)
		},
		prepareUpdate: func(ctx context.Context, _ *http.Request, old api.Block, b *api.Block) error {
			if b.NodePool != old.NodePool {
				return immutable("node_pool", old.NodePool, b.NodePool)
			}
			b.ID, b.ClusterID, b.By, b.Since, b.UpdatedAt = old.ID, old.ClusterID, old.By, old.Since, s.timestamp()
			return s.validateBlock(ctx, b)
		},
	}
}

// validateBlock checks a block's fields; that its node pool exists is
// checked by the store, inside the write's transaction.
func (s *Server) validateBlock(_ context.Context, b *api.Block) error {
	return b.Validate()
}
