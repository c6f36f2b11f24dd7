// Package jsonstr writes Go strings as JSON strings, without an encoder:
// the log line's and the request log entry's hot paths write theirs by
// hand. Both escape the quote, the backslash and the control characters,
// replace each byte of invalid UTF-8 by \ufffd and escape U+2028 and
// U+2029; they differ as the encoders they stand for differ.
package jsonstr

import "unicode/utf8"

// Append appends s as log/slog's JSON handler writes a string: < > &
// as they are, control characters other than \n \r \t as \u00XX.
func Append(b []byte, s string) []byte { return appendString(b, s, &plain, false) }

// AppendHTMLSafe appends s as encoding/json writes a string: also < > &
// as \u003c \u003e \u0026, and \b \f in their short forms.
func AppendHTMLSafe(b []byte, s string) []byte { return appendString(b, s, &htmlSafe, true) }

// plain and htmlSafe hold the bytes copied as they are.
var plain, htmlSafe = func() (p, h [256]bool) {
	for c := byte(' '); c < utf8.RuneSelf; c++ {
		p[c] = c != '"' && c != '\\'
		h[c] = p[c] && c != '<' && c != '>' && c != '&'
	}
	return p, h
}()

const digits = "0123456789abcdef"

func appendString(b []byte, s string, safe *[256]bool, shortBF bool) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is still to be copied
	for i := 0; i < len(s); {
		c := s[i]
		if safe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b' && shortBF:
				b = append(b, '\\', 'b')
			case c == '\f' && shortBF:
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', digits[c>>4], digits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', digits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
