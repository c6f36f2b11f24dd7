package upstream

import "mcpproxy.dev/mcpproxy/shared/wire"

// A held result going to a 2026-07-28 client (Call.ResultType) was read
// into a new buffer through WriteTo (six allocations for a small one) to
// be compacted and given its resultType. Most held results are compact
// already, and a 2026-07-28 upstream's have their resultType: typedShape
// settles those without WriteTo.

// typedShape says what WriteTo writes of held, a valid JSON value, with
// "resultType":"complete" added (addType), when held is compact, nested
// at most wire.MaxDepth-1 deep, and its top-level names are written
// without escapes and are not inputRequests (unless examined: WriteTo
// would refuse them): held itself (add false), or, for an object without
// a resultType, held with the member added before its '}' (add true,
// typedResult). ok is false otherwise, and WriteTo must write it.
func typedShape(held []byte, examined bool) (add, members, ok bool) {
	n := len(held)
	if n == 0 || space(held[0]) || space(held[n-1]) {
		return false, false, false
	}
	switch held[0] {
	case '{':
	case '[':
		return false, false, false // may hold whitespace: WriteTo's to drop
	default:
		// A string, a number or a literal: nothing is added, and no
		// whitespace within to drop.
		return false, false, true
	}
	depth, hasType := 0, false
	key := false // the next string at depth 1 is a name
	for i := 0; i < len(held); i++ {
		switch c := held[i]; c {
		case ' ', '\t', '\n', '\r':
			return false, false, false
		case '{', '[':
			if depth++; depth > wire.MaxDepth-1 {
				return false, false, false
			}
			key = c == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		case ':':
			key = false
		case '"':
			j := i + 1
			for j < len(held) && held[j] != '"' && held[j] != '\\' {
				j++
			}
			if depth == 1 && key {
				if j == len(held) || held[j] == '\\' {
					return false, false, false // an escaped name: WriteTo compares it decoded
				}
				members = true
				switch string(held[i+1 : j]) {
				case resultTypeKey:
					hasType = true
				case "inputRequests":
					if !examined {
						return false, false, false
					}
				}
				i = j
				continue
			}
			// A value's string: skipped, escapes and all.
			for j < len(held) && held[j] != '"' {
				if held[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(held) {
				return false, false, false
			}
			i = j
		}
	}
	if depth != 0 || held[n-1] != '}' {
		return false, false, false
	}
	return !hasType, members, true
}

// typedResult is held, an object without a resultType (typedShape), with
// "resultType":"complete" added before its '}', as WriteTo adds it.
func typedResult(held []byte, members bool) []byte {
	out := make([]byte, 0, len(held)+len(`,"`+resultTypeKey+`":`+resultTypeComplete))
	out = append(out, held[:len(held)-1]...)
	if members {
		out = append(out, ',')
	}
	return append(out, `"`+resultTypeKey+`":`+resultTypeComplete+`}`...)
}

func space(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
