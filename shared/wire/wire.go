// Package wire reads JSON-RPC messages into the official SDK's jsonrpc
// types, for the proxy's hot path: the request a client sends and the
// answer an upstream streams back.
package wire

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// wireMessage is a JSON-RPC message as it arrives.
type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      any             `json:"id"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   *jsonrpc.Error  `json:"error"`
}

var errNotJSONRPC = errors.New(`invalid message version tag; expected "2.0"`)

// Decode reads one JSON-RPC message into the SDK's jsonrpc types
// with the rules of jsonrpc.DecodeMessage, but with encoding/json: the
// SDK's decoder starts every message with a fresh 32 KiB buffer, the
// largest cost of a proxied call (BENCHMARKS.md).
func Decode(data []byte) (jsonrpc.Message, error) {
	var w wireMessage
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, err
	}
	if w.JSONRPC != "2.0" {
		return nil, errNotJSONRPC
	}
	id, err := jsonrpc.MakeID(w.ID)
	if err != nil {
		return nil, err
	}
	if w.Method != nil {
		return &jsonrpc.Request{ID: id, Method: *w.Method, Params: w.Params}, nil
	}
	if !id.IsValid() {
		return nil, errors.New("invalid request: neither a method nor an id")
	}
	resp := &jsonrpc.Response{ID: id, Result: w.Result}
	if w.Error != nil {
		resp.Error = w.Error
	}
	return resp, nil
}

// MediaType is the media type of a Content-Type or Accept element,
// lower-cased, without parameters: what the hot path compares, without
// mime.ParseMediaType's allocations.
func MediaType(v string) string {
	mt, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}
