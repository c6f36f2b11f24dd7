package proxy

import (
	"bytes"
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

// checkParamHeaders compares a call's Mcp-Param-* headers with its
// arguments.
func checkParamHeaders(header http.Header, bindings []paramHeader, args json.RawMessage) *rpcError {
	mismatch := func(msg string) *rpcError {
		return newError(http.StatusBadRequest, mcp.CodeHeaderMismatch, msg)
	}
	for _, b := range bindings {
		name := "Mcp-Param-" + b.header
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
