package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// FuzzAnswer: an answer relayed as a stream (its result past a small
// buffer) is relayed only when reading it whole, as the pool did before,
// takes it for the call's result, and then as the same compact value;
// the one answer whole reading takes and streaming refuses is one with
// two results. An answer read whole (plainResult, else decoded) comes
// to what decoding it came to. make fuzz runs it.
func FuzzAnswer(f *testing.F) {
	id, err := jsonrpc.MakeID("mcp-proxy-1")
	if err != nil {
		f.Fatal(err)
	}
	text := strings.Repeat("t", 600)
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":"mcp-proxy-1","result":{"content":[{"type":"text","text":"` + text + `"}]}}`,
		`{"result":{"a":"` + text + `"},"jsonrpc":"2.0","id":"mcp-proxy-1"}`,
		`{"result":["` + text + `"],"jsonrpc":"2.0","id":"mcp-proxy-2"}`,
		` { "jsonrpc" : "2.0" , "id" : "mcp-proxy-1" , "result" : "` + text + `" , "error" : null } `,
		`{"jsonrpc":"2.0","id":"mcp-proxy-1","result":{"x":"` + text + `"},"result":1}`,
		`{"jsonrpc":"2.0","id":"mcp-proxy-1","result":{"x":"` + text + `"}}x`,
		`{"jsonrpc":"2.0","id":"mcp-\u0070roxy-1","r\u0065sult":{"x":"` + text + `"},"method":null}`,
		`{"jsonrpc":"2.0","id":"mcp-proxy-1","result":{"x":"` + text + `"},"\u0072\u0065\u0073\u0075\u006c\u0074":2}`,
		`{"\u006a\u0073\u006f\u006e\u0072\u0070\u0063":"2.0","result":{"x":"` + text + `"},"\u0069\u0064":"mcp-proxy-1"}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"` + text + `"}}`,
		`{"jsonrpc":"2.0","id":"mcp-proxy-1","error":{"code":1,"message":"` + text + `"}}`,
	} {
		f.Add([]byte(s))
	}
	for _, c := range wholeCases {
		f.Add([]byte(strings.ReplaceAll(c.msg, "mcp-proxy-7", "mcp-proxy-1")))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Read whole, as an answer that fits the buffer is (plainResult
		// first), msg comes to what decoding it came to, to the byte.
		if got, before := outcome(readWhole(msg, id)), outcome(wholeMessage(bytes.Clone(msg), id)); got != before {
			t.Fatalf("%q read whole: %.200s; decoded: %.200s", msg, got, before)
		}
		var want []byte
		if m, err := wire.Decode(msg); err == nil {
			if r, ok := m.(*jsonrpc.Response); ok && r.ID == id && r.Error == nil && len(r.Result) > 0 {
				var b bytes.Buffer
				if json.Compact(&b, r.Result) == nil {
					want = b.Bytes()
				}
			}
		}
		rd := wire.NewReader(bytes.NewReader(msg), 512)
		res, _, _, err := readMessage(context.Background(), rd, budget.NewMeter(nil, 0, -1), id)
		var got []byte
		if err == nil && res != nil {
			var out bytes.Buffer
			if _, err := res.WriteTo(&out); err == nil {
				got = out.Bytes()
			}
		}
		switch {
		case got != nil && want == nil:
			t.Fatalf("%q: relayed %q; read whole, it is not the call's result", msg, got)
		case got != nil && !bytes.Equal(got, want):
			t.Fatalf("%q: relayed %q; read whole, the result is %q", msg, got, want)
		case got == nil && want != nil && results(msg) < 2:
			t.Fatalf("%q: not relayed; read whole, the result is %q", msg, want)
		}
	})
}

// results counts the members named "result" of the object msg, however
// their names are escaped.
func results(msg []byte) int {
	dec := json.NewDecoder(bytes.NewReader(msg))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return n
		}
		if name == "result" {
			n++
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return n
		}
	}
	return n
}
