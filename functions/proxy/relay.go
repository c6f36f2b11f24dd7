package proxy

import (
	"context"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// Resources, prompts, completions and logging levels are served on both
// routes: the single-upstream route passes each request to its upstream
// as it is (the upstream's own pagination included); the aggregated route
// merges and routes them (aggregate.go).

// relayedMethods belong to both method tables.
var relayedMethods = map[string]methodFunc{
	"resources/list": both(relay((*mcp.ClientSession).ListResources, func() *mcp.ListResourcesParams { return &mcp.ListResourcesParams{} },
		func(r *mcp.ListResourcesResult) *mcp.Cacheable { return &r.Cacheable }), (*Handler).listResources),
	"resources/templates/list": both(relay((*mcp.ClientSession).ListResourceTemplates, func() *mcp.ListResourceTemplatesParams { return &mcp.ListResourceTemplatesParams{} },
		func(r *mcp.ListResourceTemplatesResult) *mcp.Cacheable { return &r.Cacheable }), (*Handler).listResourceTemplates),
	"resources/read": both(relay((*mcp.ClientSession).ReadResource, func() *mcp.ReadResourceParams { return &mcp.ReadResourceParams{} },
		func(r *mcp.ReadResourceResult) *mcp.Cacheable { return &r.Cacheable }), (*Handler).readResource),
	"prompts/list": both(relay((*mcp.ClientSession).ListPrompts, func() *mcp.ListPromptsParams { return &mcp.ListPromptsParams{} },
		func(r *mcp.ListPromptsResult) *mcp.Cacheable { return &r.Cacheable }), (*Handler).listPrompts),
	"prompts/get":         both(relay((*mcp.ClientSession).GetPrompt, func() *mcp.GetPromptParams { return &mcp.GetPromptParams{} }, nil), (*Handler).getPrompt),
	"completion/complete": both(relay((*mcp.ClientSession).Complete, func() *mcp.CompleteParams { return &mcp.CompleteParams{} }, nil), (*Handler).complete),
}

// loggingMethods are served before 2026-07-28 only, which removed
// logging/setLevel: a 2026-07-28 request carries its level in _meta.
var loggingMethods = map[string]methodFunc{
	"logging/setLevel": both(relay(setLevel, func() *mcp.SetLoggingLevelParams { return &mcp.SetLoggingLevelParams{} }, nil), (*Handler).setLevelAll),
}

// both serves a method with single on a single-upstream route and with
// all on the aggregated one.
func both(single, all methodFunc) methodFunc {
	return func(h *Handler, ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError) {
		if x.only != nil {
			return single(h, ctx, x, params)
		}
		return all(h, ctx, x, params)
	}
}

// setLevel is logging/setLevel with the empty result it answers.
func setLevel(s *mcp.ClientSession, ctx context.Context, p *mcp.SetLoggingLevelParams) (struct{}, error) {
	return struct{}{}, s.SetLoggingLevel(ctx, p)
}

// relay makes the method that passes a request to the route's upstream.
func relay[P mcp.Params, R any](call func(*mcp.ClientSession, context.Context, P) (R, error), newParams func() P, cache func(R) *mcp.Cacheable) methodFunc {
	return func(h *Handler, ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError) {
		p := newParams()
		if e := decodeParams(params, p); e != nil {
			return nil, e
		}
		return relayTo(ctx, h, x, x.only, call, p, cache)
	}
}

// relayTo passes a request to u's shared session and returns its result
// unchanged. Every request relayed this way is safe to retry on a new
// session. cache, when set, points into a result at the caching hint a
// 2026-07-28 client reads.
func relayTo[P mcp.Params, R any](ctx context.Context, h *Handler, x *exchange, u *upstreamView, call func(*mcp.ClientSession, context.Context, P) (R, error), p P, cache func(R) *mcp.Cacheable) (any, *rpcError) {
	p.SetMeta(forwardedMeta(p.GetMeta()))
	x.upstream = u.ns
	var result R
	err := h.pool.Do(ctx, u.up, upstream.Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
		var err error
		result, err = call(s, ctx, p)
		return err
	})
	if err != nil {
		return nil, h.upstreamFailure(ctx, x, u, err)
	}
	upstream.ValidEntries(result)
	if cache != nil {
		// The upstream answered with this tenant's credentials: the
		// result is the caller's alone, whatever the upstream says.
		cache(result).CacheScope = "private"
	}
	return result, nil
}

// capabilities are what the route serves: tools always; resources,
// prompts, completions and logging when the route's upstream (or, on the
// aggregated route, some upstream of the instance) declares them.
func (h *Handler) capabilities(ctx context.Context, x *exchange) (*mcp.ServerCapabilities, *rpcError) {
	if x.only == nil {
		return h.aggregatedCapabilities(ctx, x), nil
	}
	caps := &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}}
	var declared *mcp.ServerCapabilities
	err := h.pool.Do(ctx, x.only.up, upstream.Idempotent, func(_ context.Context, s *mcp.ClientSession) error {
		if r := s.InitializeResult(); r != nil {
			declared = r.Capabilities
		}
		return nil
	})
	if err != nil {
		return nil, h.upstreamFailure(ctx, x, x.only, err)
	}
	if declared != nil {
		addCapabilities(caps, declared)
	}
	return caps, nil
}
