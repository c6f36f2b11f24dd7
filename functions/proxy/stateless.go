package proxy

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// Protocol 2026-07-28 has no initialize handshake and no session: every
// request carries its version and the client's capabilities in
// params._meta, repeats the version in the MCP-Protocol-Version header and
// its method (and for tools/call the tool's name) in Mcp-Method / Mcp-Name.
// Every result carries resultType; list results also ttlMs and cacheScope.

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

func (h *Handler) discover(ctx context.Context, req *request) (*result, *rpcError) {
	caps, e := h.capabilities(ctx, req)
	if e != nil {
		return nil, e
	}
	res := &mcp.DiscoverResult{
		Meta:              h.serverMeta(),
		Cacheable:         h.cacheHint(),
		SupportedVersions: wire.Versions,
		Capabilities:      caps,
		Instructions:      instructions(req.caller),
	}
	res.ResultType = "complete"
	return valueOf(res)
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
