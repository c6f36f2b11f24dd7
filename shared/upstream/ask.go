package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// An upstream may send its client requests during a tools/call:
// elicitation/create, sampling/createMessage, roots/list. The pool's
// client declares those capabilities to every upstream, and hands each
// such request to the Asker of the call it belongs to, which relays it to
// the proxy's own client (or refuses it) and returns the answer.
//
// Which call a request belongs to depends on the transport:
//   - Streamable HTTP, posted by the pool (direct.go): a request that
//     comes on the call's own response stream is the call's;
//   - SSE and stdio, and anything that comes on a Streamable HTTP
//     session's standalone stream: nothing in the protocol ties such a
//     request to a call. It goes to the call in flight on its session
//     when there is exactly one (sessions are per config, so that call is
//     the same tenant's); with none or several it is refused.

// Asker relays a request of the upstream to the client and returns the
// client's result, or an error; a *jsonrpc.Error reaches the upstream as
// it is, as the client's own error or as the proxy's refusal.
type Asker interface {
	Ask(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error)
}

// askable reports whether method is a request the pool relays to a
// client.
func askable(method string) bool {
	switch method {
	case "elicitation/create", "sampling/createMessage", "roots/list":
		return true
	}
	return false
}

// clientCapabilities are what the pool's client declares to upstreams:
// all a client may take, since the proxy asks its own client, or refuses.
func clientCapabilities() *mcp.ClientCapabilities {
	return &mcp.ClientCapabilities{
		RootsV2:     &mcp.RootCapabilities{},
		Sampling:    &mcp.SamplingCapabilities{},
		Elicitation: &mcp.ElicitationCapabilities{Form: &mcp.FormElicitationCapabilities{}, URL: &mcp.URLElicitationCapabilities{}},
	}
}

// relayAsk hands req, sent on a call's stream, to ask, and posts the
// answer to the upstream within the session. A call that ended first
// leaves the upstream's request unanswered: the call is cancelled.
func (p *Pool) relayAsk(ctx context.Context, up tenant.Upstream, s *mcp.ClientSession, version string, req *jsonrpc.Request, ask Asker) {
	result, err := ask.Ask(ctx, req.Method, req.Params)
	if ctx.Err() != nil {
		return
	}
	resp := &jsonrpc.Response{ID: req.ID, Result: result}
	if err != nil {
		resp = &jsonrpc.Response{ID: req.ID, Error: askError(err)}
	}
	if err := p.send(up, s, version, resp); err != nil {
		p.log.Warn("the client's answer did not reach the upstream", "upstream", up.Name, "method", req.Method, "error", err.Error())
	}
}

// askError is the JSON-RPC error an upstream gets for a request the
// client did not answer.
func askError(err error) *jsonrpc.Error {
	var jerr *jsonrpc.Error
	if errors.As(err, &jerr) {
		return jerr
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the client did not answer"}
}

// sdkCall is a call in flight through the SDK client, with what takes
// its upstream's requests.
type sdkCall struct {
	// ctx is the call's: a request relayed for it waits no longer.
	ctx context.Context
	ask Asker
	// asked counts the requests relayed for the call: beyond
	// maxRefusals they are refused, as on a call's own stream.
	asked atomic.Int32
}

// track records a call on s until the returned function is called.
func (p *Pool) track(ctx context.Context, s *mcp.ClientSession, ask Asker) func() {
	c := &sdkCall{ctx: ctx, ask: ask}
	p.inflightMu.Lock()
	if p.inflight == nil {
		p.inflight = map[*mcp.ClientSession]map[*sdkCall]bool{}
	}
	calls := p.inflight[s]
	if calls == nil {
		calls = map[*sdkCall]bool{}
		p.inflight[s] = calls
	}
	calls[c] = true
	p.inflightMu.Unlock()
	return func() {
		p.inflightMu.Lock()
		delete(calls, c)
		if len(calls) == 0 {
			delete(p.inflight, s)
		}
		p.inflightMu.Unlock()
	}
}

// soleCall is the one call in flight on s, nil when there are none or
// several.
func (p *Pool) soleCall(s *mcp.ClientSession) *sdkCall {
	p.inflightMu.Lock()
	defer p.inflightMu.Unlock()
	calls := p.inflight[s]
	if len(calls) != 1 {
		return nil
	}
	for c := range calls {
		return c
	}
	return nil
}

// asks is the pool client's middleware for the upstream's requests to
// the client that reach the SDK: relayed to the session's one call in
// flight, refused otherwise.
func (p *Pool) asks(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if !askable(method) {
			return next(ctx, method, req)
		}
		s, _ := req.GetSession().(*mcp.ClientSession)
		call := p.soleCall(s)
		if call == nil || call.ask == nil || call.asked.Add(1) > maxRefusals {
			return nil, refusal(method)
		}
		params, err := json.Marshal(req.GetParams())
		if err != nil {
			return nil, err
		}
		raw, err := call.ask.Ask(call.ctx, method, params)
		if err != nil {
			return nil, askError(err)
		}
		var res mcp.Result
		switch method {
		case "elicitation/create":
			res = &mcp.ElicitResult{}
		case "sampling/createMessage":
			res = &mcp.CreateMessageWithToolsResult{}
		default:
			res = &mcp.ListRootsResult{}
		}
		if err := json.Unmarshal(raw, res); err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the client's answer to " + method + " is not a valid result"}
		}
		return res, nil
	}
}

// refusal is the answer to a request no client of the proxy may take.
func refusal(method string) *jsonrpc.Error {
	return &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "mcp-proxy does not relay " + method + " to its clients"}
}
