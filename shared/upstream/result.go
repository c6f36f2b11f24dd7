package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// An upstream's answer to a tools/call is read through one buffer of
// answerBuffer bytes. A message that fits is read whole, as before: a bad
// one is a clean error. The result of a larger answer is not read: the
// Result is left at its start, and WriteTo copies it to the client a
// buffer at a time (wire.Reader), so that what a call holds does not grow
// with the result. Only the result value goes on; the upstream's envelope
// (its id, its jsonrpc) is read and checked, never copied.
const answerBuffer = 64 << 10

var (
	answerReaders = sync.Pool{New: func() any { return wire.NewReader(nil, answerBuffer) }}
	lineReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
)

// resultTypeKey and resultTypeComplete are the member a 2026-07-28 result
// gets when its upstream left it out (Call.ResultType).
const (
	resultTypeKey      = "resultType"
	resultTypeComplete = `"complete"`
)

// Result is a tools/call result on its way to the client: the upstream's,
// unchanged but for its whitespace, and for the resultType Call.ResultType
// asks for. It may still be on the upstream's connection: WriteTo writes
// it, once; Close releases the connection and must be called, whether
// WriteTo was or not.
type Result struct {
	// Typed reports that a 2026-07-28 upstream wrote it with its
	// resultType.
	Typed   bool
	held    []byte        // the whole result, when it was read whole
	stream  *resultStream // the answer the result is still in, else nil
	addType bool
	// examined is set while Hold reads the result to examine it: its
	// inputRequests are not refused then (WriteTo).
	examined bool
	written  bool
	closed   bool
	upstream string
}

// WriteTo writes the result to w as one compact JSON value (no raw
// newline: it fits one SSE data line), with "resultType":"complete" added
// at the end of a result object without one when the call asked
// (Call.ResultType). A result still on the upstream's connection is
// checked as it is copied: when it turns out invalid, nested deeper than
// wire.MaxDepth, longer than the pool's MaxMessageBytes, cut off, with
// inputRequests at its top level (which only Pending's caller may pass
// on, rewritten), or its answer was not the call's after all (an id
// written after the result),
// WriteTo fails after writing part of it, and the client's response can
// only be abandoned. It can be called once.
func (r *Result) WriteTo(w io.Writer) (int64, error) {
	switch {
	case r.closed:
		return 0, errors.New("upstream result: written after Close")
	case r.written:
		return 0, errors.New("upstream result: written twice")
	}
	r.written = true
	o := wire.CopyOptions{MaxDepth: wire.MaxDepth - 1}
	if !r.examined {
		// A result with input requests goes to a client only examined
		// and rewritten (Pending), never as it is: one that evaded
		// Pending (past its first 64 KiB, or escaped) is cut short.
		o.RefuseKey = "inputRequests"
	}
	if r.addType {
		o.AddKey, o.AddValue = resultTypeKey, resultTypeComplete
	}
	if r.stream == nil {
		return wire.NewBytesReader(r.held).CopyValue(w, o)
	}
	n, err := r.stream.rd.CopyValue(w, o)
	if err == nil {
		err = r.stream.finish()
	}
	if err != nil {
		return n, fmt.Errorf("upstream %s: relay the result: %w", r.upstream, err)
	}
	return n, nil
}

// Pending returns the result, and its resultType, when a 2026-07-28
// upstream answered with a result that is not the call's final one: an
// input-required result, or the tasks extension's task; the caller must
// rewrite it before a client gets it. A result of another resultType
// with inputRequests is reported as input_required: a client may act on
// them all the same. "" and nil for any other result.
// Such a result is small, read whole: only a held result that holds the
// string "input_required", "task" or "inputRequests", or a \u escape
// (with which an upstream may write them otherwise), is decoded, of a
// 2026-07-28 upstream or going to a 2026-07-28 client (Call.ResultType),
// whose resultType an upstream of an older version may not choose (the
// caller refuses it: Typed is false); between older versions, one with
// "inputRequests", which are refused too. Large results cost nothing
// more.
func (r *Result) Pending() (resultType string, raw []byte) {
	if r.stream != nil {
		return "", nil
	}
	if !(r.Typed || r.addType) {
		// Between 2025 versions, only inputRequests are looked for:
		// the go-sdk's client acts on them whatever the version.
		if !bytes.Contains(r.held, []byte(`"inputRequests"`)) {
			return "", nil
		}
	} else if !mayBePending(r.held) && !bytes.Contains(r.held, []byte(`\u`)) {
		return "", nil
	}
	var top struct {
		ResultType    string          `json:"resultType"`
		InputRequests json.RawMessage `json:"inputRequests"`
	}
	if wire.Unmarshal(r.held, &top) != nil {
		return "", nil
	}
	switch top.ResultType {
	case "input_required", "task":
		return top.ResultType, r.held
	}
	if len(top.InputRequests) > 0 && string(top.InputRequests) != "null" {
		// A client may act on input requests whatever the resultType
		// (the go-sdk's does): they are an input-required result's.
		return "input_required", r.held
	}
	return "", nil
}

func mayBePending(b []byte) bool {
	return bytes.Contains(b, []byte(`"input_required"`)) || bytes.Contains(b, []byte(`"task"`)) ||
		bytes.Contains(b, []byte(`"inputRequests"`))
}

// MayBePending reports whether a result too large to have been read
// whole, of a 2026-07-28 upstream or going to a 2026-07-28 client, holds
// "input_required", "task" or "inputRequests" in its first buffer: the
// caller then reads it whole (Pool.Hold) to find out (Pending), so that
// a large pending result is not relayed unexamined. Other results are not looked at.
func (r *Result) MayBePending() bool {
	if !(r.Typed || r.addType) || r.stream == nil {
		return false
	}
	window, _ := r.stream.rd.Peek()
	return mayBePending(window)
}

// Streaming reports whether the result is still on the upstream's
// connection, too large to have been read whole: writing it may fail
// after its first bytes.
func (r *Result) Streaming() bool { return r.stream != nil }

// Close releases the upstream's connection. It is safe to call twice.
func (r *Result) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	if s := r.stream; s != nil {
		r.stream = nil
		s.release()
	}
	return nil
}

// resultStream is an answer read up to the start of its result.
type resultStream struct {
	body  io.Closer
	rd    *wire.Reader
	lines *bufio.Reader // of an event stream, else nil
	id    jsonrpc.ID
	// version and idRaw are the envelope's members read before the
	// result; the rest are read after it.
	version, idRaw []byte
}

func (s *resultStream) release() {
	if s.body != nil {
		s.body.Close()
	}
	s.rd.Reset(nil)
	answerReaders.Put(s.rd)
	if s.lines != nil {
		s.lines.Reset(nil)
		lineReaders.Put(s.lines)
	}
}

// finish reads the rest of the answer after its result, which must make
// it the response to the call: a JSON-RPC 2.0 response with the call's
// id, without an error or a second result, and nothing after it.
func (s *resultStream) finish() error {
	rd := s.rd
	for {
		c, err := rd.NextByte()
		if err != nil {
			return unexpectedEOF(err)
		}
		if c == '}' {
			break
		}
		if c != ',' {
			return fmt.Errorf("the answer has %q after its result", c)
		}
		name, err := memberName(rd)
		if err != nil {
			return err
		}
		switch name {
		case "result":
			return errors.New("the answer has two results")
		case "method":
			return errors.New("the answer is not a response")
		case "error":
			v, err := captureValue(rd, 16)
			if err != nil {
				return err
			}
			if string(v) != "null" {
				return errors.New("the answer has both a result and an error")
			}
		case "id":
			if s.idRaw, err = captureValue(rd, maxIDBytes); err != nil {
				return err
			}
		case "jsonrpc":
			if s.version, err = captureValue(rd, 16); err != nil {
				return err
			}
		default:
			if _, err := rd.CopyValue(nil, wire.CopyOptions{MaxDepth: wire.MaxDepth - 1}); err != nil {
				return err
			}
		}
	}
	if err := rd.SkipSpace(); err == nil {
		return errors.New("the answer has more after its end")
	} else if err != io.EOF {
		return err
	}
	if !isVersion2(s.version) {
		return errors.New(`the answer is not JSON-RPC "2.0"`)
	}
	if !sameID(s.idRaw, s.id) {
		return errors.New("the answer is to another request than the call")
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// maxIDBytes bounds the id of an answer the pool reads: its own are far
// shorter, and a longer one is not the call's.
const maxIDBytes = 256

// capture keeps the first bytes written to it, up to its capacity, and
// notes that more came.
type capture struct {
	buf  []byte
	over bool
}

func (c *capture) Write(p []byte) (int, error) {
	if len(c.buf)+len(p) > cap(c.buf) {
		c.over = true
	} else {
		c.buf = append(c.buf, p...)
	}
	return len(p), nil
}

// captureValue reads the next value compacted, when it is at most max
// bytes; a longer one is read and returned as nil.
func captureValue(rd *wire.Reader, max int) ([]byte, error) {
	c := capture{buf: make([]byte, 0, max)}
	if _, err := rd.CopyValue(&c, wire.CopyOptions{MaxDepth: wire.MaxDepth - 1}); err != nil {
		return nil, err
	}
	if c.over {
		return nil, nil
	}
	return c.buf, nil
}

// memberName reads an object member's name and the colon after it. A name
// too long to be one the pool looks for, however escaped (six bytes a
// letter), comes back as "".
func memberName(rd *wire.Reader) (string, error) {
	if c, err := rd.PeekByte(); err != nil {
		return "", unexpectedEOF(err)
	} else if c != '"' {
		return "", fmt.Errorf("the answer has %q where a member's name belongs", c)
	}
	raw, err := captureValue(rd, 64)
	if err != nil {
		return "", err
	}
	if c, err := rd.NextByte(); err != nil {
		return "", unexpectedEOF(err)
	} else if c != ':' {
		return "", fmt.Errorf("the answer has %q after a member's name", c)
	}
	if raw == nil {
		return "", nil
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", err
	}
	return name, nil
}

// isVersion2 reports whether raw is the JSON string "2.0".
func isVersion2(raw []byte) bool {
	var v string
	return raw != nil && json.Unmarshal(raw, &v) == nil && v == "2.0"
}

// sameID reports whether raw, an id as an answer wrote it, is id.
func sameID(raw []byte, id jsonrpc.ID) bool {
	var v any
	if raw == nil || wire.Unmarshal(raw, &v) != nil {
		return false
	}
	got, err := jsonrpc.MakeID(v)
	return err == nil && got == id
}

// head is what an answer too large for its buffer says before its result.
type head struct {
	resultAt       int // offset of the result value
	version, idRaw []byte
}

// parseHead reads the start of an answer, data, up to its result. ok is
// false when data holds something else first: an error, a method (a
// request or notification), or members that fill the buffer. Such a
// message is read whole, as every message was before.
func parseHead(data []byte) (h head, ok bool) {
	rd := wire.NewBytesReader(data)
	if c, err := rd.NextByte(); err != nil || c != '{' {
		return head{}, false
	}
	for n := 0; ; n++ {
		if n > 0 {
			if c, err := rd.NextByte(); err != nil || c != ',' {
				return head{}, false
			}
		}
		name, err := memberName(rd)
		if err != nil {
			return head{}, false
		}
		switch name {
		case "result":
			if rd.SkipSpace() != nil {
				return head{}, false
			}
			h.resultAt = len(data) - rd.Buffered()
			return h, true
		case "method", "error", "":
			return head{}, false
		case "id":
			h.idRaw, err = captureValue(rd, maxIDBytes)
		case "jsonrpc":
			h.version, err = captureValue(rd, 16)
		default:
			_, err = rd.CopyValue(nil, wire.CopyOptions{MaxDepth: wire.MaxDepth - 1})
		}
		if err != nil {
			return head{}, false
		}
	}
}

// readMessage reads one message from rd, which reads a JSON body or the
// data of one event. The answer to id comes back as a Result, read whole
// or left at the start of its result (its stream then holds rd), or as
// the *jsonrpc.Error it answered with; any other message comes back as
// other, with raw its bytes (its own copy); nil, nil, nil, nil is a
// message that is neither, or an answer to another request. What is read
// whole is charged to meter.
func readMessage(ctx context.Context, rd *wire.Reader, meter *budget.Meter, id jsonrpc.ID) (res *Result, other jsonrpc.Message, raw []byte, err error) {
	data, err := rd.Peek()
	switch {
	case err == io.EOF:
		if err := meter.Cover(ctx, int64(len(data))); err != nil {
			return nil, nil, nil, err
		}
		if result, ok := plainResult(rd, id); ok {
			// Only the result is kept: no decoding, one copy.
			return &Result{held: bytes.Clone(result)}, nil, nil, nil
		}
		return wholeMessage(bytes.Clone(data), id)
	case err != nil:
		return nil, nil, nil, err
	}
	if h, ok := parseHead(data); ok {
		if (h.version != nil && !isVersion2(h.version)) || (h.idRaw != nil && !sameID(h.idRaw, id)) {
			return nil, nil, nil, nil
		}
		// The buffer is what the call holds from now on.
		if err := meter.Cover(ctx, int64(len(data))); err != nil {
			return nil, nil, nil, err
		}
		// What of the result is buffered is checked now, while a bad
		// one can still fail the call cleanly: a result nested too deep
		// is so within its first bytes, and most invalid ones are.
		if err := checkStart(data[h.resultAt:]); err != nil {
			return nil, nil, nil, err
		}
		rd.Discard(h.resultAt)
		return &Result{stream: &resultStream{rd: rd, id: id, version: h.version, idRaw: h.idRaw}}, nil, nil, nil
	}
	whole, err := meter.ReadAll(ctx, rd)
	if err != nil {
		return nil, nil, nil, err
	}
	return wholeMessage(whole, id)
}

// checkStart checks the start of a JSON value: an error when it is
// invalid or nested too deep already, nil when it may go on.
func checkStart(start []byte) error {
	_, err := wire.NewBytesReader(start).CopyValue(nil, wire.CopyOptions{MaxDepth: wire.MaxDepth - 1})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// wholeMessage is readMessage of a message read whole into data.
func wholeMessage(data []byte, id jsonrpc.ID) (*Result, jsonrpc.Message, []byte, error) {
	msg, err := wire.Decode(data)
	if err != nil {
		return nil, nil, nil, nil // not a JSON-RPC message: nothing of the call's
	}
	if resp, ok := msg.(*jsonrpc.Response); ok && resp.ID == id {
		if resp.Error != nil {
			return nil, nil, nil, resp.Error
		}
		if len(resp.Result) == 0 {
			return nil, nil, nil, errors.New("the answer has neither a result nor an error")
		}
		return &Result{held: resp.Result}, nil, nil, nil
	}
	return nil, msg, data, nil
}

// limitReader fails with a *budget.TooLargeError once more than limit
// bytes are read.
type limitReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, &budget.TooLargeError{Limit: l.limit}
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if l.left -= int64(n); l.left < 0 {
		return n + int(l.left), &budget.TooLargeError{Limit: l.limit}
	}
	return n, err
}
