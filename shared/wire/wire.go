// Package wire reads and writes JSON-RPC messages as the official SDK's
// jsonrpc types, for the proxy's hot path: the request a client sends, the
// call it makes of an upstream, the answer the upstream sends back and the
// response the client gets.
//
// It follows the rules of jsonrpc.DecodeMessage and jsonrpc.EncodeMessage
// (tested against them) with the JSON library the SDK itself decodes with,
// github.com/segmentio/encoding/json, used directly: the SDK's decoder
// starts every message with a fresh 32 KiB buffer, and its encoder is
// encoding/json's, which re-validates and compacts every raw params and
// result it passes on. Here a raw value is checked once, when it is read,
// and copied as it is (BENCHMARKS.md, "JSON on the hot path").
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	sjson "github.com/segmentio/encoding/json"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// wireMessage is a JSON-RPC message as it arrives.
type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      any             `json:"id"`
	Method  json.RawMessage `json:"method"` // raw: present, even as "" or null, makes a request
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   *jsonrpc.Error  `json:"error"`
}

// outMessage is a JSON-RPC message as it leaves, in the SDK's key order.
type outMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      any             `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *jsonrpc.Error  `json:"error,omitempty"`
}

var errNotJSONRPC = errors.New(`invalid message version tag; expected "2.0"`)

// parseFlags are the SDK's: object keys match struct fields exactly, as
// JSON-RPC and MCP spell them.
const parseFlags = sjson.DontMatchCaseInsensitiveStructFields

// MaxDepth is the deepest nesting of arrays and objects a message may
// have, the SDK's own limit. The parser recurses per level: 200,000 levels
// in a 400 KB body once cost a process 100 MiB of stack.
const MaxDepth = 1000

// ErrTooDeep is the error of a value nested deeper than MaxDepth.
var ErrTooDeep = fmt.Errorf("json: nested deeper than %d levels", MaxDepth)

// Unmarshal decodes data into v with the SDK's rules. A syntax error is a
// *json.SyntaxError of encoding/json, a value of the wrong type a
// *json.UnmarshalTypeError, a value nested too deep ErrTooDeep.
func Unmarshal(data []byte, v any) error {
	if err := checkDepth(data); err != nil {
		return err
	}
	rest, err := sjson.Parse(data, v, parseFlags)
	if err == nil && len(rest) > 0 {
		// More than one value: encoding/json words that error, offset
		// included.
		if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
			return err
		}
		return errors.New("json: more than one value")
	}
	return err
}

// checkDepth refuses data nested deeper than MaxDepth, before a parser
// recurses into it. It only counts brackets outside strings; whether data
// is JSON at all is the parser's to say. Strings are skipped with
// IndexByte, so a large result costs little more than a memchr.
func checkDepth(data []byte) error {
	// Fewer brackets than the limit cannot nest past it: counting them is
	// a vector instruction's work, and settles most messages.
	if bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) <= MaxDepth {
		return nil
	}
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for {
				j := bytes.IndexByte(data[i+1:], '"')
				if j < 0 {
					return nil // an unterminated string: the parser says so
				}
				i += 1 + j
				escapes := 0
				for k := i - 1; k >= 0 && data[k] == '\\'; k-- {
					escapes++
				}
				if escapes%2 == 0 {
					break
				}
			}
		case '[', '{':
			if depth++; depth > MaxDepth {
				return ErrTooDeep
			}
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return nil
}

// Decode reads one JSON-RPC message into the SDK's jsonrpc types with the
// rules of jsonrpc.DecodeMessage.
func Decode(data []byte) (jsonrpc.Message, error) {
	return decode(data, Unmarshal)
}

// decode is Decode with the JSON decoder a benchmark picks.
func decode(data []byte, unmarshal func([]byte, any) error) (jsonrpc.Message, error) {
	var w wireMessage
	if err := unmarshal(data, &w); err != nil {
		return nil, err
	}
	if w.JSONRPC != "2.0" {
		return nil, errNotJSONRPC
	}
	id, err := jsonrpc.MakeID(w.ID)
	if err != nil {
		return nil, err
	}
	if len(w.Method) > 0 {
		method, ok := plainString(w.Method)
		if !ok {
			if err := unmarshal(w.Method, &method); err != nil {
				return nil, err
			}
		}
		return &jsonrpc.Request{ID: id, Method: method, Params: w.Params}, nil
	}
	if !id.IsValid() {
		return nil, errors.New("invalid request: neither a method nor an id")
	}
	resp := &jsonrpc.Response{ID: id, Result: w.Result}
	if w.Error != nil {
		resp.Error = w.Error
	}
	return resp, nil
}

// plainString is the string raw holds when raw is a JSON string of
// printable ASCII without escapes, as method names are: read without a
// decoder. ok is false for anything else.
func plainString(raw json.RawMessage) (s string, ok bool) {
	n := len(raw)
	if n < 2 || raw[0] != '"' || raw[n-1] != '"' {
		return "", false
	}
	for _, c := range raw[1 : n-1] {
		if c < 0x20 || c > 0x7e || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(raw[1 : n-1]), true
}

// Encode writes msg as jsonrpc.EncodeMessage does, but copies raw params,
// results and error data as they are, neither checked again nor
// compacted: each must be one valid JSON value, as every raw value of the
// proxy is, being read by Decode or Unmarshal (which check it) or written
// by an encoder. HTML characters are not escaped, as the SDK does not
// escape them.
func Encode(msg jsonrpc.Message) ([]byte, error) {
	out := outMessage{JSONRPC: "2.0"}
	switch m := msg.(type) {
	case *jsonrpc.Request:
		out.ID, out.Method, out.Params = m.ID.Raw(), m.Method, m.Params
	case *jsonrpc.Response:
		out.ID, out.Result, out.Error = m.ID.Raw(), m.Result, wireError(m.Error)
	default:
		return nil, fmt.Errorf("encoding a JSON-RPC message: unknown type %T", msg)
	}
	data, err := sjson.Append(make([]byte, 0, 128+len(out.Params)+len(out.Result)), &out, sjson.TrustRawMessage)
	if err != nil {
		return nil, fmt.Errorf("encoding a JSON-RPC message: %w", err)
	}
	return data, nil
}

// EncodeResult writes the response with id and result as Encode does,
// without its encoder: the envelope around the result in one buffer.
func EncodeResult(id jsonrpc.ID, result json.RawMessage) ([]byte, error) {
	if !id.IsValid() || len(result) == 0 {
		return Encode(&jsonrpc.Response{ID: id, Result: result})
	}
	out := append(make([]byte, 0, 48+len(result)), `{"jsonrpc":"2.0","id":`...)
	out, err := sjson.Append(out, id.Raw(), sjson.TrustRawMessage)
	if err != nil {
		return nil, fmt.Errorf("encoding a JSON-RPC message: %w", err)
	}
	out = append(out, `,"result":`...)
	return append(append(out, result...), '}'), nil
}

// wireError is the error object of a response, as the SDK makes it: an
// error that is not a *jsonrpc.Error keeps its text and the code of the
// *jsonrpc.Error it wraps, if any.
func wireError(err error) *jsonrpc.Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*jsonrpc.Error); ok {
		return e
	}
	out := &jsonrpc.Error{Message: err.Error()}
	var wrapped *jsonrpc.Error
	if errors.As(err, &wrapped) {
		out.Code = wrapped.Code
	}
	return out
}

// MediaType is the media type of a Content-Type or Accept element,
// lower-cased, without parameters: what the hot path compares, without
// mime.ParseMediaType's allocations.
func MediaType(v string) string {
	mt, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}
