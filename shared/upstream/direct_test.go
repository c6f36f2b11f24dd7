package upstream

import (
	"encoding/json"
	"reflect"
	"testing"
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
