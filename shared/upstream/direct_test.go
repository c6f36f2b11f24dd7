package upstream

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// TestCallParams checks the hand-assembled params of a tools/call against
// what encoding/json makes of the same values.
func TestCallParams(t *testing.T) {
	args := json.RawMessage(`{"text":"héllo \"quoted\"","n":[1,2]}`)
	for _, tt := range []struct {
		version string
		meta    map[string]json.RawMessage
		want    string
	}{
		{"2025-11-25", nil, `{"name":"echo \"x\"","arguments":{"text":"héllo \"quoted\"","n":[1,2]}}`},
		{"2025-11-25", map[string]json.RawMessage{"progressToken": json.RawMessage(`"p-1"`)}, `{"_meta":{"progressToken":"p-1"},"name":"echo \"x\"","arguments":{"text":"héllo \"quoted\"","n":[1,2]}}`},
		{"2026-07-28", map[string]json.RawMessage{"progressToken": json.RawMessage(`7`), "trace": json.RawMessage(`{"id":"a"}`)}, `{"_meta":{
			"io.modelcontextprotocol/protocolVersion":"2026-07-28",
			"io.modelcontextprotocol/clientCapabilities":{},
			"io.modelcontextprotocol/clientInfo":{"name":"mcp-proxy","version":"1"},
			"progressToken":7,"trace":{"id":"a"}},
			"name":"echo \"x\"","arguments":{"text":"héllo \"quoted\"","n":[1,2]}}`},
	} {
		got, err := callParams(tt.version, toolPost{Name: `echo "x"`, Arguments: args, Meta: tt.meta})
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: invalid JSON %s: %v", tt.version, got, err)
		}
		json.Unmarshal([]byte(tt.want), &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: params = %s; want %s", tt.version, got, tt.want)
		}
	}
}

// TestToolMessage checks the message of a posted tools/call, made in one
// buffer, against wire.Encode of the same request.
func TestToolMessage(t *testing.T) {
	args := json.RawMessage(`{"text":"héllo <\"quoted\">","n":[1,2]}`)
	for _, tt := range []struct {
		version string
		meta    map[string]json.RawMessage
	}{
		{"2025-11-25", nil},
		{"2025-11-25", map[string]json.RawMessage{"progressToken": json.RawMessage(`"p-1"`)}},
		{"2026-07-28", map[string]json.RawMessage{"trace": json.RawMessage(`{"id":"a"}`)}},
	} {
		c := toolPost{Name: "echo <\"x\"> \u2028 \xff", Arguments: args, Meta: tt.meta}
		got, err := toolMessage("42", tt.version, c)
		if err != nil {
			t.Fatal(err)
		}
		params, err := callParams(tt.version, c)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := jsonrpc.MakeID("mcp-proxy-42")
		want, err := wire.Encode(&jsonrpc.Request{ID: id, Method: "tools/call", Params: params})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: message\n%s\nwant\n%s", tt.version, got, want)
		}
	}
}

// TestAppendJSONString checks the unescaped path against encoding/json.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "echo", "2026-07-28", "a b~", `a"b`, `a\b`, "<>&", "tab\t", "é", "\u2028", "\xff", "\x7f"} {
		got, err := appendJSONString([]byte("x"), s)
		want, _ := json.Marshal(s)
		if err != nil || string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, %v; want x%s", s, got, err, want)
		}
	}
}
