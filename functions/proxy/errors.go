package proxy

import (
	"encoding/json"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// MCP and JSON-RPC error codes the proxy answers with.
const (
	codeParseError     = jsonrpc.CodeParseError
	codeInvalidRequest = jsonrpc.CodeInvalidRequest
	codeMethodNotFound = jsonrpc.CodeMethodNotFound
	codeInvalidParams  = jsonrpc.CodeInvalidParams
	codeInternalError  = jsonrpc.CodeInternalError
	// codeUpstream is the implementation-defined server error the proxy
	// answers when an upstream cannot be reached, fails or times out.
	codeUpstream = -32000
	// codeUnauthorized and codeForbidden accompany HTTP 401 and 403.
	codeUnauthorized = -32001
	codeForbidden    = -32003
	// codeUpstreamUnauthorized: an upstream refused the proxy's
	// credentials for it, or the proxy has none to present; its data
	// says so to programs (reasonUpstreamUnauthorized).
	codeUpstreamUnauthorized = -32004
)

// reasonUpstreamUnauthorized is the data.reason of codeUpstreamUnauthorized.
const reasonUpstreamUnauthorized = "upstream_unauthorized"

// rpcError is a JSON-RPC error with the HTTP status to send it with.
type rpcError struct {
	status  int
	code    int64
	message string
	data    any
	header  http.Header // extra response headers (WWW-Authenticate)
	// upstream is the namespace of the upstream the error is of, "" for
	// none; timeout: the upstream did not answer in time.
	upstream string
	timeout  bool
	// rateLimited: refused over a rate limit (ratelimit.go).
	rateLimited bool
	// quotaExceeded: refused over a quota (quota.go).
	quotaExceeded bool
}

// from says the error is of upstream u.
func (e *rpcError) from(u *upstreamView) *rpcError {
	e.upstream = u.ns
	return e
}

func (e *rpcError) Error() string { return e.message }

func newError(status int, code int64, message string) *rpcError {
	return &rpcError{status: status, code: code, message: message}
}

// wire converts the error for the SDK's JSON-RPC encoder.
func (e *rpcError) wire() *jsonrpc.Error {
	w := &jsonrpc.Error{Code: e.code, Message: e.message}
	if e.data != nil {
		if raw, err := json.Marshal(e.data); err == nil {
			w.Data = raw
		}
	}
	return w
}

// encodeError is the one encoding of every failure, HTTP level or
// JSON-RPC level: a JSON-RPC error object.
func encodeError(id jsonrpc.ID, e *rpcError) []byte {
	if id.IsValid() {
		body, _ := wire.Encode(&jsonrpc.Response{ID: id, Error: e.wire()})
		return body
	}
	// The SDK's encoder omits a missing ID, but JSON-RPC wants "id": null
	// on an error about a request whose ID is unknown.
	body, _ := json.Marshal(struct {
		JSONRPC string         `json:"jsonrpc"`
		ID      any            `json:"id"`
		Error   *jsonrpc.Error `json:"error"`
	}{"2.0", nil, e.wire()})
	return body
}

// writeError answers a request that failed as a whole.
func writeError(w http.ResponseWriter, id jsonrpc.ID, e *rpcError) int {
	for k, vs := range e.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body := encodeError(id, e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	w.Write(body)
	return len(body)
}
