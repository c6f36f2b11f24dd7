package wire

import (
	"reflect"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// TestDecodeMessageMatchesSDK checks Decode against the SDK's own
// decoder on valid and invalid messages.
func TestDecodeMessageMatchesSDK(t *testing.T) {
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"x","arguments":{"a":1}}}`,
		`{"jsonrpc":"2.0","id":7.0,"method":"ping"}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":null,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":3,"result":{"ok":true}}`,
		`{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}`,
		`{"jsonrpc":"2.0","id":1,"method":""}`,
		`{"jsonrpc":"1.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":{},"method":"ping"}`,
		`{"jsonrpc":"2.0","params":{}}`,
		`{"jsonrpc":"2.0",`,
		`[]`,
	} {
		want, wantErr := jsonrpc.DecodeMessage([]byte(in))
		got, gotErr := Decode([]byte(in))
		if (wantErr == nil) != (gotErr == nil) {
			t.Errorf("%s: error %v; SDK says %v", in, gotErr, wantErr)
			continue
		}
		if wantErr == nil && !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("%s: got %#v; SDK says %#v", in, got, want)
		}
	}
}

// normalize drops the difference between an absent and an empty raw
// field, which neither decoder's users see.
func normalize(m jsonrpc.Message) jsonrpc.Message {
	switch v := m.(type) {
	case *jsonrpc.Request:
		c := *v
		if len(c.Params) == 0 {
			c.Params = nil
		}
		return &c
	case *jsonrpc.Response:
		c := *v
		if len(c.Result) == 0 {
			c.Result = nil
		}
		return &c
	}
	return m
}
