package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// A request travels through three layers, each in a file of its own:
//
//   - front.go, the HTTP front: route, origin, content checks, the API key
//     and the body. It makes a caller, and a request of each JSON-RPC
//     message in the body;
//   - protocol.go, the method tables, one per protocol epoch, with the
//     middleware of each: a request goes to a method through them;
//   - respond.go, the answer: JSON, or an event stream, with an
//     upstream's large result relayed as it arrives.
//
// Methods are plain functions of a request that return a result or an
// error. They write nothing shared: the request log and the log line
// (requestlog.go) observe what the layers return.

// caller is who sent an HTTP request and to what: made once the request is
// authenticated, never changed after.
type caller struct {
	requestID string
	key       *tenant.Key
	view      *view
	only      *upstreamView // set on a single-upstream route
	header    http.Header
	version   string // the MCP-Protocol-Version header, "" for none
	asks      *asks  // the Handler's, nil without a rendezvous (ask.go)
}

// targets are the upstreams a request may reach: one on a
// single-upstream route, else all of the instance.
func (c *caller) targets() []*upstreamView {
	if c.only != nil {
		return []*upstreamView{c.only}
	}
	return c.view.ups
}

// naming is how a route names the tools of an upstream.
type naming int

const (
	// prefixed: "{namespace}__{tool}", on the aggregated route.
	prefixed naming = iota
	// upstreamNames: as the upstream names them, on a single-upstream
	// route.
	upstreamNames
)

// naming is how the caller's route names tools.
func (c *caller) naming() naming {
	if c.only != nil {
		return upstreamNames
	}
	return prefixed
}

// request is one JSON-RPC request as methods see it. It is made whole by
// the front and not changed after.
type request struct {
	*caller
	id     jsonrpc.ID
	method string
	params json.RawMessage
	// decoded is what the proxy reads of params in one decode; nil when
	// they are absent or do not decode (a method reports that).
	decoded *requestParams
	epoch   *epoch
	// notify sends a message to the client before the result, on the
	// request's event stream; nil when the client takes none.
	notify func(msg []byte)
	// cancel ends ctx when the message is the whole HTTP request; nil
	// for a member of a batch.
	cancel context.CancelFunc
}

// result is what a method answers: a value the proxy encodes, or an
// upstream's tools/call result relayed as it comes.
type result struct {
	value   any
	relayed *upstream.Result
	// upstream is the namespace of the upstream that answered, "" for
	// none or several.
	upstream string
	// release, when set, runs once the result is written: a relayed
	// result is read from its upstream under the method's context, which
	// must last until then.
	release func()
	// header holds response headers the method sets (initialize's
	// Mcp-Session-Id).
	header http.Header
}

// close releases what a result holds once it is written or dropped.
func (r *result) close() {
	if r == nil {
		return
	}
	if r.relayed != nil {
		r.relayed.Close()
	}
	if r.release != nil {
		r.release()
	}
}

// methodFunc answers one request.
type methodFunc func(h *Handler, ctx context.Context, req *request) (*result, *rpcError)

// methodHandler is a method with its middleware around it.
type methodHandler func(ctx context.Context, req *request) (*result, *rpcError)

// middleware wraps a methodHandler, as the go-sdk's middleware does.
type middleware func(methodHandler) methodHandler

// valueOf answers with a value the proxy made.
func valueOf(v any) (*result, *rpcError) { return &result{value: v}, nil }

// requestParams is what the proxy reads of a request's params, in one
// decode: the protocol checks need the _meta that selects the protocol and
// the name Mcp-Name must repeat; tools/call needs name, arguments and the
// _meta it forwards, kept as raw JSON.
type requestParams struct {
	Name      string                     `json:"name"`
	URI       string                     `json:"uri"`
	Arguments json.RawMessage            `json:"arguments"`
	Meta      map[string]json.RawMessage `json:"_meta"`
	// InputResponses and RequestState are a 2026-07-28 retry's answer
	// to an input-required result (inputrequired.go).
	InputResponses json.RawMessage `json:"inputResponses"`
	RequestState   string          `json:"requestState"`
	// TaskID is the task of the tasks extension's methods (tasks.go).
	TaskID string `json:"taskId"`
	// version is _meta's protocol version, decoded once: the epoch and
	// the header checks both ask for it.
	version string
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
	p.version = jsonString(p.Meta[mcp.MetaKeyProtocolVersion])
	return &p
}

// protocolVersion is the version params._meta names, "" for none.
func (p *requestParams) protocolVersion() string {
	if p == nil {
		return ""
	}
	return p.version
}

// jsonString is the string a JSON value holds, "" when it holds none.
// A plain ASCII string, as versions are, is read without a decoder.
func jsonString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "" // absent, as for every client before 2026-07-28
	}
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' {
		plain := true
		for _, c := range raw[1 : n-1] {
			if c < 0x20 || c > 0x7e || c == '\\' || c == '"' {
				plain = false
				break
			}
		}
		if plain {
			return string(raw[1 : n-1])
		}
	}
	var v string
	json.Unmarshal(raw, &v)
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

// decodeParams unmarshals params into p; absent params leave p as is.
func decodeParams(params json.RawMessage, p any) *rpcError {
	if len(params) == 0 || string(params) == "null" {
		return nil
	}
	if err := wire.Unmarshal(params, p); err != nil {
		return newError(http.StatusOK, codeInvalidParams, "invalid params: "+paramsError(err))
	}
	return nil
}

// paramsError says what is wrong with params in the protocol's terms, not
// in the Go types the proxy decodes them into.
func paramsError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		return "not a JSON object of the method's params"
	}
	want := "another type"
	switch typeErr.Type.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Map, reflect.Struct:
		want = "an object"
	case reflect.Slice, reflect.Array:
		want = "an array"
	}
	if typeErr.Field == "" {
		return "params must be " + want
	}
	return typeErr.Field + " must be " + want
}
