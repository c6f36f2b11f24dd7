// Package proxy is the Proxy function: the authenticated MCP endpoint that
// aggregates the upstream MCP servers of one instance.
package proxy

import (
	"encoding/json"
	"net/http"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
)

func init() {
	functions.HTTP("Proxy", Proxy)
}

// Proxy serves the MCP endpoint. Until the request path is built it
// answers every request with a JSON-RPC error and HTTP 501.
func Proxy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotImplemented)
	json.NewEncoder(w).Encode(map[string]any{
		"jsonrpc": "2.0",
		"id":      nil,
		"error":   map[string]any{"code": -32603, "message": "the MCP endpoint is not implemented yet"},
	})
}
