package proxy

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestParamHeaders(t *testing.T) {
	tool := &mcp.Tool{Name: "t", InputSchema: json.RawMessage(`{"type":"object","properties":{
		"region": {"type":"string","x-mcp-header":"Region"},
		"count":  {"type":"integer","x-mcp-header":"Count"},
		"dry":    {"type":"boolean","x-mcp-header":"Dry"},
		"plain":  {"type":"string"},
		"where":  {"type":"object","properties":{"zone":{"type":"string","x-mcp-header":"Zone"}}}}}`)}
	bindings := paramHeaders(tool)
	if len(bindings) != 4 {
		t.Fatalf("bindings = %v; want region, count, dry and where.zone", bindings)
	}
	if paramHeaders(&mcp.Tool{InputSchema: json.RawMessage(`{"type":"object"}`)}) != nil {
		t.Error("a schema without x-mcp-header has bindings")
	}
	tests := []struct {
		name    string
		args    string
		headers map[string]string
		ok      bool
	}{
		{"all match", `{"region":"eu","count":3,"dry":true,"where":{"zone":"b"}}`,
			map[string]string{"Region": "eu", "Count": "3", "Dry": "true", "Zone": "b"}, true},
		{"absent arguments, no headers", `{"plain":"x"}`, nil, true},
		{"null argument, no header", `{"region":null}`, nil, true},
		{"base64 value", `{"region":"Hello"}`, map[string]string{"Region": "=?base64?SGVsbG8=?="}, true},
		{"literal that looks like base64", `{"region":"SGVsbG8="}`, map[string]string{"Region": "SGVsbG8="}, true},
		{"number written differently", `{"count":3}`, map[string]string{"Count": "3.0"}, true},
		{"missing header", `{"region":"eu"}`, nil, false},
		{"header without argument", `{}`, map[string]string{"Region": "eu"}, false},
		{"different value", `{"region":"eu"}`, map[string]string{"Region": "us"}, false},
		{"bad base64 padding", `{"region":"Hello"}`, map[string]string{"Region": "=?base64?SGVsbG8?="}, false},
		{"bad base64 characters", `{"region":"Hello"}`, map[string]string{"Region": "=?base64?SGVs!!!bG8=?="}, false},
		{"different number", `{"count":3}`, map[string]string{"Count": "4"}, false},
		{"boolean case", `{"dry":true}`, map[string]string{"Dry": "True"}, false},
		{"nested mismatch", `{"where":{"zone":"a"}}`, map[string]string{"Zone": "b"}, false},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.headers {
			h.Set("Mcp-Param-"+k, v)
		}
		e := checkParamHeaders(h, bindings, json.RawMessage(tt.args))
		if (e == nil) != tt.ok {
			t.Errorf("%s: error %v; want ok=%v", tt.name, e, tt.ok)
			continue
		}
		if e != nil && (e.code != mcp.CodeHeaderMismatch || e.status != http.StatusBadRequest) {
			t.Errorf("%s: %d/%d; want -32020 with 400", tt.name, e.code, e.status)
		}
	}
}

func TestEncodeHeaderValue(t *testing.T) {
	for _, tt := range []struct{ arg, want string }{
		{`"eu-west"`, "eu-west"},
		{`"Grüße"`, "=?base64?R3LDvMOfZQ==?="},
		{`" padded"`, "=?base64?IHBhZGRlZA==?="},
		{`42`, "42"},
		{`true`, "true"},
	} {
		got, ok := encodeHeaderValue(json.RawMessage(tt.arg))
		if !ok || got != tt.want {
			t.Errorf("encodeHeaderValue(%s) = %q, %v; want %q", tt.arg, got, ok, tt.want)
		}
		// What the proxy sends upstream, it accepts from a client.
		decoded, ok := decodeHeaderValue(got)
		if !ok || !sameValue(decoded, json.RawMessage(tt.arg)) {
			t.Errorf("%s does not round-trip: %q", tt.arg, decoded)
		}
	}
	if _, ok := encodeHeaderValue(json.RawMessage(`{"a":1}`)); ok {
		t.Error("an object became a header value")
	}
}

// TestJSONString checks the decoder-free path against encoding/json.
func TestJSONString(t *testing.T) {
	for _, raw := range []string{`"2026-07-28"`, ` "2025-06-18" `, `""`, `"a\"b"`, `"\u0032026"`, `"é"`, "\"\xff\"",
		`"tab	in"`, `123`, `null`, `{"v":"x"}`, ``, `"`} {
		var want string
		json.Unmarshal([]byte(raw), &want)
		if got := jsonString(json.RawMessage(raw)); got != want {
			t.Errorf("jsonString(%s) = %q; want %q", raw, got, want)
		}
	}
}
