package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// A result relayed whole costs its size several times over (read, decoded,
// encoded, written). Reader copies one JSON value from a stream to a
// writer through one fixed buffer instead, checking it as encoding/json
// would and dropping the whitespace between tokens as json.Compact does,
// so that what a relay holds does not grow with what it relays. It is
// written by hand: encoding/json and segmentio's decoder both want the
// whole value in memory, and a json.Decoder's Token API allocates per
// token and does not copy.

// Reader reads JSON values from a source through one buffer of a fixed
// size. It is also an io.Reader of what is left, buffered bytes first. It
// is not safe for concurrent use.
type Reader struct {
	src  io.Reader
	buf  []byte // the unread bytes are buf[r:end]
	r    int
	end  int
	err  error // the source's, once it gave one: returned when buf runs dry
	base int64 // source bytes that came before buf[0], for error offsets
	// readOnly: buf is the caller's (NewBytesReader), never written to.
	readOnly bool
}

// NewReader reads src through a buffer of size bytes (at least 512).
func NewReader(src io.Reader, size int) *Reader {
	return &Reader{src: src, buf: make([]byte, max(size, 512))}
}

// NewBytesReader reads data, which it never changes.
func NewBytesReader(data []byte) *Reader {
	return &Reader{buf: data, end: len(data), err: io.EOF, readOnly: true}
}

// Reset makes d read src from its start, keeping the buffer.
func (d *Reader) Reset(src io.Reader) {
	if d.readOnly {
		panic("wire: Reset of a Reader of bytes")
	}
	*d = Reader{src: src, buf: d.buf}
}

// Size is the size of the buffer.
func (d *Reader) Size() int { return len(d.buf) }

// Peek fills the buffer as far as the source allows and returns the
// unread bytes, which it does not consume: they stay valid until the next
// call of another method. err is the source's error when it ended before
// the buffer was full (io.EOF when it simply ended: the bytes returned are
// all that is left).
func (d *Reader) Peek() ([]byte, error) {
	for d.err == nil && (d.r > 0 || d.end < len(d.buf)) {
		d.fill()
	}
	return d.buf[d.r:d.end], d.err
}

// Discard skips n buffered bytes (at most Buffered).
func (d *Reader) Discard(n int) {
	if n < 0 || n > d.end-d.r {
		panic("wire: Discard past the buffered bytes")
	}
	d.r += n
}

// Buffered is the number of bytes read from the source and not yet from d.
func (d *Reader) Buffered() int { return d.end - d.r }

// Read reads what is left: the buffered bytes, then the source.
func (d *Reader) Read(p []byte) (int, error) {
	if d.r == d.end {
		if d.err != nil {
			return 0, d.err
		}
		if len(p) >= len(d.buf) {
			// Large reads go straight to the source.
			n, err := d.src.Read(p)
			d.base += int64(n)
			if err != nil {
				d.err = err
			}
			return n, nil
		}
		d.fill()
		if d.r == d.end {
			return 0, d.err
		}
	}
	n := copy(p, d.buf[d.r:d.end])
	d.r += n
	return n, nil
}

// fill moves the unread bytes to the start of the buffer and reads once
// more from the source into the room behind them.
func (d *Reader) fill() {
	if d.readOnly {
		return
	}
	if d.r > 0 {
		d.base += int64(d.r)
		d.end = copy(d.buf, d.buf[d.r:d.end])
		d.r = 0
	}
	for range 100 {
		n, err := d.src.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			d.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	d.err = io.ErrNoProgress
}

// offset is the position in the source of buf[i].
func (d *Reader) offset(i int) int64 { return d.base + int64(i) }

// NextByte skips whitespace and reads the byte after it: io.EOF when the
// source ended first, or the source's error.
func (d *Reader) NextByte() (byte, error) {
	for {
		for d.r < d.end {
			c := d.buf[d.r]
			d.r++
			if !isSpace(c) {
				return c, nil
			}
		}
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
}

// PeekByte skips whitespace and returns the byte after it without
// reading it: io.EOF when the source ended first, or the source's error.
func (d *Reader) PeekByte() (byte, error) {
	c, err := d.NextByte()
	if err == nil {
		d.r--
	}
	return c, err
}

// SkipSpace skips whitespace: nil when a byte of something else follows,
// io.EOF when the source ends, or the source's error.
func (d *Reader) SkipSpace() error {
	_, err := d.PeekByte()
	return err
}

// CopyOptions are the limits and changes of one CopyValue.
type CopyOptions struct {
	// MaxBytes bounds the value's length in the source (whitespace
	// within it included); a longer one fails with an error wrapping
	// ErrTooLong. 0 means no bound.
	MaxBytes int64
	// MaxDepth is the deepest nesting of arrays and objects the value
	// may have (1 for [] or {}); deeper fails with ErrTooDeep. 0, or
	// more than MaxDepth, means MaxDepth. (A value inside a message
	// should get MaxDepth minus its own depth.)
	MaxDepth int
	// AddKey, when set, names a member an object value gets, at the end,
	// when it has none of that name at its top level (names compared as
	// encoding/json decodes them); AddValue is the member's value, raw
	// JSON. This is how an MCP result gets its "resultType".
	AddKey   string
	AddValue string
	// RefuseKey, when set, names a member an object value may not have
	// at its top level (compared as AddKey is): the copy fails with
	// ErrRefusedKey at its name, before its value is written.
	RefuseKey string
}

// ErrRefusedKey is the error of a value with CopyOptions.RefuseKey.
var ErrRefusedKey = errors.New("json: object has a member it may not have")

// ErrTooLong is the error of a value longer than CopyOptions.MaxBytes.
var ErrTooLong = errors.New("json: value longer than its limit")

// SyntaxError is the error of input that is not JSON, with the offset in
// the source of the byte that showed it.
type SyntaxError struct {
	Offset int64
	msg    string
}

func (e *SyntaxError) Error() string { return "json: " + e.msg }

// CopyValue reads the next JSON value, after any whitespace, and writes it
// to w compacted: no whitespace outside strings, so it never holds a raw
// newline, and otherwise as the source has it (as json.Compact does).
// What follows the value is not read. A nil w only checks the value.
//
// The value is written as it is read, a buffer at a time: when it turns
// out invalid, too deep, too long, or the source fails, part of it has
// been written already, and the error says so (a *SyntaxError, ErrTooDeep,
// ErrTooLong, io.ErrUnexpectedEOF, the source's or w's error).
func (d *Reader) CopyValue(w io.Writer, o CopyOptions) (int64, error) {
	c := copier{d: d, w: w, maxBytes: o.MaxBytes, maxDepth: o.MaxDepth, start: d.offset(d.r)}
	if c.maxDepth <= 0 || c.maxDepth > MaxDepth {
		c.maxDepth = MaxDepth
	}
	if o.AddKey != "" {
		c.addKey = o.AddKey
		c.member = member(o.AddKey, o.AddValue)
	}
	if o.AddKey != "" || o.RefuseKey != "" {
		c.refuseKey = o.RefuseKey
		c.name = make([]byte, 0, 6*max(len(o.AddKey), len(o.RefuseKey))+2)
	}
	return c.run()
}

// Scanner states, between two bytes of the value.
const (
	// States where whitespace may come, first (scan skips it there).
	stValue        = iota // a value is next
	stValueOrClose        // after '[': a value or ']'
	stKeyOrClose          // after '{': a key or '}'
	stKey                 // after ',' in an object: a key
	stColon               // after a key
	stAfter               // after a value within a container: ',' or its close
	stString              // within a string
	stEscape              // after a backslash within a string
	stUnicode             // within \uXXXX
	stMinus               // after a number's '-'
	stZero                // after a number's leading 0
	stInt                 // within a number's integer digits
	stDot                 // after a number's '.'
	stFrac                // within a number's fraction digits
	stE                   // after a number's 'e'
	stESign               // after a number's exponent sign
	stExp                 // within a number's exponent digits
	stLiteral             // within true, false or null
	stDone
)

// copier is the state of one CopyValue. The value's bytes in the buffer
// are written out a buffer at a time: buf[os:wp] is what is ready to be
// written, buf[seg:i] what has been read since the last whitespace, which
// joins it (moved down to wp when whitespace came between).
type copier struct {
	d        *Reader
	w        io.Writer
	written  int64
	err      error // of w
	os, wp   int
	seg      int
	start    int64 // the value's offset in the source
	maxBytes int64
	maxDepth int

	state  int
	key    bool // the string is an object key
	hex    int  // hex digits still due in \uXXXX
	lit    string
	depth  int
	stack  [(MaxDepth + 63) / 64]uint64 // bit set: the level is an object
	addKey string
	// refuseKey is CopyOptions.RefuseKey; refused is set once the
	// top-level key just read is it.
	refuseKey string
	refused   bool
	member    []byte // `,"key":value`, the added member
	has       bool   // the top-level object has a member named addKey
	// name is the top-level key being read while addKey is set; long is
	// set once it is too long to be addKey, however escaped.
	name []byte
	long bool
}

// member is `,"key":value`, in one allocation when key needs no escape.
func member(key, value string) []byte {
	for i := range len(key) {
		if c := key[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(key)
			return append(append(append([]byte{','}, q...), ':'), value...)
		}
	}
	m := make([]byte, 0, len(key)+len(value)+4)
	return append(append(append(append(m, ',', '"'), key...), '"', ':'), value...)
}

func (c *copier) run() (int64, error) {
	d := c.d
	c.os, c.wp, c.seg = d.r, d.r, d.r
	for {
		done, err := c.scan()
		if err == nil && c.maxBytes > 0 && d.offset(d.r)-c.start > c.maxBytes {
			err = fmt.Errorf("%w (%d bytes)", ErrTooLong, c.maxBytes)
		}
		if err != nil {
			return c.written, err
		}
		if done {
			c.flush(d.r)
			return c.written, c.err
		}
		if d.err != nil {
			if d.err == io.EOF {
				if c.state >= stZero && c.state <= stExp && c.state != stDot && c.state != stE && c.state != stESign && c.depth == 0 {
					// A number at the end of the source ends there.
					c.flush(d.r)
					return c.written, c.err
				}
				return c.written, io.ErrUnexpectedEOF
			}
			return c.written, d.err
		}
		c.flush(d.r)
		if c.err != nil {
			return c.written, c.err
		}
		if !d.readOnly {
			d.fill()
			c.os, c.wp, c.seg = 0, 0, 0
		}
	}
}

// commit joins buf[seg:i] to what is ready to be written.
func (c *copier) commit(i int) {
	if c.w == nil {
		c.seg = i
		return
	}
	if c.wp != c.seg {
		switch buf := c.d.buf; {
		case c.d.readOnly:
			// The caller's bytes are not ours to move: what is ready goes
			// out, and the new segment is ready from where it is.
			c.write(buf[c.os:c.wp])
			c.os, c.wp = c.seg, c.seg
		case i-c.seg <= 16:
			// Short segments between spaces, moved down without a call.
			for k := range buf[c.seg:i] {
				buf[c.wp+k] = buf[c.seg+k]
			}
		default:
			copy(buf[c.wp:], buf[c.seg:i])
		}
	}
	c.wp += i - c.seg
	c.seg = i
}

// flush writes what has been read up to i.
func (c *copier) flush(i int) {
	c.commit(i)
	if c.w != nil && c.wp > c.os {
		c.write(c.d.buf[c.os:c.wp])
	}
	c.os = c.wp
}

func (c *copier) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.written += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	c.err = err
}

func (c *copier) syntax(i int, format string, args ...any) error {
	return &SyntaxError{Offset: c.d.offset(i), msg: fmt.Sprintf(format, args...)}
}

// scan reads the buffered bytes: done when the value ended, false when
// it needs more. The state lives in locals while it runs.
func (c *copier) scan() (done bool, err error) {
	d := c.d
	buf := d.buf[:d.end]
	i := d.r
	state, depth := c.state, c.depth
	wp, seg := c.wp, c.seg
loop:
	for i < len(buf) {
		b := buf[i]
		if state <= stAfter && space[b] {
			// Whitespace between tokens: what came before it joins what
			// is to be written, and what comes after starts anew.
			switch {
			case c.w == nil:
			case d.readOnly:
				c.wp, c.seg = wp, seg
				c.commit(i)
				wp = c.wp
			default:
				if wp != seg {
					copy(buf[wp:], buf[seg:i])
				}
				wp += i - seg
			}
			for i++; i < len(buf) && space[buf[i]]; i++ {
			}
			seg = i
			continue
		}
		switch state {
		case stString:
			j := i
			for j+8 <= len(buf) {
				if m := special8(binary.LittleEndian.Uint64(buf[j : j+8])); m != 0 {
					j += bits.TrailingZeros64(m) >> 3
					goto special
				}
				j += 8
			}
			for j < len(buf) && !special[buf[j]] {
				j++
			}
		special:
			if c.key && c.name != nil && !c.long {
				c.keep(buf[i:j])
			}
			i = j
			if j == len(buf) {
				break loop
			}
			switch buf[j] {
			case '"':
				if c.key && c.name != nil {
					c.keep(buf[j : j+1])
					if c.nameEnd(); c.refused {
						err = ErrRefusedKey
						break loop
					}
				}
				i++
				if c.key {
					state = stColon
				} else if depth == 0 {
					done = true
					break loop
				} else {
					state = stAfter
				}
			case '\\':
				if c.key && c.name != nil {
					c.keep(buf[j : j+1])
				}
				i++
				state = stEscape
			default:
				err = c.syntax(j, "invalid character %s in string literal", quoteChar(buf[j]))
				break loop
			}
		case stValue, stValueOrClose:
			switch {
			case b == '"':
				i++
				state, c.key = stString, false
			case b == '{' || b == '[':
				if depth >= c.maxDepth {
					err = ErrTooDeep
					break loop
				}
				if b == '{' {
					c.stack[depth/64] |= 1 << (depth % 64)
					state = stKeyOrClose
				} else {
					c.stack[depth/64] &^= 1 << (depth % 64)
					state = stValueOrClose
				}
				depth++
				i++
			case b >= '1' && b <= '9':
				i++
				state = stInt
			case b == '0':
				i++
				state = stZero
			case b == '-':
				i++
				state = stMinus
			case b == 't':
				state, c.lit = stLiteral, "true"
			case b == 'f':
				state, c.lit = stLiteral, "false"
			case b == 'n':
				state, c.lit = stLiteral, "null"
			case b == ']' && state == stValueOrClose:
				i++
				if depth--; depth == 0 {
					done = true
					break loop
				}
				state = stAfter
			default:
				err = c.syntax(i, "invalid character %s looking for beginning of value", quoteChar(b))
				break loop
			}
		case stAfter:
			obj := c.stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			switch {
			case b == ',':
				i++
				if obj {
					state = stKey
				} else {
					state = stValue
				}
			case b == '}' && obj:
				if depth == 1 && c.addKey != "" {
					c.wp, c.seg = wp, seg
					c.closeObject(i, false)
					wp, seg = c.wp, c.seg
				}
				i++
				if depth--; depth == 0 {
					done = true
					break loop
				}
			case b == ']' && !obj:
				i++
				if depth--; depth == 0 {
					done = true
					break loop
				}
			case obj:
				err = c.syntax(i, "invalid character %s after object key:value pair", quoteChar(b))
				break loop
			default:
				err = c.syntax(i, "invalid character %s after array element", quoteChar(b))
				break loop
			}
		case stKeyOrClose, stKey:
			switch {
			case b == '"':
				i++
				state, c.key = stString, true
				if c.name != nil {
					c.long = depth != 1
					c.name = append(c.name[:0], '"')
				}
			case b == '}' && state == stKeyOrClose:
				if depth == 1 && c.addKey != "" {
					c.wp, c.seg = wp, seg
					c.closeObject(i, true)
					wp, seg = c.wp, c.seg
				}
				i++
				if depth--; depth == 0 {
					done = true
					break loop
				}
				state = stAfter
			default:
				err = c.syntax(i, "invalid character %s looking for beginning of object key string", quoteChar(b))
				break loop
			}
		case stColon:
			if b != ':' {
				err = c.syntax(i, "invalid character %s after object key", quoteChar(b))
				break loop
			}
			i++
			state = stValue
		case stInt, stFrac, stExp:
			for i < len(buf) && buf[i] >= '0' && buf[i] <= '9' {
				i++
			}
			if i == len(buf) {
				break loop
			}
			switch b := buf[i]; {
			case b == '.' && state == stInt:
				i++
				state = stDot
			case (b == 'e' || b == 'E') && state != stExp:
				i++
				state = stE
			case depth == 0:
				done = true
				break loop
			default:
				state = stAfter
			}
		case stZero:
			switch b {
			case '.':
				i++
				state = stDot
			case 'e', 'E':
				i++
				state = stE
			default:
				if depth == 0 {
					done = true
					break loop
				}
				state = stAfter
			}
		case stMinus:
			switch {
			case b == '0':
				state = stZero
			case b >= '1' && b <= '9':
				state = stInt
			default:
				err = c.syntax(i, "invalid character %s in numeric literal", quoteChar(b))
				break loop
			}
			i++
		case stDot:
			if b < '0' || b > '9' {
				err = c.syntax(i, "invalid character %s after decimal point in numeric literal", quoteChar(b))
				break loop
			}
			i++
			state = stFrac
		case stE:
			switch {
			case b == '+' || b == '-':
				state = stESign
			case b >= '0' && b <= '9':
				state = stExp
			default:
				err = c.syntax(i, "invalid character %s in exponent of numeric literal", quoteChar(b))
				break loop
			}
			i++
		case stESign:
			if b < '0' || b > '9' {
				err = c.syntax(i, "invalid character %s in exponent of numeric literal", quoteChar(b))
				break loop
			}
			i++
			state = stExp
		case stEscape:
			switch b {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				state = stString
			case 'u':
				state, c.hex = stUnicode, 4
			default:
				err = c.syntax(i, "invalid character %s in string escape code", quoteChar(b))
				break loop
			}
			if c.key && c.name != nil {
				c.keep(buf[i : i+1])
			}
			i++
		case stUnicode:
			if !isHex(b) {
				err = c.syntax(i, "invalid character %s in \\u hexadecimal character escape", quoteChar(b))
				break loop
			}
			if c.key && c.name != nil {
				c.keep(buf[i : i+1])
			}
			i++
			if c.hex--; c.hex == 0 {
				state = stString
			}
		case stLiteral:
			// c.lit holds what is still due, its first byte next.
			if b != c.lit[0] {
				err = c.syntax(i, "invalid character %s in literal %s (expecting %s)", quoteChar(b), literalName(c.lit), quoteChar(c.lit[0]))
				break loop
			}
			i++
			if c.lit = c.lit[1:]; c.lit == "" {
				if depth == 0 {
					done = true
					break loop
				}
				state = stAfter
			}
		}
	}
	if done {
		state = stDone
	}
	if err == nil {
		err = c.err
	}
	c.state, c.depth, d.r = state, depth, i
	c.wp, c.seg = wp, seg
	return done, err
}

// literalName is the literal whose last bytes rest are.
func literalName(rest string) string {
	for _, l := range []string{"true", "false", "null"} {
		if len(rest) <= len(l) && l[len(l)-len(rest):] == rest {
			return l
		}
	}
	return "literal"
}

// closeObject adds the member addKey before the top-level object's '}'
// at buf[i] when the object has none; empty says it has no member.
func (c *copier) closeObject(i int, empty bool) {
	if c.addKey == "" || c.has || c.w == nil {
		return
	}
	c.flush(i)
	if empty {
		c.write(c.member[1:])
	} else {
		c.write(c.member)
	}
}

// keep adds p to the top-level key being read.
func (c *copier) keep(p []byte) {
	if c.long {
		return
	}
	if len(c.name)+len(p) > cap(c.name) {
		c.long = true
		return
	}
	c.name = append(c.name, p...)
}

// nameEnd notes whether the top-level key just read is addKey, or
// refuseKey.
func (c *copier) nameEnd() {
	if c.long || c.has && c.refuseKey == "" {
		return
	}
	raw := c.name
	if bytes.IndexByte(raw, '\\') < 0 {
		name := raw[1 : len(raw)-1]
		c.has = c.has || c.addKey != "" && string(name) == c.addKey
		c.refused = c.refuseKey != "" && string(name) == c.refuseKey
		return
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		c.has = c.has || c.addKey != "" && s == c.addKey
		c.refused = c.refuseKey != "" && s == c.refuseKey
	}
}

// special marks the bytes that end a run of plain string content.
var special = func() (t [256]bool) {
	for b := range 0x20 {
		t[b] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

const (
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// special8 marks the special bytes among the 8 in x (little-endian): the
// "has a zero byte" trick on x^'"' and x^'\\', and its "has a byte less
// than" form for control characters. A borrow can mark a byte above a
// special one, never below: the lowest mark is exact.
func special8(x uint64) uint64 {
	q := x ^ (ones * '"')
	s := x ^ (ones * '\\')
	return ((q-ones)&^q | (s-ones)&^s | (x-ones*0x20)&^x) & high
}

// space marks JSON's whitespace.
var space = [256]bool{' ': true, '\n': true, '\r': true, '\t': true}

func isSpace(b byte) bool { return space[b] }

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

// quoteChar is how encoding/json names a byte in its errors.
func quoteChar(b byte) string {
	if b == '\'' {
		return `'\''`
	}
	if b == '"' {
		return `'"'`
	}
	s := fmt.Sprintf("%q", string(rune(b)))
	return "'" + s[1:len(s)-1] + "'"
}
