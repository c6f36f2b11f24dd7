package upstream

import (
	"io"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// A small answer read whole was decoded into the SDK's types (wire.Decode):
// ten allocations for a result of a few hundred bytes, which then only
// went on as it was. Most answers are the plainest response there is,
// {"jsonrpc":"2.0","id":<the call's>,"result":<value>} in any order:
// plainResult finds the result of such an answer in place, checked as the
// decoder checks it, and settles nothing else. Any other answer (another
// member or id, an escaped or repeated name, an error, a method, anything
// after the object) is decoded as before, so that it meets the decoder's
// rules, duplicate names included, and no second set of them.

// plainResult returns the result of the message rd holds whole (its Peek
// returned io.EOF) when the message is a plain answer to id: a JSON
// object with only the members "jsonrpc", "id" and "result", each once,
// their names written without escapes; jsonrpc exactly the string "2.0",
// id the call's string id written without escapes, result a valid JSON
// value nested at most wire.MaxDepth-1 deep (checked as WriteTo checks a
// result it streams); JSON whitespace around them. The result is then a
// slice of rd's buffer, without the whitespace around it: the bytes
// wire.Decode would have given. ok is false for any other message, which
// may still be the call's answer: wholeMessage decides. rd is read, its
// buffer left as it was.
func plainResult(rd *wire.Reader, id jsonrpc.ID) (result []byte, ok bool) {
	data, err := rd.Peek()
	if err != io.EOF {
		return nil, false
	}
	want, ok := id.Raw().(string)
	if !ok || !plainString(want) {
		return nil, false
	}
	var start, end int
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return nil, false
	}
	var seen struct{ version, id, result bool }
	for {
		// data[i] is the '{', or the ',' after a member.
		name, after := plainName(data, skipSpace(data, i+1))
		if after < 0 {
			return nil, false
		}
		i = skipSpace(data, after)
		if i == len(data) || data[i] != ':' {
			return nil, false
		}
		i = skipSpace(data, i+1)
		switch name {
		case "jsonrpc":
			if seen.version || !hasString(data, i, "2.0") {
				return nil, false
			}
			seen.version = true
			i += len(`"2.0"`)
		case "id":
			if seen.id || !hasString(data, i, want) {
				return nil, false
			}
			seen.id = true
			i += len(want) + 2
		case "result":
			if seen.result || i == len(data) {
				return nil, false
			}
			seen.result = true
			// rd checks the result where it lies (a wire.Reader of
			// its own would be one more allocation).
			rd.Discard(i - (len(data) - rd.Buffered()))
			if _, err := rd.CopyValue(nil, wire.CopyOptions{MaxDepth: wire.MaxDepth - 1}); err != nil {
				return nil, false
			}
			start, end = i, len(data)-rd.Buffered()
			i = end
		default:
			return nil, false
		}
		i = skipSpace(data, i)
		if i == len(data) {
			return nil, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return nil, false
		}
	}
	if !(seen.version && seen.id && seen.result) || skipSpace(data, i+1) != len(data) {
		return nil, false
	}
	return data[start:end], true
}

// skipSpace is the offset of the first byte of data at or after i that
// is not JSON whitespace, or len(data).
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t') {
		i++
	}
	return i
}

// plainName reads the member name at data[i]: a string of printable ASCII
// without escapes, returned with the offset after it; after is -1 for
// anything else.
func plainName(data []byte, i int) (name string, after int) {
	if i == len(data) || data[i] != '"' {
		return "", -1
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			// Only the names looked for are made strings: no allocation.
			switch s := data[i+1 : j]; string(s) {
			case "jsonrpc":
				return "jsonrpc", j + 1
			case "id":
				return "id", j + 1
			case "result":
				return "result", j + 1
			}
			return "", j + 1
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", -1
		}
	}
	return "", -1
}

// hasString reports whether data holds at i the JSON string s written
// without escapes (s is plainString).
func hasString(data []byte, i int, s string) bool {
	return len(data)-i >= len(s)+2 && data[i] == '"' && string(data[i+1:i+1+len(s)]) == s && data[i+1+len(s)] == '"'
}

// plainString reports whether JSON writes s as it is, between quotes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
