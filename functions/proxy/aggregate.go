package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/yosida95/uritemplate/v3"

	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// On the aggregated route (/mcp, /mcp/{instanceId}) the proxy serves the
// resources, prompts and completions of every upstream of the instance,
// like its tools:
//
//   - prompt names are prefixed "{namespace}__", as tool names are, and
//     prompts/get routes by the prefix;
//   - resource URIs and templates are kept as the upstreams list them, and
//     resources/read routes by URI: to the first upstream, in the
//     instance's order (server name, then config ID), that lists the URI,
//     else the first whose template matches it, else, when only one
//     upstream serves resources at all, to that one; anything else is
//     -32002 "resource not found". A URI (or template) listed by two
//     upstreams (two copies of one server) is listed once, and read from
//     the first of them;
//   - completion/complete routes a prompt reference by its prefix and a
//     resource reference by its template, as resources/read does;
//   - logging/setLevel goes to every upstream that declares logging.
//
// Tool groups select tools only: every upstream of the instance offers
// all of its resources and prompts. Each list is returned whole in one
// page; an upstream that fails is left out of it and logged.

// codeResourceNotFound is MCP's error for a URI no upstream serves.
const codeResourceNotFound = -32002

// catalog is what an upstream offers besides tools, kept per process for
// as long as tool lists are.
type catalog struct {
	bytes     int64 // the lists' size as JSON, which the catalog cache weighs
	caps      *mcp.ServerCapabilities
	prompts   []*mcp.Prompt
	resources []*mcp.Resource
	templates []*mcp.ResourceTemplate
	matchers  []*uritemplate.Template // templates[i] compiled; nil when it does not parse
}

// catalog loads u's capabilities, prompts, resources and templates
// (through the catalog cache), following pagination.
func (h *Handler) catalog(ctx context.Context, u *upstreamView) (*catalog, error) {
	c, _, err := h.catalogCache.Get(ctx, u.key, func(ctx context.Context) (*catalog, error) {
		var c *catalog
		err := h.pool.Do(ctx, u.up, upstream.Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
			var err error
			c, err = loadCatalog(ctx, s)
			return err
		})
		if err != nil {
			return nil, err
		}
		c.bytes, err = listBytes(u, "prompts, resources and templates", []any{c.prompts, c.resources, c.templates}, h.opts.MaxListBytes)
		return c, err
	})
	return c, err
}

func loadCatalog(ctx context.Context, s *mcp.ClientSession) (*catalog, error) {
	c := &catalog{caps: &mcp.ServerCapabilities{}}
	if r := s.InitializeResult(); r != nil && r.Capabilities != nil {
		c.caps = r.Capabilities
	}
	var err error
	if c.caps.Prompts != nil {
		if c.prompts, err = upstream.ListPrompts(ctx, s); err != nil {
			return nil, err
		}
	}
	if c.caps.Resources != nil {
		if c.resources, err = upstream.ListResources(ctx, s); err != nil {
			return nil, err
		}
		c.templates, err = upstream.ListResourceTemplates(ctx, s)
		// Templates are optional: a server with resources but without
		// templates may not know the method.
		if jerr := (*jsonrpc.Error)(nil); errors.As(err, &jerr) && jerr.Code == codeMethodNotFound {
			err = nil
		}
		if err != nil {
			return nil, err
		}
		c.matchers = make([]*uritemplate.Template, len(c.templates))
		for i, t := range c.templates {
			c.matchers[i], _ = uritemplate.New(t.URITemplate)
		}
	}
	return c, nil
}

// matches reports whether one of c's templates matches uri.
func (c *catalog) matches(uri string) bool {
	for _, m := range c.matchers {
		if m != nil && m.Regexp().MatchString(uri) {
			return true
		}
	}
	return false
}

// catalogs loads the catalog of every upstream of the instance in
// parallel; an upstream that fails has a nil entry and is logged.
func (h *Handler) catalogs(ctx context.Context, req *request) []*catalog {
	ups := req.view.ups
	out := make([]*catalog, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			c, err := h.catalog(ctx, u)
			if err != nil {
				h.log.WarnContext(ctx, "upstream left out of "+req.method, "upstream", u.ns,
					"instance", req.view.inst.ID, "requestId", req.requestID, "error", err.Error())
				return
			}
			out[i] = c
		})
	}
	wg.Wait()
	return out
}

// aggregatedCapabilities are tools, and each of resources, prompts,
// completions and logging that some upstream of the instance declares.
func (h *Handler) aggregatedCapabilities(ctx context.Context, req *request) *mcp.ServerCapabilities {
	caps := &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}}
	for _, c := range h.catalogs(ctx, req) {
		if c != nil {
			addCapabilities(caps, c.caps)
		}
	}
	return caps
}

// addCapabilities adds to caps what declared has of what the proxy
// relays, without subscriptions or change notifications: they need a
// stream the stateless proxy does not keep.
func addCapabilities(caps, declared *mcp.ServerCapabilities) {
	if declared.Resources != nil {
		caps.Resources = &mcp.ResourceCapabilities{}
	}
	if declared.Prompts != nil {
		caps.Prompts = &mcp.PromptCapabilities{}
	}
	if declared.Completions != nil {
		caps.Completions = &mcp.CompletionCapabilities{}
	}
	if declared.Logging != nil {
		caps.Logging = &mcp.LoggingCapabilities{}
	}
	if _, ok := declared.Extensions[tasksExtension]; ok {
		// Its methods are of 2026-07-28: initialize leaves it out.
		caps.AddExtension(tasksExtension, map[string]any{})
	}
}

// wholeList checks the cursor of a list request: the aggregated lists are
// one page, so no cursor is valid.
func wholeList(params json.RawMessage, p interface{ cursor() string }) *rpcError {
	if e := decodeParams(params, p); e != nil {
		return e
	}
	if p.cursor() != "" {
		return newError(http.StatusOK, codeInvalidParams, "invalid cursor")
	}
	return nil
}

type listParams struct {
	Cursor string `json:"cursor,omitempty"`
}

func (p *listParams) cursor() string { return p.Cursor }

// listed completes a list result for the client's protocol version.
func (h *Handler) listed(req *request, meta *mcp.Meta, cache *mcp.Cacheable, setType func()) {
	*cache = h.cacheHint()
	if req.epoch.stateless {
		setType()
		*meta = h.serverMeta()
	}
}

func (h *Handler) listPrompts(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, (*mcp.ClientSession).ListPrompts, &mcp.ListPromptsParams{}, func(r *mcp.ListPromptsResult) *mcp.Cacheable { return &r.Cacheable })
	}
	if e := wholeList(req.params, &listParams{}); e != nil {
		return nil, e
	}
	out := &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
	for i, c := range h.catalogs(ctx, req) {
		if c == nil {
			continue
		}
		for _, p := range c.prompts {
			renamed := *p
			renamed.Name = req.view.ups[i].prefix() + p.Name
			out.Prompts = append(out.Prompts, &renamed)
		}
	}
	h.listed(req, &out.Meta, &out.Cacheable, func() { out.ResultType = "complete" })
	return valueOf(out)
}

func (h *Handler) listResources(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, (*mcp.ClientSession).ListResources, &mcp.ListResourcesParams{}, func(r *mcp.ListResourcesResult) *mcp.Cacheable { return &r.Cacheable })
	}
	if e := wholeList(req.params, &listParams{}); e != nil {
		return nil, e
	}
	out := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
	seen := map[string]bool{}
	for _, c := range h.catalogs(ctx, req) {
		if c == nil {
			continue
		}
		for _, r := range c.resources {
			if !seen[r.URI] {
				seen[r.URI] = true
				out.Resources = append(out.Resources, r)
			}
		}
	}
	h.listed(req, &out.Meta, &out.Cacheable, func() { out.ResultType = "complete" })
	return valueOf(out)
}

func (h *Handler) listResourceTemplates(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, (*mcp.ClientSession).ListResourceTemplates, &mcp.ListResourceTemplatesParams{}, func(r *mcp.ListResourceTemplatesResult) *mcp.Cacheable { return &r.Cacheable })
	}
	if e := wholeList(req.params, &listParams{}); e != nil {
		return nil, e
	}
	out := &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
	seen := map[string]bool{}
	for _, c := range h.catalogs(ctx, req) {
		if c == nil {
			continue
		}
		for _, t := range c.templates {
			if !seen[t.URITemplate] {
				seen[t.URITemplate] = true
				out.ResourceTemplates = append(out.ResourceTemplates, t)
			}
		}
	}
	h.listed(req, &out.Meta, &out.Cacheable, func() { out.ResultType = "complete" })
	return valueOf(out)
}

// resourceOwner is the upstream that serves uri (see the rules at the top
// of this file).
func (h *Handler) resourceOwner(ctx context.Context, req *request, uri string) (*upstreamView, *rpcError) {
	cats := h.catalogs(ctx, req)
	for i, c := range cats {
		if c != nil {
			for _, r := range c.resources {
				if r.URI == uri {
					return req.view.ups[i], nil
				}
			}
		}
	}
	var serving []*upstreamView
	for i, c := range cats {
		if c != nil && c.matches(uri) {
			return req.view.ups[i], nil
		}
		if c != nil && c.caps.Resources != nil {
			serving = append(serving, req.view.ups[i])
		}
	}
	if len(serving) == 1 {
		return serving[0], nil
	}
	e := newError(http.StatusOK, codeResourceNotFound, "resource not found: "+uri)
	e.data = map[string]string{"uri": uri}
	return nil, e
}

// templateOwner is the first upstream that lists the template (or a
// resource with that URI) a completion refers to.
func (h *Handler) templateOwner(ctx context.Context, req *request, uri string) (*upstreamView, *rpcError) {
	for i, c := range h.catalogs(ctx, req) {
		if c == nil {
			continue
		}
		for _, t := range c.templates {
			if t.URITemplate == uri {
				return req.view.ups[i], nil
			}
		}
		for _, r := range c.resources {
			if r.URI == uri {
				return req.view.ups[i], nil
			}
		}
	}
	return nil, newError(http.StatusOK, codeInvalidParams, "unknown resource template: "+uri)
}

// promptOwner splits a prompt name as the client sees it.
func (h *Handler) promptOwner(req *request, name string) (*upstreamView, string, *rpcError) {
	ns, prompt, ok := splitToolName(name)
	u := req.view.byNS[ns]
	if !ok || u == nil {
		return nil, "", newError(http.StatusOK, codeInvalidParams, "unknown prompt: "+name)
	}
	return u, prompt, nil
}

func (h *Handler) readResource(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, (*mcp.ClientSession).ReadResource, &mcp.ReadResourceParams{}, func(r *mcp.ReadResourceResult) *mcp.Cacheable { return &r.Cacheable })
	}
	p := &mcp.ReadResourceParams{}
	if e := decodeParams(req.params, p); e != nil {
		return nil, e
	}
	if p.URI == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "resources/read: uri is required")
	}
	u, e := h.resourceOwner(ctx, req, p.URI)
	if e != nil {
		return nil, e
	}
	return relayTo(ctx, h, req, u, (*mcp.ClientSession).ReadResource, p, func(r *mcp.ReadResourceResult) *mcp.Cacheable { return &r.Cacheable })
}

func (h *Handler) getPrompt(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, (*mcp.ClientSession).GetPrompt, &mcp.GetPromptParams{}, nil)
	}
	p := &mcp.GetPromptParams{}
	if e := decodeParams(req.params, p); e != nil {
		return nil, e
	}
	if p.Name == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "prompts/get: name is required")
	}
	u, name, e := h.promptOwner(req, p.Name)
	if e != nil {
		return nil, e
	}
	p.Name = name
	return relayTo(ctx, h, req, u, (*mcp.ClientSession).GetPrompt, p, nil)
}

func (h *Handler) complete(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, (*mcp.ClientSession).Complete, &mcp.CompleteParams{}, nil)
	}
	p := &mcp.CompleteParams{}
	if e := decodeParams(req.params, p); e != nil {
		return nil, e
	}
	if p.Ref == nil {
		return nil, newError(http.StatusOK, codeInvalidParams, "completion/complete: ref is required")
	}
	var u *upstreamView
	var e *rpcError
	ref := *p.Ref
	switch ref.Type {
	case "ref/prompt":
		u, ref.Name, e = h.promptOwner(req, ref.Name)
	case "ref/resource":
		u, e = h.templateOwner(ctx, req, ref.URI)
	default:
		e = newError(http.StatusOK, codeInvalidParams, "completion/complete: unknown ref type "+ref.Type)
	}
	if e != nil {
		return nil, e
	}
	p.Ref = &ref
	return relayTo(ctx, h, req, u, (*mcp.ClientSession).Complete, p, nil)
}

// setLevel sends logging/setLevel to the route's upstream, or to every upstream of the instance
// that declares logging. The level is state of the proxy's shared session
// with each upstream: it holds for every client this process serves with
// the same upstream config, until set again or the session ends.
func (h *Handler) setLevel(ctx context.Context, req *request) (*result, *rpcError) {
	if req.only != nil {
		return relayOnly(ctx, h, req, setLevelOf, &mcp.SetLoggingLevelParams{}, nil)
	}
	p := &mcp.SetLoggingLevelParams{}
	if e := decodeParams(req.params, p); e != nil {
		return nil, e
	}
	if p.Level == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "logging/setLevel: level is required")
	}
	p.SetMeta(forwardedMeta(p.GetMeta()))
	cats := h.catalogs(ctx, req)
	var wg sync.WaitGroup
	for i, c := range cats {
		if c == nil || c.caps.Logging == nil {
			continue
		}
		u := req.view.ups[i]
		wg.Go(func() {
			err := h.pool.Do(ctx, u.up, upstream.Idempotent, func(ctx context.Context, s *mcp.ClientSession) error {
				return s.SetLoggingLevel(ctx, p)
			})
			if err != nil {
				h.log.WarnContext(ctx, "logging/setLevel not applied", "upstream", u.ns,
					"instance", req.view.inst.ID, "requestId", req.requestID, "error", err.Error())
			}
		})
	}
	wg.Wait()
	return valueOf(struct{}{})
}
