package proxy

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The single-upstream route serves the upstream's resources, prompts and
// completions besides its tools: each request is passed to the upstream's
// shared session and its result returned unchanged. (The aggregated route
// serves tools only; its capabilities say so.)

// relayedMethods belong to both method tables.
var relayedMethods = map[string]methodFunc{
	"resources/list": relay((*mcp.ClientSession).ListResources, func() *mcp.ListResourcesParams { return &mcp.ListResourcesParams{} },
		func(r *mcp.ListResourcesResult) *mcp.Cacheable { return &r.Cacheable }),
	"resources/templates/list": relay((*mcp.ClientSession).ListResourceTemplates, func() *mcp.ListResourceTemplatesParams { return &mcp.ListResourceTemplatesParams{} },
		func(r *mcp.ListResourceTemplatesResult) *mcp.Cacheable { return &r.Cacheable }),
	"resources/read": relay((*mcp.ClientSession).ReadResource, func() *mcp.ReadResourceParams { return &mcp.ReadResourceParams{} },
		func(r *mcp.ReadResourceResult) *mcp.Cacheable { return &r.Cacheable }),
	"prompts/list": relay((*mcp.ClientSession).ListPrompts, func() *mcp.ListPromptsParams { return &mcp.ListPromptsParams{} },
		func(r *mcp.ListPromptsResult) *mcp.Cacheable { return &r.Cacheable }),
	"prompts/get":         relay((*mcp.ClientSession).GetPrompt, func() *mcp.GetPromptParams { return &mcp.GetPromptParams{} }, nil),
	"completion/complete": relay((*mcp.ClientSession).Complete, func() *mcp.CompleteParams { return &mcp.CompleteParams{} }, nil),
}

// relay makes the method that passes a request to the route's upstream.
// Every one of them is safe to retry on a new session. cache, when set,
// points into a result at the caching hint a 2026-07-28 client reads.
func relay[P mcp.Params, R any](call func(*mcp.ClientSession, context.Context, P) (R, error), newParams func() P, cache func(R) *mcp.Cacheable) methodFunc {
	return func(h *Handler, ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError) {
		if x.only == nil {
			return nil, newError(http.StatusOK, codeMethodNotFound,
				"method not found: "+x.method+" (served on /mcp/{instanceId}/{namespace}, one upstream at a time)")
		}
		p := newParams()
		if e := decodeParams(params, p); e != nil {
			return nil, e
		}
		p.SetMeta(forwardedMeta(p.GetMeta()))
		x.upstream = x.only.ns
		var result R
		err := h.pool.Do(ctx, x.only.up, true, func(ctx context.Context, s *mcp.ClientSession) error {
			var err error
			result, err = call(s, ctx, p)
			return err
		})
		if err != nil {
			return nil, h.upstreamFailure(ctx, x, x.only, err)
		}
		if cache != nil {
			// The upstream answered with this tenant's credentials: the
			// result is the caller's alone, whatever the upstream says.
			cache(result).CacheScope = "private"
		}
		return result, nil
	}
}

// capabilities are what the route serves: tools always; on a
// single-upstream route also the resources, prompts and completions its
// upstream declares, without subscriptions or change notifications, which
// need a stream the stateless proxy does not keep.
func (h *Handler) capabilities(ctx context.Context, x *exchange) (*mcp.ServerCapabilities, *rpcError) {
	caps := &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}}
	if x.only == nil {
		return caps, nil
	}
	var declared *mcp.ServerCapabilities
	err := h.pool.Do(ctx, x.only.up, true, func(_ context.Context, s *mcp.ClientSession) error {
		if r := s.InitializeResult(); r != nil {
			declared = r.Capabilities
		}
		return nil
	})
	if err != nil {
		return nil, h.upstreamFailure(ctx, x, x.only, err)
	}
	if declared != nil {
		if declared.Resources != nil {
			caps.Resources = &mcp.ResourceCapabilities{}
		}
		if declared.Prompts != nil {
			caps.Prompts = &mcp.PromptCapabilities{}
		}
		if declared.Completions != nil {
			caps.Completions = &mcp.CompletionCapabilities{}
		}
	}
	return caps, nil
}
