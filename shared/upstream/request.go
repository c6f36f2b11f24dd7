package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// ErrNotStateless is returned by Request for an upstream the pool does not
// speak 2026-07-28 to over Streamable HTTP.
var ErrNotStateless = errors.New("the upstream is not reached with protocol 2026-07-28 over Streamable HTTP")

// Request sends a 2026-07-28 request the SDK's client has no method for
// (the tasks extension's tasks/get, tasks/update, tasks/cancel) to up,
// with name as its Mcp-Name header, and returns the upstream's result,
// read whole within MaxMessageBytes. params are sent as they are, but for
// their _meta: meta (forwarded as it is) with the session's version, caps
// as the client capabilities (nil for none) and the pool as the client.
// An error answer is a *jsonrpc.Error (see Answer). retry says whether
// it may be sent again on a new session.
func (p *Pool) Request(ctx context.Context, up tenant.Upstream, retry Retry, method, name string, params, meta map[string]json.RawMessage, caps json.RawMessage) ([]byte, error) {
	if !p.direct(up) {
		return nil, fmt.Errorf("upstream %s: %w", up.Name, ErrNotStateless)
	}
	var out []byte
	err := p.Do(ctx, up, retry, func(ctx context.Context, s *mcp.ClientSession) error {
		version := sessionVersion(s)
		if !wire.Stateless(version) {
			return fmt.Errorf("upstream %s: %w", up.Name, ErrNotStateless)
		}
		seq := strconv.FormatUint(p.callSeq.Add(1), 10)
		id, err := jsonrpc.MakeID("mcp-proxy-" + seq)
		if err != nil {
			return err
		}
		m := maps.Clone(meta)
		if m == nil {
			m = map[string]json.RawMessage{}
		}
		if len(caps) == 0 {
			caps = json.RawMessage(`{}`)
		}
		m[mcp.MetaKeyProtocolVersion], _ = json.Marshal(version)
		m[mcp.MetaKeyClientCapabilities] = caps
		m[mcp.MetaKeyClientInfo] = json.RawMessage(`{"name":"` + ClientName + `","version":"1"}`)
		ps := maps.Clone(params)
		if ps == nil {
			ps = map[string]json.RawMessage{}
		}
		if ps["_meta"], err = json.Marshal(m); err != nil {
			return err
		}
		encoded, err := json.Marshal(ps)
		if err != nil {
			return err
		}
		body := make([]byte, 0, 96+len(method)+len(encoded))
		body = append(body, `{"jsonrpc":"2.0","id":"mcp-proxy-`...)
		body = append(body, seq...)
		body = append(body, `","method":`...)
		if body, err = appendJSONString(body, method); err != nil {
			return err
		}
		body = append(append(append(body, `,"params":`...), encoded...), '}')
		req, err := p.newRequest(ctx, up, s, version, body, "")
		if err != nil {
			return err
		}
		req.Header.Set("Mcp-Method", method)
		req.Header.Set("Mcp-Name", name)
		res, err := p.post(ctx, up, s, version, id, req, nil, nil)
		if err != nil {
			return err
		}
		// The caller examines the answer (a task's input requests).
		res.examined = true
		out, err = p.ReadAll(ctx, res)
		return err
	})
	return out, err
}
