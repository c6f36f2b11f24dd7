package wire

import (
	"encoding/json"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// The JSON of one proxied tools/call at 2026-07-28, as the benchmarks
// below handle it: the client's request, the call sent on to the
// upstream, the upstream's answer and the client's response.
var (
	clientRequest  = []byte(`{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcpload","version":"1"}},"name":"demo__echo","arguments":{"text":"hello"}}}`)
	upstreamParams = []byte(`{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcp-proxy","version":"1"}},"name":"echo","arguments":{"text":"hello"}}`)
	upstreamAnswer = []byte(`{"jsonrpc":"2.0","id":"mcp-proxy-1234","result":{"content":[{"type":"text","text":"hello"}],"resultType":"complete"}}`)
)

// callParams is what the proxy reads of a tools/call's params.
type callParams struct {
	Name      string                     `json:"name"`
	Arguments json.RawMessage            `json:"arguments"`
	Meta      map[string]json.RawMessage `json:"_meta"`
}

// BenchmarkCallCodec compares the JSON work of one proxied tools/call
// with this package, with encoding/json (what the package used before)
// and with the SDK's codec (jsonrpc.DecodeMessage, EncodeMessage):
// make bench-wire.
func BenchmarkCallCodec(b *testing.B) {
	id := mustID(b, "mcp-proxy-1")
	stdParams := func(data []byte, p *callParams) error { return json.Unmarshal(data, p) }
	for _, tc := range []struct {
		name   string
		decode func([]byte) (jsonrpc.Message, error)
		params func([]byte, *callParams) error
		encode func(jsonrpc.Message) ([]byte, error)
	}{
		{"sdk", jsonrpc.DecodeMessage, stdParams, jsonrpc.EncodeMessage},
		{"encoding-json", func(data []byte) (jsonrpc.Message, error) { return decode(data, json.Unmarshal) }, stdParams, jsonrpc.EncodeMessage},
		{"wire", Decode, func(data []byte, p *callParams) error {
			p.Meta = make(map[string]json.RawMessage, 4)
			return Unmarshal(data, p)
		}, Encode},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				msg, err := tc.decode(clientRequest)
				if err != nil {
					b.Fatal(err)
				}
				var p callParams
				if err := tc.params(msg.(*jsonrpc.Request).Params, &p); err != nil || p.Name != "demo__echo" {
					b.Fatalf("params %+v, %v", p, err)
				}
				if _, err := tc.encode(&jsonrpc.Request{ID: id, Method: "tools/call", Params: upstreamParams}); err != nil {
					b.Fatal(err)
				}
				answer, err := tc.decode(upstreamAnswer)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tc.encode(&jsonrpc.Response{ID: id, Result: answer.(*jsonrpc.Response).Result}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
