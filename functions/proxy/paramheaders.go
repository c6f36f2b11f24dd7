package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// From 2026-07-28 a tool's input schema may mark an argument with
// "x-mcp-header": "Name"; a client then repeats that argument's value in
// the Mcp-Param-Name header of tools/call, so that intermediaries can
// route on it without reading the body. The value travels as is, or as
// =?base64?…?= when it is not plain ASCII. The server must refuse a call
// whose headers and body disagree.

// paramHeader is one argument of a tool that has a header: its path in
// the arguments object and the header's name without the prefix.
type paramHeader struct {
	path   []string
	header string
}

// schemaNode is what paramHeaders reads of an input schema.
type schemaNode struct {
	Header     string                `json:"x-mcp-header"`
	Properties map[string]schemaNode `json:"properties"`
}

// paramHeaders lists the arguments of a tool that have a header.
func paramHeaders(t *mcp.Tool) []paramHeader {
	raw, err := json.Marshal(t.InputSchema)
	if err != nil || !bytes.Contains(raw, []byte(`"x-mcp-header"`)) {
		return nil
	}
	var root schemaNode
	if json.Unmarshal(raw, &root) != nil {
		return nil
	}
	var out []paramHeader
	var walk func(props map[string]schemaNode, prefix []string)
	walk = func(props map[string]schemaNode, prefix []string) {
		for name, p := range props {
			path := append(append([]string(nil), prefix...), name)
			if p.Header != "" {
				out = append(out, paramHeader{path: path, header: p.Header})
			}
			walk(p.Properties, path)
		}
	}
	walk(root.Properties, nil)
	return out
}

// paramHeaderPrefix begins the name of each header that repeats a tool
// argument.
const paramHeaderPrefix = "Mcp-Param-"

// checkParamHeaders compares a call's Mcp-Param-* headers with its
// arguments.
func checkParamHeaders(header http.Header, bindings []paramHeader, args json.RawMessage) *rpcError {
	mismatch := func(msg string) *rpcError {
		return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, msg)
	}
	for _, b := range bindings {
		name := paramHeaderPrefix + b.header
		got := header.Get(name)
		value, present := argument(args, b.path)
		if !present {
			if got != "" {
				return mismatch(name + " is set but argument " + strings.Join(b.path, ".") + " is absent")
			}
			continue
		}
		if got == "" {
			return mismatch(name + " is missing for argument " + strings.Join(b.path, "."))
		}
		decoded, ok := decodeHeaderValue(got)
		if !ok {
			return mismatch(name + " holds invalid Base64")
		}
		if !sameValue(decoded, value) {
			return mismatch(name + " does not match argument " + strings.Join(b.path, "."))
		}
	}
	return nil
}

// argument finds the value at path in an arguments object; null counts
// as absent.
func argument(args json.RawMessage, path []string) (json.RawMessage, bool) {
	cur := args
	for _, key := range path {
		var obj map[string]json.RawMessage
		if json.Unmarshal(cur, &obj) != nil {
			return nil, false
		}
		v, ok := obj[key]
		if !ok {
			return nil, false
		}
		cur = v
	}
	if len(cur) == 0 || string(cur) == "null" {
		return nil, false
	}
	return cur, true
}

// decodeHeaderValue undoes the =?base64?…?= wrapping; a value without it
// is literal.
func decodeHeaderValue(v string) (string, bool) {
	inner, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, true
	}
	inner, ok = strings.CutSuffix(inner, "?=")
	if !ok {
		return v, true
	}
	b, err := base64.StdEncoding.Strict().DecodeString(inner)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// sameValue reports whether a header's text stands for a JSON argument:
// a string equal to it, true or false, or the same number. Objects and
// arrays cannot travel in a header.
func sameValue(text string, value json.RawMessage) bool {
	switch value[0] {
	case '"':
		var s string
		return json.Unmarshal(value, &s) == nil && s == text
	case 't', 'f':
		return string(value) == text
	case '{', '[':
		return false
	}
	want, err1 := strconv.ParseFloat(string(value), 64)
	got, err2 := strconv.ParseFloat(text, 64)
	return err1 == nil && err2 == nil && want == got
}

// upstreamParamHeaders are the Mcp-Param-* headers a 2026-07-28 upstream
// expects with a call of tool: made from the arguments, as a client
// makes them (the client's own may be absent, it may speak an older
// version). Without the upstream's tool list there are none.
func (h *Handler) upstreamParamHeaders(ctx context.Context, u *upstreamView, tool string, args json.RawMessage) http.Header {
	list, err := h.upstreamTools(ctx, u)
	if err != nil || list.headers[tool] == nil {
		return nil
	}
	out := http.Header{}
	for _, b := range list.headers[tool] {
		if value, ok := argument(args, b.path); ok {
			if v, ok := encodeHeaderValue(value); ok {
				out.Set(paramHeaderPrefix+b.header, v)
			}
		}
	}
	return out
}

// encodeHeaderValue writes a JSON argument as a header value: numbers
// and booleans as they are, strings as they are when they are plain
// printable ASCII without surrounding blanks, else as =?base64?…?=.
func encodeHeaderValue(value json.RawMessage) (string, bool) {
	switch value[0] {
	case '{', '[':
		return "", false
	case '"':
		var s string
		if json.Unmarshal(value, &s) != nil {
			return "", false
		}
		if plainHeaderText(s) {
			return s, true
		}
		return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=", true
	}
	return string(value), true
}

func plainHeaderText(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
