package proxy

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// An epoch is the protocol versions that share one set of methods and
// rules: the versions with an initialize handshake (2025-03-26 to
// 2025-11-25), and from 2026-07-28 the stateless ones. Adding a protocol
// version is a new table here and, at most, a middleware.
type epoch struct {
	methods map[string]methodFunc
	// middleware wraps every method of the epoch, outermost first.
	middleware []func(*Handler) middleware
	// status is the HTTP status of an error answer of the epoch, for a
	// single-message request.
	status func(e *rpcError) int
	// stateless: 2026-07-28 and later, whose results carry resultType
	// and whose tool calls repeat arguments in Mcp-Param headers.
	stateless bool
}

// sessionEpoch is 2025-03-26 to 2025-11-25: initialize, a session the
// proxy does not keep, and notifications/cancelled.
var sessionEpoch = epoch{
	methods: map[string]methodFunc{
		"initialize":               (*Handler).initialize,
		"ping":                     ping,
		"tools/list":               (*Handler).listTools,
		"tools/call":               (*Handler).callTool,
		"resources/list":           (*Handler).listResources,
		"resources/templates/list": (*Handler).listResourceTemplates,
		"resources/read":           (*Handler).readResource,
		"prompts/list":             (*Handler).listPrompts,
		"prompts/get":              (*Handler).getPrompt,
		"completion/complete":      (*Handler).complete,
		"logging/setLevel":         (*Handler).setLevel,
	},
	middleware: []func(*Handler) middleware{(*Handler).recovered, (*Handler).cancellable},
	status:     func(e *rpcError) int { return e.status },
}

// statelessEpoch is 2026-07-28: no initialize, ping or logging/setLevel,
// server/discover instead; each request names its version and the
// client's capabilities in _meta and repeats its method in headers.
var statelessEpoch = epoch{
	methods: map[string]methodFunc{
		"server/discover":          (*Handler).discover,
		"tools/list":               (*Handler).listTools,
		"tools/call":               (*Handler).callTool,
		"resources/list":           (*Handler).listResources,
		"resources/templates/list": (*Handler).listResourceTemplates,
		"resources/read":           (*Handler).readResource,
		"prompts/list":             (*Handler).listPrompts,
		"prompts/get":              (*Handler).getPrompt,
		"completion/complete":      (*Handler).complete,
		"tasks/get":                (*Handler).task,
		"tasks/update":             (*Handler).task,
		"tasks/cancel":             (*Handler).task,
	},
	middleware: []func(*Handler) middleware{(*Handler).recovered, checkStateless},
	status:     statelessStatus,
	stateless:  true,
}

// epochOf is the epoch of a message: stateless when the header or the
// message's _meta names 2026-07-28 or later.
func epochOf(version string, params *requestParams) *epoch {
	if wire.Stateless(version) || params.protocolVersion() != "" {
		return &statelessEpoch
	}
	return &sessionEpoch
}

// handlers are an epoch's methods with its middleware around each.
type handlers map[string]methodHandler

func (h *Handler) handlersOf(e *epoch) handlers {
	out := handlers{}
	for name, fn := range e.methods {
		next := methodHandler(func(ctx context.Context, req *request) (*result, *rpcError) { return fn(h, ctx, req) })
		for i := len(e.middleware) - 1; i >= 0; i-- {
			next = e.middleware[i](h)(next)
		}
		out[name] = next
	}
	return out
}

func ping(*Handler, context.Context, *request) (*result, *rpcError) { return valueOf(struct{}{}) }

// headerVersion reads MCP-Protocol-Version. A missing header is allowed
// (initialize carries none, and 2025-03-26 clients never send it). An
// unsupported older version is refused with 400 here; one that sorts at or
// after 2026-07-28 is refused per request with the structured -32022 error
// of that protocol.
func headerVersion(r *http.Request) (string, *rpcError) {
	v := r.Header.Get("MCP-Protocol-Version")
	if v == "" || slices.Contains(wire.Versions, v) || wire.Stateless(v) {
		return v, nil
	}
	return "", newError(http.StatusBadRequest, codeInvalidRequest,
		"unsupported MCP-Protocol-Version "+v+" (supported: "+strings.Join(wire.Versions, ", ")+")")
}

// negotiate answers a client's requested version: the same when the proxy
// speaks it, else the proxy's latest (the client then decides whether it
// can go on).
func negotiate(requested string) string {
	if slices.Contains(wire.Versions, requested) {
		return requested
	}
	return wire.Versions[0]
}

// checkStateless validates a 2026-07-28 request's version and headers, in
// the order the protocol gives their errors.
func checkStateless(*Handler) middleware {
	return func(next methodHandler) methodHandler {
		return func(ctx context.Context, req *request) (*result, *rpcError) {
			if e := statelessHeaders(req); e != nil {
				return nil, e
			}
			return next(ctx, req)
		}
	}
}

func statelessHeaders(req *request) *rpcError {
	headerVersion := req.header.Get("MCP-Protocol-Version")
	params := req.decoded
	version := params.protocolVersion()
	var name, uri, task string
	if params != nil {
		name, uri, task = params.Name, params.URI, params.TaskID
	}
	switch {
	case headerVersion == "":
		return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the MCP-Protocol-Version header is required")
	case version == "":
		return newError(http.StatusBadRequest, codeInvalidParams, "params._meta is missing "+mcp.MetaKeyProtocolVersion)
	case headerVersion != version:
		return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the MCP-Protocol-Version header does not match params._meta")
	case !params.hasClientCapabilities():
		return newError(http.StatusBadRequest, codeInvalidParams, "params._meta is missing "+mcp.MetaKeyClientCapabilities)
	case !slices.Contains(wire.Versions, version):
		e := newError(http.StatusBadRequest, mcp.CodeUnsupportedProtocolVersion, "unsupported protocol version "+version)
		e.data = &mcp.UnsupportedProtocolVersionData{Supported: wire.Versions, Requested: version}
		return e
	}
	if got := req.header.Get("Mcp-Method"); got != req.method {
		return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Method header must be "+req.method)
	}
	switch req.method {
	case "tools/call", "prompts/get":
		if req.header.Get("Mcp-Name") != name {
			return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Name header must be params.name")
		}
	case "resources/read":
		if req.header.Get("Mcp-Name") != uri {
			return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Name header must be params.uri")
		}
	case "tasks/get", "tasks/update", "tasks/cancel":
		if req.header.Get("Mcp-Name") != task {
			return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Name header must be params.taskId")
		}
	}
	return nil
}

// statelessStatus is the HTTP status of a 2026-07-28 error response.
func statelessStatus(e *rpcError) int {
	switch e.code {
	case codeMethodNotFound:
		return http.StatusNotFound
	case codeInvalidParams, mcp.CodeHeaderMismatch, mcp.CodeMissingRequiredClientCapabilities, mcp.CodeUnsupportedProtocolVersion:
		return http.StatusBadRequest
	}
	return e.status
}

// cancellable makes a tools/call of the session epoch cancellable by the
// client's notifications/cancelled (cancel.go). From 2026-07-28 a closed
// request says so, which ctx carries already.
func (h *Handler) cancellable() middleware {
	return func(next methodHandler) methodHandler {
		return func(ctx context.Context, req *request) (*result, *rpcError) {
			if req.method != "tools/call" {
				return next(ctx, req)
			}
			// A request of one message is cancelled by ending its own
			// context; a member of a batch gets a context of its own, so
			// that cancelling it ends no other member.
			cancel := req.cancel
			var own context.CancelFunc
			if cancel == nil {
				ctx, own = context.WithCancel(ctx)
				cancel = own
			}
			call := h.calls.track(req.key.ID, req.id, cancel)
			end := func() {
				h.calls.untrack(call)
				if own != nil {
					own()
				}
			}
			handedOn := false
			defer func() {
				// Also when next panics: a call left tracked would stay
				// so for the life of the process.
				if !handedOn {
					end()
				}
			}()
			res, e := next(ctx, req)
			if res == nil || res.relayed == nil {
				return res, e
			}
			// The result is read from the upstream as it is written: the
			// call stays cancellable until then.
			out := *res
			out.release = func() {
				if res.release != nil {
					res.release()
				}
				end()
			}
			handedOn = true
			return &out, nil
		}
	}
}
