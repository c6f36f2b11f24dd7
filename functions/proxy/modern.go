package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// Protocol 2026-07-28 has no initialize handshake and no session: every
// request carries its version and the client's capabilities in
// params._meta, repeats the version in the MCP-Protocol-Version header and
// its method (and for tools/call the tool's name) in Mcp-Method / Mcp-Name.
// Every result carries resultType; list results also ttlMs and cacheScope.

// requestParams is what the proxy reads of a request's params, in one
// decode: the protocol checks need the _meta that selects the protocol and
// the name Mcp-Name must repeat; tools/call needs name, arguments and the
// _meta it forwards, kept as raw JSON.
type requestParams struct {
	Name      string                     `json:"name"`
	URI       string                     `json:"uri"`
	Arguments json.RawMessage            `json:"arguments"`
	Meta      map[string]json.RawMessage `json:"_meta"`
}

// decodeRequestParams reads params; nil when they are absent or do not
// decode (malformed params are the method's to report).
func decodeRequestParams(params json.RawMessage) *requestParams {
	// A map made here is filled in place; one the decoder makes is made
	// for 64 keys, where _meta has three or four.
	p := requestParams{Meta: make(map[string]json.RawMessage, 4)}
	if len(params) == 0 || wire.Unmarshal(params, &p) != nil {
		return nil
	}
	return &p
}

// protocolVersion is the version params._meta names, "" for none.
func (p *requestParams) protocolVersion() string {
	var v string
	if p != nil {
		json.Unmarshal(p.Meta[mcp.MetaKeyProtocolVersion], &v)
	}
	return v
}

// hasClientCapabilities reports whether params._meta declares the
// client's capabilities as an object.
func (p *requestParams) hasClientCapabilities() bool {
	if p == nil {
		return false
	}
	c := bytes.TrimSpace(p.Meta[mcp.MetaKeyClientCapabilities])
	return len(c) > 0 && c[0] == '{'
}

// modernMethods are the methods of 2026-07-28: initialize, ping and the
// session-bound methods are gone, server/discover is new.
var modernMethods = merge(map[string]methodFunc{
	"server/discover": (*Handler).discover,
	"tools/list":      (*Handler).listTools,
	"tools/call":      (*Handler).callTool,
}, relayedMethods)

// checkModern validates a 2026-07-28 request's version and headers, in the
// order the protocol gives their errors.
func checkModern(x *exchange, method string, params *requestParams) *rpcError {
	headerVersion := x.header.Get("MCP-Protocol-Version")
	version := params.protocolVersion()
	var name, uri string
	if params != nil {
		name, uri = params.Name, params.URI
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
	case !slices.Contains(supportedVersions, version):
		e := newError(http.StatusBadRequest, mcp.CodeUnsupportedProtocolVersion, "unsupported protocol version "+version)
		e.data = &mcp.UnsupportedProtocolVersionData{Supported: supportedVersions, Requested: version}
		return e
	}
	if got := x.header.Get("Mcp-Method"); got != method {
		return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Method header must be "+method)
	}
	switch method {
	case "tools/call", "prompts/get":
		if x.header.Get("Mcp-Name") != name {
			return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Name header must be params.name")
		}
	case "resources/read":
		if x.header.Get("Mcp-Name") != uri {
			return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, "the Mcp-Name header must be params.uri")
		}
	}
	return nil
}

// modernStatus is the HTTP status of a 2026-07-28 error response.
func modernStatus(code int64, status int) int {
	switch code {
	case codeMethodNotFound:
		return http.StatusNotFound
	case codeInvalidParams, mcp.CodeHeaderMismatch, mcp.CodeMissingRequiredClientCapabilities, mcp.CodeUnsupportedProtocolVersion:
		return http.StatusBadRequest
	}
	return status
}

// withResultType adds "resultType":"complete" to an encoded result object
// that lacks it. The SDK's CallToolResult keeps that field unexported, so
// a tool result relayed from an older upstream arrives without it.
func withResultType(raw json.RawMessage) json.RawMessage {
	if len(raw) < 2 || raw[0] != '{' {
		return raw
	}
	if bytes.Contains(raw, []byte(`"resultType"`)) {
		// Present somewhere: decide on the top level exactly.
		var top map[string]json.RawMessage
		if json.Unmarshal(raw, &top) != nil {
			return raw
		}
		if _, ok := top["resultType"]; ok {
			return raw
		}
	}
	out := make([]byte, 0, len(raw)+26)
	out = append(out, `{"resultType":"complete"`...)
	if rest := bytes.TrimSpace(raw[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, raw[1:]...)
}

// serverMeta is the _meta the proxy puts on results it makes itself.
func (h *Handler) serverMeta() mcp.Meta {
	return mcp.Meta{mcp.MetaKeyServerInfo: h.serverInfo()}
}

// cacheHint tells clients how long they may keep a list: as long as the
// proxy keeps the upstream lists, and only for this caller (each API key
// sees its own instance).
func (h *Handler) cacheHint() mcp.Cacheable {
	return mcp.Cacheable{TTLMs: int(h.opts.ToolsTTL.Milliseconds()), CacheScope: "private"}
}

func (h *Handler) discover(ctx context.Context, x *exchange, _ json.RawMessage) (any, *rpcError) {
	caps, e := h.capabilities(ctx, x)
	if e != nil {
		return nil, e
	}
	res := &mcp.DiscoverResult{
		Meta:              h.serverMeta(),
		Cacheable:         h.cacheHint(),
		SupportedVersions: supportedVersions,
		Capabilities:      caps,
		Instructions:      h.instructions(x),
	}
	res.ResultType = "complete"
	return res, nil
}

// forwardedMeta is the client's _meta (decoded or raw) without the
// protocol keys of its own connection to the proxy: the proxy's session
// with the upstream has its own version and capabilities, which the
// proxy adds itself. The client's progress token is left out too: only a
// call whose progress the proxy relays sends one, its own or the
// client's on the call's own stream (upstream.Call).
func forwardedMeta[M ~map[string]V, V any](m M) M {
	var out M
	for k, v := range m {
		switch k {
		case mcp.MetaKeyProtocolVersion, mcp.MetaKeyClientCapabilities, mcp.MetaKeyClientInfo, mcp.MetaKeyLogLevel, "progressToken":
			continue
		}
		if out == nil {
			out = M{}
		}
		out[k] = v
	}
	return out
}
