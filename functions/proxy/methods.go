package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// methodFunc answers one JSON-RPC request.
type methodFunc func(h *Handler, ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError)

// methods is the proxy's method table. A method not here is answered
// -32601; capabilities advertise only what the route serves of it.
var methods = merge(map[string]methodFunc{
	"initialize": (*Handler).initialize,
	"ping":       func(*Handler, context.Context, *exchange, json.RawMessage) (any, *rpcError) { return struct{}{}, nil },
	"tools/list": (*Handler).listTools,
	"tools/call": (*Handler).callTool,
}, relayedMethods, loggingMethods)

// merge makes one method table of several.
func merge(tables ...map[string]methodFunc) map[string]methodFunc {
	out := map[string]methodFunc{}
	for _, t := range tables {
		maps.Copy(out, t)
	}
	return out
}

// decodeParams unmarshals params into p; absent params leave p as is.
func decodeParams(params json.RawMessage, p any) *rpcError {
	if len(params) == 0 || string(params) == "null" {
		return nil
	}
	if err := wire.Unmarshal(params, p); err != nil {
		return newError(http.StatusOK, codeInvalidParams, "invalid params: "+err.Error())
	}
	return nil
}

func (h *Handler) serverInfo() *mcp.Implementation {
	return &mcp.Implementation{Name: "mcp-proxy", Title: "mcp-proxy", Version: h.opts.Version}
}

func (h *Handler) initialize(ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError) {
	var p mcp.InitializeParams
	if e := decodeParams(params, &p); e != nil {
		return nil, e
	}
	if p.ProtocolVersion == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "initialize: protocolVersion is required")
	}
	caps, e := h.capabilities(ctx, x)
	if e != nil {
		return nil, e
	}
	return &mcp.InitializeResult{
		ProtocolVersion: negotiate(p.ProtocolVersion),
		Capabilities:    caps,
		ServerInfo:      h.serverInfo(),
		Instructions:    h.instructions(x),
	}, nil
}

func (h *Handler) instructions(x *exchange) string {
	if x.only != nil {
		return "Tools of the upstream MCP server " + x.only.up.Name + " of instance " + x.view.inst.Name + "."
	}
	return "Tools of the upstream MCP servers of instance " + x.view.inst.Name + ", named {server}__{tool}."
}

// targets are the upstreams a request may reach: one on a
// single-upstream route, else all of the instance.
func (x *exchange) targets() []*upstreamView {
	if x.only != nil {
		return []*upstreamView{x.only}
	}
	return x.view.ups
}

func (h *Handler) listTools(ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError) {
	var p mcp.ListToolsParams
	if e := decodeParams(params, &p); e != nil {
		return nil, e
	}
	if p.Cursor != "" {
		// The whole list is always returned in one page.
		return nil, newError(http.StatusOK, codeInvalidParams, "invalid cursor")
	}
	ups := x.targets()
	lists := make([][]*mcp.Tool, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			tools, _, err := h.exposedTools(ctx, u, x.only == nil)
			if err != nil {
				// One upstream failing never fails the whole list.
				h.log.WarnContext(ctx, "upstream left out of tools/list", "upstream", u.ns,
					"instance", x.view.inst.ID, "requestId", x.requestID, "error", err.Error())
				return
			}
			lists[i] = tools
		})
	}
	wg.Wait()
	out := &mcp.ListToolsResult{Tools: []*mcp.Tool{}, Cacheable: h.cacheHint()}
	for _, l := range lists {
		out.Tools = append(out.Tools, l...)
	}
	if x.modern {
		out.ResultType = "complete"
		out.Meta = h.serverMeta()
	}
	return out, nil
}

// toolList is an upstream's tools as the tools cache keeps them, with
// the arguments each tool wants repeated in headers.
type toolList struct {
	bytes   int64 // the list's size as JSON, which the tools cache weighs
	tools   []*mcp.Tool
	headers map[string][]paramHeader // by upstream tool name; only tools that have any
}

// upstreamTools asks an upstream for its tools (through the short-lived
// tools cache), following pagination.
func (h *Handler) upstreamTools(ctx context.Context, u *upstreamView) (*toolList, error) {
	list, _, err := h.tools.Get(ctx, u.key, func(ctx context.Context) (*toolList, error) {
		var tools []*mcp.Tool
		err := h.pool.Do(ctx, u.up, upstream.Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
			var err error
			tools, err = upstream.ListTools(ctx, s)
			return err
		})
		if err != nil {
			return nil, err
		}
		size, err := listBytes(u, "tools", tools, h.opts.MaxListBytes)
		if err != nil {
			return nil, err
		}
		l := &toolList{tools: tools, headers: map[string][]paramHeader{}, bytes: size}
		for _, t := range tools {
			if b := paramHeaders(t); b != nil {
				l.headers[t.Name] = b
			}
		}
		return l, nil
	})
	return list, err
}

// listBytes is the size of an upstream's list as JSON, refused past max:
// lists are kept per upstream for UPSTREAM_TOOLS_TTL, and an upstream
// sizes them, so they are weighed in bytes, not only counted.
func listBytes(u *upstreamView, what string, list any, max int64) (int64, error) {
	b, err := json.Marshal(list)
	if err != nil {
		return 0, err
	}
	if n := int64(len(b)); n > max {
		return 0, fmt.Errorf("upstream %s lists %d bytes of %s, more than the proxy keeps (UPSTREAM_MAX_LIST_BYTES, %d)", u.ns, n, what, max)
	}
	return int64(len(b)), nil
}

// exposedTools are the tools of u the tool group allows, renamed as the
// client sees them (prefixed on the aggregated route, unchanged on a
// single-upstream route), with their upstream names alongside.
func (h *Handler) exposedTools(ctx context.Context, u *upstreamView, prefixed bool) (exposed []*mcp.Tool, originals []string, err error) {
	list, err := h.upstreamTools(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	var allowed []*mcp.Tool
	var names []string
	for _, t := range list.tools {
		if u.allowed[t.Name] {
			allowed = append(allowed, t)
			names = append(names, t.Name)
		}
	}
	if !prefixed {
		return allowed, names, nil
	}
	renamed := exposedNames(u.prefix(), names)
	exposed = make([]*mcp.Tool, len(allowed))
	for i, t := range allowed {
		c := *t
		c.Name = renamed[i]
		exposed[i] = &c
	}
	return exposed, names, nil
}

// resolveTool finds the upstream and the upstream's own name of a tool as
// the client named it. A valid name needs no listing: it is exposed as
// exactly namespace__tool. Only a name the proxy had to rewrite is looked
// up in the upstream's (cached) list.
func (h *Handler) resolveTool(ctx context.Context, x *exchange, name string) (*upstreamView, string, *rpcError) {
	unknown := newError(http.StatusOK, codeInvalidParams, "unknown tool: "+name)
	if x.only != nil {
		if !x.only.allowed[name] {
			return nil, "", unknown
		}
		return x.only, name, nil
	}
	ns, tool, ok := splitToolName(name)
	u := x.view.byNS[ns]
	if !ok || u == nil {
		return nil, "", unknown
	}
	if u.allowed[tool] && validToolName(name) {
		return u, tool, nil
	}
	exposed, originals, err := h.exposedTools(ctx, u, true)
	if err != nil {
		return nil, "", h.upstreamFailure(ctx, x, u, err)
	}
	for i, t := range exposed {
		if t.Name == name {
			return u, originals[i], nil
		}
	}
	return nil, "", unknown
}

func (h *Handler) callTool(ctx context.Context, x *exchange, params json.RawMessage) (any, *rpcError) {
	p := x.params // decoded once for the protocol checks
	if p == nil {
		p = &requestParams{}
		if e := decodeParams(params, p); e != nil {
			return nil, e
		}
	}
	if p.Name == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "tools/call: name is required")
	}
	x.tool = p.Name
	u, original, e := h.resolveTool(ctx, x, p.Name)
	if e != nil {
		return nil, e
	}
	x.upstream = u.ns
	args := p.Arguments
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	if x.modern {
		if e := h.checkToolHeaders(ctx, x, u, original, args); e != nil {
			return nil, e
		}
	}
	call := upstream.Call{Name: original, Arguments: args, Meta: forwardedMeta(p.Meta), ProgressToken: p.Meta["progressToken"],
		Header: func() http.Header { return h.upstreamParamHeaders(ctx, u, original, args) }}
	if s := x.stream; s != nil {
		call.Notify = s.send
	}
	res, err := h.pool.Call(ctx, u.up, call)
	if err != nil {
		return nil, h.upstreamFailure(ctx, x, u, err)
	}
	// A 2026-07-28 upstream's result has its resultType already.
	x.resultTyped = res.Typed
	return res.Raw, nil
}

// checkToolHeaders checks the Mcp-Param-* headers of a 2026-07-28 call
// against the tool's schema in the upstream's (cached) list. When the
// list cannot be had, the call goes on unchecked: the body is what the
// upstream acts on, and the call itself reports the upstream's failure.
func (h *Handler) checkToolHeaders(ctx context.Context, x *exchange, u *upstreamView, tool string, args json.RawMessage) *rpcError {
	list, err := h.upstreamTools(ctx, u)
	if err != nil {
		return nil
	}
	if b := list.headers[tool]; b != nil {
		return checkParamHeaders(x.header, b, args)
	}
	return nil
}

// upstreamFailure turns an upstream error into the client's answer: the
// upstream's own JSON-RPC error as it is, or an error naming the upstream
// when it refused the proxy's credentials, could not be reached or did
// not answer in time.
func (h *Handler) upstreamFailure(ctx context.Context, x *exchange, u *upstreamView, err error) *rpcError {
	if errors.Is(err, upstream.ErrUnauthorized) {
		h.log.WarnContext(ctx, "upstream needs re-authorisation", "upstream", u.ns, "authType", string(u.up.AuthType),
			"instance", x.view.inst.ID, "requestId", x.requestID, "error", err.Error())
		fix := "an operator must update the credentials of its config"
		switch u.up.AuthType {
		case tenant.AuthOAuth:
			fix = "an operator must store new OAuth tokens for its config with mcpadmin config oauth"
		case tenant.AuthCloudRunIAM:
			fix = "an operator must let the proxy's service account invoke it"
		}
		e := newError(http.StatusOK, codeUpstreamUnauthorized,
			fmt.Sprintf("upstream %s refused the proxy's credentials and needs re-authorisation: %s", u.ns, fix))
		e.data = map[string]string{"reason": reasonUpstreamUnauthorized, "upstream": u.ns}
		return e
	}
	if jerr, ok := upstream.Answer(err); ok {
		e := newError(http.StatusOK, jerr.Code, jerr.Message)
		if len(jerr.Data) > 0 {
			e.data = jerr.Data
		}
		return e
	}
	var tooLarge *budget.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		h.log.WarnContext(ctx, "upstream message over the limit", "upstream", u.ns, "instance", x.view.inst.ID,
			"requestId", x.requestID, "limit", tooLarge.Limit)
		return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s sent a message larger than %d bytes, the proxy's limit (UPSTREAM_MAX_MESSAGE_BYTES)", u.ns, tooLarge.Limit))
	case errors.Is(err, budget.ErrBusy):
		return busy()
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		x.status = "timeout"
		return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s did not answer within the request deadline", u.ns))
	}
	h.log.WarnContext(ctx, "upstream call failed", "upstream", u.ns, "instance", x.view.inst.ID,
		"requestId", x.requestID, "error", err.Error())
	if errors.Is(err, upstream.ErrCommandNotFound) {
		return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s is unavailable: its command is not installed where the proxy runs", u.ns))
	}
	return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s is unavailable", u.ns))
}
