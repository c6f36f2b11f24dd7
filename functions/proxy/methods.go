package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

func (h *Handler) serverInfo() *mcp.Implementation {
	return &mcp.Implementation{Name: "mcp-proxy", Title: "mcp-proxy", Version: h.opts.Version}
}

func (h *Handler) initialize(ctx context.Context, req *request) (*result, *rpcError) {
	var p mcp.InitializeParams
	if e := decodeParams(req.params, &p); e != nil {
		return nil, e
	}
	if p.ProtocolVersion == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "initialize: protocolVersion is required")
	}
	caps, e := h.capabilities(ctx, req)
	if e != nil {
		return nil, e
	}
	caps.Extensions = nil // the tasks extension is of 2026-07-28
	res := &result{value: &mcp.InitializeResult{
		ProtocolVersion: negotiate(p.ProtocolVersion),
		Capabilities:    caps,
		ServerInfo:      h.serverInfo(),
		Instructions:    instructions(req.caller),
	}}
	if h.asks != nil {
		// The capabilities an upstream's request may need, sealed: the
		// instance that relays it reads them back from the session ID.
		if c := declaredCaps(req.params); c != 0 {
			res.header = http.Header{"Mcp-Session-Id": {h.asks.sessionID(req.key.ID, c)}}
		}
	}
	return res, nil
}

func instructions(c *caller) string {
	if c.only != nil {
		return "Tools of the upstream MCP server " + c.only.up.Name + " of instance " + c.view.inst.Name + "."
	}
	return "Tools of the upstream MCP servers of instance " + c.view.inst.Name + ", named {server}__{tool}."
}

func (h *Handler) listTools(ctx context.Context, req *request) (*result, *rpcError) {
	var p mcp.ListToolsParams
	if e := decodeParams(req.params, &p); e != nil {
		return nil, e
	}
	if p.Cursor != "" {
		// The whole list is always returned in one page.
		return nil, newError(http.StatusOK, codeInvalidParams, "invalid cursor")
	}
	ups := req.targets()
	lists := make([][]*mcp.Tool, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			tools, _, err := h.exposedTools(ctx, u, req.naming())
			if err != nil {
				// One upstream failing never fails the whole list.
				h.log.WarnContext(ctx, "upstream left out of tools/list", "upstream", u.ns,
					"instance", req.view.inst.ID, "requestId", req.requestID, "error", err.Error())
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
	if req.epoch.stateless {
		out.ResultType = "complete"
		out.Meta = h.serverMeta()
	}
	return valueOf(out)
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
func (h *Handler) exposedTools(ctx context.Context, u *upstreamView, how naming) (exposed []*mcp.Tool, originals []string, err error) {
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
	if how == upstreamNames {
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
func (h *Handler) resolveTool(ctx context.Context, req *request, name string) (*upstreamView, string, *rpcError) {
	if req.only != nil {
		if !req.only.allowed[name] {
			return nil, "", unknownTool(name)
		}
		return req.only, name, nil
	}
	ns, tool, ok := splitToolName(name)
	u := req.view.byNS[ns]
	if !ok || u == nil {
		return nil, "", unknownTool(name)
	}
	if u.allowed[tool] && validToolName(name) {
		return u, tool, nil
	}
	exposed, originals, err := h.exposedTools(ctx, u, prefixed)
	if err != nil {
		return nil, "", h.upstreamFailure(ctx, req, u, err)
	}
	for i, t := range exposed {
		if t.Name == name {
			return u, originals[i], nil
		}
	}
	return nil, "", unknownTool(name)
}

func unknownTool(name string) *rpcError {
	return newError(http.StatusOK, codeInvalidParams, "unknown tool: "+name)
}

func (h *Handler) callTool(ctx context.Context, req *request) (*result, *rpcError) {
	p := req.decoded // decoded once for the protocol checks
	if p == nil {
		p = &requestParams{}
		if e := decodeParams(req.params, p); e != nil {
			return nil, e
		}
	}
	if p.Name == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "tools/call: name is required")
	}
	u, original, e := h.resolveTool(ctx, req, p.Name)
	if e != nil {
		return nil, e
	}
	args := p.Arguments
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	var input *upstream.Input
	if req.epoch.stateless {
		if e := h.checkToolHeaders(ctx, req, u, original, args); e != nil {
			return nil, e.from(u)
		}
		if input, e = h.callInput(req, u, p); e != nil {
			return nil, e
		}
	}
	call := upstream.Call{Name: original, Arguments: args, Meta: forwardedMeta(p.Meta), ProgressToken: p.Meta["progressToken"],
		Header: func() http.Header { return h.upstreamParamHeaders(ctx, u, original, args) }, Notify: req.notify,
		ResultType: req.epoch.stateless, Input: input}
	if req.asks != nil && req.notify != nil && !req.epoch.stateless {
		call.Ask = req // ask.go; nothing is done unless the upstream asks
	}
	res, err := h.pool.CallTool(ctx, u.up, call)
	if err != nil {
		return nil, h.upstreamFailure(ctx, req, u, err)
	}
	if res.MayBePending() {
		if res, err = h.pool.Hold(ctx, res); err != nil {
			return nil, h.upstreamFailure(ctx, req, u, err)
		}
	}
	if kind, raw := res.Pending(); raw != nil {
		defer res.Close()
		if !res.Typed {
			// Not of its version: relayed, it would reach a client
			// unexamined, its state and task unsealed.
			return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a result of type "+kind+" or with inputRequests, which its protocol version does not have").from(u)
		}
		if kind == "task" {
			return h.relayTaskCreated(req, u, raw)
		}
		return h.relayInputRequired(req, u, p.Name, raw)
	}
	return &result{relayed: res, upstream: u.ns}, nil
}

// checkToolHeaders checks the Mcp-Param-* headers of a 2026-07-28 call
// against the tool's schema in the upstream's (cached) list. When the
// list cannot be had, the call goes on unchecked: the body is what the
// upstream acts on, and the call itself reports the upstream's failure.
func (h *Handler) checkToolHeaders(ctx context.Context, req *request, u *upstreamView, tool string, args json.RawMessage) *rpcError {
	list, err := h.upstreamTools(ctx, u)
	if err != nil {
		return nil
	}
	if b := list.headers[tool]; b != nil {
		return checkParamHeaders(req.header, b, args)
	}
	return nil
}

// upstreamFailure turns an upstream error into the client's answer: the
// upstream's own JSON-RPC error as it is, or an error naming the upstream
// when it refused the proxy's credentials, could not be reached or did
// not answer in time.
func (h *Handler) upstreamFailure(ctx context.Context, req *request, u *upstreamView, err error) *rpcError {
	return h.failure(ctx, req, u, err).from(u)
}

func (h *Handler) failure(ctx context.Context, req *request, u *upstreamView, err error) *rpcError {
	if errors.Is(err, upstream.ErrUnauthorized) {
		h.log.WarnContext(ctx, "upstream needs re-authorisation", "upstream", u.ns, "authType", string(u.up.AuthType),
			"instance", req.view.inst.ID, "requestId", req.requestID, "error", err.Error())
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
		if jerr.Code == mcp.CodeURLElicitationRequired && req.epoch.stateless {
			// Its data are URL-mode elicitations, which a client acts on
			// as on input requests (inputrequired.go).
			var url inputAsk
			url.Method, url.Params.Mode = "elicitation/create", "url"
			if e := missingInputs(req, u, []inputAsk{url}); e != nil {
				return e
			}
		}
		e := newError(http.StatusOK, jerr.Code, jerr.Message)
		if len(jerr.Data) > 0 {
			e.data = jerr.Data
		}
		return e
	}
	var tooLarge *budget.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		h.log.WarnContext(ctx, "upstream message over the limit", "upstream", u.ns, "instance", req.view.inst.ID,
			"requestId", req.requestID, "limit", tooLarge.Limit)
		return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s sent a message larger than %d bytes, the proxy's limit (UPSTREAM_MAX_MESSAGE_BYTES)", u.ns, tooLarge.Limit))
	case errors.Is(err, budget.ErrBusy):
		return busy()
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		e := newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s did not answer within the request deadline", u.ns))
		e.timeout = true
		return e
	}
	h.log.WarnContext(ctx, "upstream call failed", "upstream", u.ns, "instance", req.view.inst.ID,
		"requestId", req.requestID, "error", err.Error())
	if errors.Is(err, upstream.ErrCommandNotFound) {
		return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s is unavailable: its command is not installed where the proxy runs", u.ns))
	}
	return newError(http.StatusOK, codeUpstream, fmt.Sprintf("upstream %s is unavailable", u.ns))
}
