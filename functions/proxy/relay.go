package proxy

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// Resources, prompts, completions and logging levels are served on both
// routes: the single-upstream route passes each request to its upstream
// as it is (the upstream's own pagination included, relayOnly); the
// aggregated route merges and routes them (aggregate.go).

// relayOnly passes a request as it came to the upstream of a
// single-upstream route. p is the params to decode it into.
func relayOnly[P mcp.Params, R any](ctx context.Context, h *Handler, req *request, call func(*mcp.ClientSession, context.Context, P) (R, error), p P, cache func(R) *mcp.Cacheable) (*result, *rpcError) {
	if e := decodeParams(req.params, p); e != nil {
		return nil, e
	}
	return relayTo(ctx, h, req, req.only, call, p, cache)
}

// relayTo passes a request to u's shared session and returns its result
// unchanged. Every request relayed this way is safe to retry on a new
// session. cache, when set, points into a result at the caching hint a
// 2026-07-28 client reads.
func relayTo[P mcp.Params, R any](ctx context.Context, h *Handler, req *request, u *upstreamView, call func(*mcp.ClientSession, context.Context, P) (R, error), p P, cache func(R) *mcp.Cacheable) (*result, *rpcError) {
	p.SetMeta(forwardedMeta(p.GetMeta()))
	if e := h.prepareInput(req, u, p); e != nil {
		return nil, e.from(u)
	}
	var res R
	panicked := false
	err := h.pool.Do(ctx, u.up, upstream.Idempotent, func(ctx context.Context, s *mcp.ClientSession) (err error) {
		defer func() {
			// The SDK's decoder of input requests panics on a null
			// one: the upstream's answer is bad, its session good.
			if recover() != nil {
				panicked, err = true, nil
			}
		}()
		res, err = call(s, ctx, p)
		return err
	})
	if panicked {
		return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a result the proxy cannot read").from(u)
	}
	if err != nil {
		return nil, h.upstreamFailure(ctx, req, u, err)
	}
	if e := h.sealInputRequired(req, u, res); e != nil {
		return nil, e
	}
	upstream.ValidEntries(res)
	if cache != nil {
		// The upstream answered with this tenant's credentials: the
		// result is the caller's alone, whatever the upstream says.
		cache(res).CacheScope = "private"
	}
	return &result{value: res, upstream: u.ns}, nil
}

// setLevelOf is logging/setLevel with the empty result it answers.
func setLevelOf(s *mcp.ClientSession, ctx context.Context, p *mcp.SetLoggingLevelParams) (struct{}, error) {
	return struct{}{}, s.SetLoggingLevel(ctx, p)
}

// capabilities are what the route serves: tools always; resources,
// prompts, completions and logging when the route's upstream (or, on the
// aggregated route, some upstream of the instance) declares them.
func (h *Handler) capabilities(ctx context.Context, req *request) (*mcp.ServerCapabilities, *rpcError) {
	if req.only == nil {
		return h.aggregatedCapabilities(ctx, req), nil
	}
	caps := &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}}
	var declared *mcp.ServerCapabilities
	err := h.pool.Do(ctx, req.only.up, upstream.Idempotent, func(_ context.Context, s *mcp.ClientSession) error {
		if r := s.InitializeResult(); r != nil {
			declared = r.Capabilities
		}
		return nil
	})
	if err != nil {
		return nil, h.upstreamFailure(ctx, req, req.only, err)
	}
	if declared != nil {
		addCapabilities(caps, declared)
	}
	return caps, nil
}
