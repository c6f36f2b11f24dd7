package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
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
		nested(MaxDepth - 1),
		nested(MaxDepth),
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"` + strings.Repeat("[", 2*MaxDepth) + `"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\\\"` + strings.Repeat("{", 2*MaxDepth) + `"}}`,
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

// nested is a ping whose params hold arrays nested to make the message
// depth levels deep.
func nested(depth int) string {
	inner := depth - 1 // the message object is one level
	return `{"jsonrpc":"2.0","id":1,"method":"ping","params":` + strings.Repeat("[", inner) + strings.Repeat("]", inner) + `}`
}

// TestDepth: a message as deep as MaxDepth is read, one level deeper is
// ErrTooDeep, however large; brackets inside strings (escaped quotes
// included) do not count.
func TestDepth(t *testing.T) {
	for _, tt := range []struct {
		in   string
		deep bool
	}{
		{nested(MaxDepth), false},
		{nested(MaxDepth + 1), true},
		{nested(200000), true},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"` + strings.Repeat("[", 5000) + `"}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\\\"` + strings.Repeat("[", 5000) + `"}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\\",` + `"a":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}}`, true},
	} {
		_, err := Decode([]byte(tt.in))
		if got := errors.Is(err, ErrTooDeep); got != tt.deep {
			t.Errorf("%.80s…: error %v; want too deep: %v", tt.in, err, tt.deep)
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

// TestEncodeMatchesSDK checks Encode against the SDK's own encoder:
// the same bytes for compact raw values.
func TestEncodeMatchesSDK(t *testing.T) {
	num := mustID(t, float64(7))
	str := mustID(t, "a<b>&\u2028")
	for _, msg := range []jsonrpc.Message{
		&jsonrpc.Request{ID: num, Method: "tools/call", Params: json.RawMessage(`{"name":"x","arguments":{"html":"<&>"}}`)},
		&jsonrpc.Request{Method: "notifications/initialized"},
		&jsonrpc.Request{ID: str, Method: "ping\u2028<>"},
		&jsonrpc.Response{ID: num, Result: json.RawMessage(`{"content":[{"type":"text","text":"é\u00e9 <b>"}]}`)},
		&jsonrpc.Response{ID: str, Error: &jsonrpc.Error{Code: -32602, Message: "bad <params>", Data: json.RawMessage(`{"a":1}`)}},
		&jsonrpc.Response{ID: num, Error: fmt.Errorf("wrapped: %w", &jsonrpc.Error{Code: -32000, Message: "inner"})},
		&jsonrpc.Response{ID: num, Error: errors.New("plain")},
	} {
		want, err := jsonrpc.EncodeMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Encode(msg)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if string(got) != string(want) {
			t.Errorf("Encode = %s\n   SDK says %s", got, want)
		}
	}
}

// TestEncodeRaw checks that raw values are copied as they are.
func TestEncodeRaw(t *testing.T) {
	id := mustID(t, float64(1))
	got, err := Encode(&jsonrpc.Response{ID: id, Result: json.RawMessage(`{ "a" : [1, 2] }`)})
	if err != nil || string(got) != `{"jsonrpc":"2.0","id":1,"result":{ "a" : [1, 2] }}` {
		t.Errorf("Encode = %s, %v", got, err)
	}
}

// TestUnmarshal checks the SDK's decoding rules: exact key match, one
// value only, encoding/json's error types.
func TestUnmarshal(t *testing.T) {
	var v struct {
		Name string `json:"name"`
	}
	if err := Unmarshal([]byte(`{"Name":"x"}`), &v); err != nil || v.Name != "" {
		t.Errorf("a key of another case: name %q, error %v; want it ignored", v.Name, err)
	}
	if err := Unmarshal([]byte(" {\"name\":\"y\"}\n "), &v); err != nil || v.Name != "y" {
		t.Errorf("name %q, error %v", v.Name, err)
	}
	var syntax *json.SyntaxError
	for _, in := range []string{`{"name":"x"} {}`, `{"name":"x"}]`, `{"name":`, ``} {
		if err := Unmarshal([]byte(in), &v); !errors.As(err, &syntax) {
			t.Errorf("%q: error %v; want a *json.SyntaxError", in, err)
		}
	}
	var typeErr *json.UnmarshalTypeError
	if err := Unmarshal([]byte(`{"name":1}`), &v); !errors.As(err, &typeErr) {
		t.Errorf("a number for a string: error %v; want a *json.UnmarshalTypeError", err)
	}
}

func mustID(t testing.TB, v any) jsonrpc.ID {
	t.Helper()
	id, err := jsonrpc.MakeID(v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// FuzzDecode checks Decode against the SDK's decoder on arbitrary input
// (Decode is stricter in one way: it refuses trailing data after the
// message), and that Encode writes what Decode reads back.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","arguments":{"a":[1,2,{"b":null}]}}}`,
		`{"jsonrpc":"2.0","method":null}`,
		`{"jsonrpc":"2.0","id":3,"result":{"ok":true}}`,
		`{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no","data":[1]}}`,
		`{"jsonrpc":"2.0","id":1.5,"method":"x"}`,
		`{"JSONRPC":"2.0","ID":1,"Method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"x"} {}`,
		"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"\\u2028\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := jsonrpc.DecodeMessage(data)
		got, gotErr := Decode(data)
		if wantErr == nil && gotErr != nil && !json.Valid(data) {
			return // the SDK reads the first of several values; Decode refuses them
		}
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: error %v; SDK says %v", data, gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("%q: got %#v; SDK says %#v", data, got, want)
		}
		if r, ok := got.(*jsonrpc.Request); ok && r.Method == "" {
			return // encoded without a method, as the SDK does: not a request any more
		}
		out, err := Encode(got)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", data, err)
		}
		again, err := Decode(out)
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(got)) {
			t.Fatalf("Decode(Encode(Decode(%q))) = %#v, %v; want %#v", data, again, err, got)
		}
	})
}

// TestEncodeResult checks EncodeResult against Encode.
func TestEncodeResult(t *testing.T) {
	ids := []jsonrpc.ID{{}}
	for _, raw := range []any{float64(0), float64(-7), float64(1 << 53), "a", `<q"&\>`, "é\u2028"} {
		id, err := jsonrpc.MakeID(raw)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		for _, result := range []json.RawMessage{nil, json.RawMessage(`{"content":[{"type":"text","text":"<hi>"}]}`), json.RawMessage(`1`)} {
			got, err := EncodeResult(id, result)
			want, werr := Encode(&jsonrpc.Response{ID: id, Result: result})
			if string(got) != string(want) || (err == nil) != (werr == nil) {
				t.Errorf("EncodeResult(%v, %s) = %s, %v; want %s, %v", id.Raw(), result, got, err, want, werr)
			}
		}
	}
}
