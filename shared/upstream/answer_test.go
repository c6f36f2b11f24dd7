package upstream

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// wholeCases are answers to the call mcp-proxy-7 small enough to be read
// whole: plain ones, which plainResult takes, and hostile ones, and what
// the call makes of each (outcome), as wire.Decode makes of it.
var wholeCases = []struct {
	name string
	msg  string
	// plain: plainResult takes it.
	plain bool
	want  string
}{
	{"plain", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":{"content":[{"type":"text","text":"hi"}]}}`, true, `result {"content":[{"type":"text","text":"hi"}]}`},
	{"result first, spaced", " {\n \"result\" : { \"a\" : [ 1 , 2 ] } ,\t\"id\":\"mcp-proxy-7\" , \"jsonrpc\" : \"2.0\" }\r\n", true, `result { "a" : [ 1 , 2 ] }`},
	{"number last", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":12}`, true, `result 12`},
	{"null result", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":null}`, true, `result null`},
	{"huge number", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":[1e999,-` + strings.Repeat("9", 400) + `.5E-7]}`, true, `result [1e999,-` + strings.Repeat("9", 400) + `.5E-7]`},
	{"invalid UTF-8 in a string", "{\"jsonrpc\":\"2.0\",\"id\":\"mcp-proxy-7\",\"result\":\"\xff\xed\xa0\x80\\ud800\"}", true, "result \"\xff\xed\xa0\x80\\ud800\""},
	{"deep, at the limit", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":` + nested(wire.MaxDepth-1) + `}`, true, "result " + nested(wire.MaxDepth-1)},

	{"deep, past the limit", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":` + nested(wire.MaxDepth) + `}`, false, "none"},
	{"deep member before the result", `{"jsonrpc":"2.0","id":"mcp-proxy-7","x":` + nested(wire.MaxDepth) + `,"result":1}`, false, "none"},
	{"bad JSON after a good head", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":{"a":1,}}`, false, "none"},
	{"control character in the result", "{\"jsonrpc\":\"2.0\",\"id\":\"mcp-proxy-7\",\"result\":\"a\x01\"}", false, "none"},
	{"bad escape in the result", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":"\q"}`, false, "none"},
	{"leading zero", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":01}`, false, "none"},
	{"bare minus", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":-}`, false, "none"},
	{"cut short", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":{"a":`, false, "none"},
	{"object not closed", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1`, false, "none"},
	{"comma before the end", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,}`, false, "none"},
	{"no comma", `{"jsonrpc":"2.0" "id":"mcp-proxy-7","result":1}`, false, "none"},
	{"no colon", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result" 1}`, false, "none"},
	{"trailing garbage", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1} x`, false, "none"},
	{"a second object", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1}{}`, false, "none"},
	{"byte order mark", "\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":\"mcp-proxy-7\",\"result\":1}", false, "none"},
	{"not an object", `["jsonrpc","2.0","mcp-proxy-7",1]`, false, "none"},
	{"a string", `"result"`, false, "none"},
	{"null", `null`, false, "none"},
	{"empty", ``, false, "none"},
	{"no jsonrpc", `{"id":"mcp-proxy-7","result":1}`, false, "none"},
	{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":"mcp-proxy-7","result":1}`, false, "none"},
	{"jsonrpc a number", `{"jsonrpc":2.0,"id":"mcp-proxy-7","result":1}`, false, "none"},
	{"jsonrpc escaped", `{"jsonrpc":"2\u002e0","id":"mcp-proxy-7","result":1}`, false, "result 1"},
	{"jsonrpc twice, 1.0 last", `{"jsonrpc":"2.0","id":"mcp-proxy-7","jsonrpc":"1.0","result":1}`, false, "none"},
	{"another id", `{"jsonrpc":"2.0","id":"mcp-proxy-8","result":1}`, false, "other *jsonrpc2.Response"},
	{"an id that starts as the call's", `{"jsonrpc":"2.0","id":"mcp-proxy-77","result":1}`, false, "other *jsonrpc2.Response"},
	{"a number id", `{"jsonrpc":"2.0","id":7,"result":1}`, false, "other *jsonrpc2.Response"},
	{"a huge number id", `{"jsonrpc":"2.0","id":1e999,"result":1}`, false, "none"},
	{"an object id", `{"jsonrpc":"2.0","id":{"a":"mcp-proxy-7"},"result":1}`, false, "none"},
	{"escaped id", `{"jsonrpc":"2.0","id":"mcp-\u0070roxy-7","result":1}`, false, "result 1"},
	{"id twice, the call's last", `{"jsonrpc":"2.0","id":"mcp-proxy-8","id":"mcp-proxy-7","result":1}`, false, "result 1"},
	{"id twice, the call's first", `{"jsonrpc":"2.0","id":"mcp-proxy-7","id":"mcp-proxy-8","result":1}`, false, "other *jsonrpc2.Response"},
	{"no id", `{"jsonrpc":"2.0","result":1}`, false, "none"},
	{"two results", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"result":{"b":2}}`, false, `result {"b":2}`},
	{"two results, the second escaped", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"r\u0065sult":2}`, false, "result 2"},
	{"two results, the second invalid", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"result":[}`, false, "none"},
	{"escaped result name", `{"jsonrpc":"2.0","id":"mcp-proxy-7","\u0072esult":3}`, false, "result 3"},
	{"Result", `{"jsonrpc":"2.0","id":"mcp-proxy-7","Result":1}`, false, "error the answer has neither a result nor an error"},
	{"neither result nor error", `{"jsonrpc":"2.0","id":"mcp-proxy-7"}`, false, "error the answer has neither a result nor an error"},
	{"result and error", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"error":{"code":-32001,"message":"no"}}`, false, "rpc error -32001 no"},
	{"error before result", `{"jsonrpc":"2.0","id":"mcp-proxy-7","error":{"code":5,"message":"no","data":[1]},"result":1}`, false, "rpc error 5 no [1]"},
	{"result and an empty error", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"error":{}}`, false, "rpc error 0"},
	{"result and a null error", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"error":null}`, false, "result 1"},
	{"an error of the wrong type", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"error":"no"}`, false, "none"},
	{"a method", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"method":"x"}`, false, "other *jsonrpc2.Request"},
	{"a null method", `{"jsonrpc":"2.0","id":"mcp-proxy-7","result":1,"method":null}`, false, "other *jsonrpc2.Request"},
	{"params", `{"jsonrpc":"2.0","id":"mcp-proxy-7","params":{},"result":1}`, false, "result 1"},
	{"another member", `{"jsonrpc":"2.0","id":"mcp-proxy-7","x":[1,{}],"result":1}`, false, "result 1"},
	{"another member, invalid", `{"jsonrpc":"2.0","id":"mcp-proxy-7","x":[1,,],"result":1}`, false, "none"},
	{"an empty name", `{"jsonrpc":"2.0","id":"mcp-proxy-7","":1,"result":1}`, false, "result 1"},
	{"a name with a control character", "{\"jsonrpc\":\"2.0\",\"id\":\"mcp-proxy-7\",\"res\x01ult\":1,\"result\":1}", false, "none"},
	{"a notification", `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}`, false, "other *jsonrpc2.Request"},
}

// nested is a JSON value of n arrays, one in the other.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// outcome says what readMessage, or wholeMessage, made of a message.
func outcome(res *Result, other jsonrpc.Message, raw []byte, err error) string {
	switch {
	case res != nil:
		return "result " + string(res.held)
	case other != nil:
		return fmt.Sprintf("other %T", other)
	case err != nil:
		if e, ok := err.(*jsonrpc.Error); ok {
			return strings.TrimSpace(fmt.Sprintf("rpc error %d %s %s", e.Code, e.Message, e.Data))
		}
		return "error " + err.Error()
	}
	return "none"
}

// readWhole is readMessage of msg read whole, as a small answer is.
func readWhole(msg []byte, id jsonrpc.ID) (*Result, jsonrpc.Message, []byte, error) {
	rd := wire.NewReader(bytes.NewReader(msg), len(msg)+1)
	return readMessage(context.Background(), rd, budget.NewMeter(nil, 0, -1), id)
}

// TestWholeAnswers: a small answer read whole comes to what decoding it
// came to before plainResult, which takes only plain answers; the call
// gets the very result bytes it got then.
func TestWholeAnswers(t *testing.T) {
	id, err := jsonrpc.MakeID("mcp-proxy-7")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range wholeCases {
		t.Run(c.name, func(t *testing.T) {
			msg := []byte(c.msg)
			rd := wire.NewReader(bytes.NewReader(msg), len(msg)+1)
			if _, plain := plainResult(rd, id); plain != c.plain {
				t.Errorf("plainResult took it: %v; want %v", plain, c.plain)
			}
			got := outcome(readWhole(msg, id))
			if got != c.want {
				t.Errorf("readMessage: %.200s; want %.200s", got, c.want)
			}
			if before := outcome(wholeMessage(bytes.Clone(msg), id)); got != before {
				t.Errorf("readMessage: %.200s; decoded as before: %.200s", got, before)
			}
		})
	}
}

// TestPlainResultOwnsItsBytes: the result of a plain answer is the
// call's own copy, not the pooled buffer's, which the next answer
// overwrites.
func TestPlainResultOwnsItsBytes(t *testing.T) {
	id, _ := jsonrpc.MakeID("mcp-proxy-7")
	rd := wire.NewReader(strings.NewReader(`{"jsonrpc":"2.0","id":"mcp-proxy-7","result":"first"}`), 512)
	res, _, _, err := readMessage(context.Background(), rd, budget.NewMeter(nil, 0, -1), id)
	if err != nil || res == nil {
		t.Fatalf("readMessage: %v, %v", res, err)
	}
	rd.Reset(strings.NewReader(`{"jsonrpc":"2.0","id":"mcp-proxy-7","result":"other"}`))
	if _, err := rd.Peek(); err == nil {
		t.Fatal("Peek: the second answer was not read whole")
	}
	if string(res.held) != `"first"` {
		t.Errorf("the first result is now %s; want \"first\"", res.held)
	}
}
