package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// --raw clients send each request as a plain HTTP POST, with no SDK and no
// initialize: the JSON-RPC message is written once per kind and only its
// id changes, and an answer is checked for its result (or error) without
// being decoded into the SDK's types. Each client keeps one keep-alive
// connection of its own. A 2026-07-28 client says its version and
// capabilities in every request's _meta and sends the Mcp-Method and
// Mcp-Name headers; an older one only the MCP-Protocol-Version header, as
// a client of a sessionless server (no Mcp-Session-Id) does.

// modernVersion is the first protocol version in which each request says
// who asks and in what version.
const modernVersion = "2026-07-28"

// rawClient is one --raw client.
type rawClient struct {
	c     *config
	http  *http.Client
	tr    *http.Transport
	seq   int64
	buf   bytes.Buffer
	kinds map[op]rawRequest
}

// rawRequest is a request of one kind, but for its id.
type rawRequest struct {
	head, tail []byte // the message before and after its id
	header     http.Header
}

func newRawClient(c *config) (*rawClient, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	rc := &rawClient{c: c, tr: tr, http: &http.Client{Transport: tr}, kinds: map[op]rawRequest{}}
	var meta []byte
	if c.protocol >= modernVersion {
		var err error
		meta, err = json.Marshal(map[string]any{
			mcp.MetaKeyProtocolVersion:    c.protocol,
			mcp.MetaKeyClientCapabilities: map[string]any{},
			mcp.MetaKeyClientInfo:         map[string]string{"name": "mcpload", "version": "1"},
		})
		if err != nil {
			return nil, err
		}
	}
	name, err := json.Marshal(c.tool)
	if err != nil {
		return nil, err
	}
	for _, o := range []op{opCall, opList} {
		method := "tools/list"
		params := []byte("{")
		if o == opCall {
			method = "tools/call"
			params = fmt.Appendf(params, `"name":%s,"arguments":%s`, name, c.rawArgs)
		}
		if meta != nil {
			if len(params) > 1 {
				params = append(params, ',')
			}
			params = append(append(params, `"_meta":`...), meta...)
		}
		params = append(params, '}')
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set("Accept", "application/json, text/event-stream")
		h.Set("MCP-Protocol-Version", c.protocol)
		if c.key != "" {
			h.Set("Authorization", "Bearer "+c.key)
		}
		if meta != nil {
			h.Set("Mcp-Method", method)
			if o == opCall {
				h.Set("Mcp-Name", c.tool)
			}
		}
		rc.kinds[o] = rawRequest{head: []byte(`{"jsonrpc":"2.0","id":`),
			tail: fmt.Appendf(nil, `,"method":%q,"params":%s}`, method, params), header: h}
	}
	return rc, nil
}

// rawAnswer is what a client checks of an answer.
type rawAnswer struct {
	Result *struct {
		IsError bool `json:"isError"`
	} `json:"result"`
	Error *jsonrpc.Error `json:"error"`
}

// statusError is an HTTP answer without a JSON-RPC response.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %.200s", e.status, e.body) }

func (rc *rawClient) do(ctx context.Context, o op) error {
	k := rc.kinds[o]
	rc.seq++
	body := make([]byte, 0, len(k.head)+20+len(k.tail))
	body = append(strconv.AppendInt(append(body, k.head...), rc.seq, 10), k.tail...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = k.header // read only by the transport, one request at a time
	resp, err := rc.http.Do(req)
	if err != nil {
		return err
	}
	rc.buf.Reset()
	_, err = rc.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	data := rc.buf.Bytes()
	if wire.MediaType(resp.Header.Get("Content-Type")) == "text/event-stream" {
		data = lastEvent(data)
	}
	var a rawAnswer
	if err := wire.Unmarshal(data, &a); err != nil || (a.Result == nil && a.Error == nil) {
		return &statusError{status: resp.StatusCode, body: string(data)}
	}
	switch {
	case a.Error != nil:
		return a.Error
	case resp.StatusCode != http.StatusOK:
		return &statusError{status: resp.StatusCode, body: string(data)}
	case a.Result.IsError:
		return errToolResult
	}
	return nil
}

// lastEvent is the data of an event stream's last event: the response
// comes after any notifications.
func lastEvent(stream []byte) []byte {
	var data []byte
	for _, line := range bytes.Split(stream, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimPrefix(v, []byte(" "))
		}
	}
	return data
}

func (rc *rawClient) close() { rc.tr.CloseIdleConnections() }
