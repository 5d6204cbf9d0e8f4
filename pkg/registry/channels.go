package registry

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// GetChannelRollout returns where commit (the channel's head when empty)
// stands on the channel's clusters.
func (c *Client) GetChannelRollout(ctx context.Context, channel, commit string) (*api.ChannelRollout, error) {
	q := filterQuery(map[string]string{"commit": commit})
	r, _, err := call[api.ChannelRollout](ctx, c, request{method: http.MethodGet, path: resourcePath("channels", channel, "rollout"), query: q})
	return r, err
}

// GetChannelHistory returns up to limit commits of the channel's branch
// (the server's default when 0), each with how far it travelled.
func (c *Client) GetChannelHistory(ctx context.Context, channel string, limit int) (*api.ChannelHistory, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	h, _, err := call[api.ChannelHistory](ctx, c, request{method: http.MethodGet, path: resourcePath("channels", channel, "history"), query: q})
	return h, err
}

// GetPromotionGate returns the verdict on promoting commit (from's head
// when empty) from the channel from to the channel to, with its evidence.
func (c *Client) GetPromotionGate(ctx context.Context, from, to, commit string) (*api.PromotionGate, error) {
	q := filterQuery(map[string]string{"to": to, "commit": commit})
	g, _, err := call[api.PromotionGate](ctx, c, request{method: http.MethodGet, path: resourcePath("channels", from, "promotion"), query: q})
	return g, err
}

// RecordPromotion records in the registry's audit log that the channel
// to's branch was moved to a commit of another channel. Like every POST
// that is not idempotent, it is not retried once it may have arrived.
func (c *Client) RecordPromotion(ctx context.Context, to string, p *api.PromotionRequest) (*api.Promotion, error) {
	r, err := jsonRequest(http.MethodPost, resourcePath("channels", to, "promotions"), p)
	if err != nil {
		return nil, err
	}
	rec, _, err := call[api.Promotion](ctx, c, r)
	return rec, err
}
