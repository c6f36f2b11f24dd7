package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"mcpproxy.dev/mcpproxy/shared/jsonstr"
)

// cloudHandler writes each record as one line of Cloud Logging's
// structured JSON, in one Write made before Handle returns (New), or
// with the lines around it in one Write a little later (NewBatched):
//
//	{"time":"…","severity":"INFO","message":"…",attributes…}
//
// It is slog's JSONHandler's format with Cloud Logging's key names, and
// costs less than it on the proxy's request line: that line comes with
// every request.
type cloudHandler struct {
	out   *output
	level slog.Leveler
	// pre is the attributes of With, encoded, each after a comma, with
	// the groups opened before them (open of them).
	pre  []byte
	open int
	// groups are the groups of WithGroup opened after pre: written only
	// when a record has attributes to put in them.
	groups []string
}

// output is the writer the handlers of one logger share.
type output struct {
	mu sync.Mutex // held for a Write when delay is 0, else for pending
	w  io.Writer

	// With a delay (NewBatched), lines below WARNING wait in pending
	// until a flush writes them all in one Write: delay after the first
	// of them at the latest (timer), or at once when they reach
	// batchBytes, when a WARNING or ERROR line comes, or on Flush.
	delay   time.Duration
	pending []byte
	timer   *time.Timer
	// wmu is held for a flush's Write, so that flushes write in turn and
	// lines keep their order; spare, the array of the last flush, is
	// pending's next one. Both are wmu's.
	wmu   sync.Mutex
	spare []byte
}

const (
	// batchBytes of waiting lines are written at once. Whoever logs the
	// line that reaches it writes them; should that Write block (a
	// reader that does not keep up), so does every logger after it,
	// which bounds what waits.
	batchBytes = 32 << 10
	// keepBytes is the largest array kept for the next batch.
	keepBytes = 256 << 10
)

// write writes line b of level, or leaves it waiting (NewBatched).
func (o *output) write(b []byte, level slog.Level) error {
	if o.delay <= 0 {
		o.mu.Lock()
		_, err := o.w.Write(b)
		o.mu.Unlock()
		return err
	}
	o.mu.Lock()
	o.pending = append(o.pending, b...)
	n := len(o.pending)
	if n == len(b) { // the first line waiting
		o.timer.Reset(o.delay)
	}
	o.mu.Unlock()
	if level >= slog.LevelWarn || n >= batchBytes {
		return o.flush()
	}
	return nil
}

// flush writes the waiting lines in one Write.
func (o *output) flush() error {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.mu.Lock()
	b := o.pending
	o.pending, o.spare = o.spare[:0], nil
	o.mu.Unlock()
	err := writeLines(o.w, b)
	if cap(b) <= keepBytes {
		o.spare = b[:0]
	}
	return err
}

// pipeBuf is the most a write to a pipe can hold and stay whole among
// the writes of other writers to the same pipe (POSIX PIPE_BUF, 4096 on
// Linux).
const pipeBuf = 4096

// writeLines writes the whole lines of b in Writes of at most pipeBuf
// bytes each, cut after a newline (a longer line in a Write of its own):
// as when each line was a Write of its own, whatever else writes to the
// same pipe (stderr) can come between lines, never within one.
func writeLines(w io.Writer, b []byte) error {
	for len(b) > 0 {
		n := len(b)
		if n > pipeBuf {
			if i := bytes.LastIndexByte(b[:pipeBuf], '\n'); i >= 0 {
				n = i + 1
			} else if i := bytes.IndexByte(b, '\n'); i >= 0 {
				n = i + 1
			}
		}
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// lines holds the buffers lines are made in.
var lines = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func newCloudHandler(w io.Writer, level slog.Leveler, delay time.Duration) *cloudHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	out := &output{w: w, delay: delay}
	if delay > 0 {
		out.timer = time.AfterFunc(delay, func() { out.flush() })
		out.timer.Stop()
	}
	return &cloudHandler{out: out, level: level}
}

func (h *cloudHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *cloudHandler) Handle(_ context.Context, r slog.Record) error {
	return h.line(r.Time, r.Level, r.Message, &r, nil)
}

// line writes one line: the attributes of r (when not nil), then attrs.
func (h *cloudHandler) line(t time.Time, level slog.Level, msg string, r *slog.Record, attrs []slog.Attr) error {
	bp := lines.Get().(*[]byte)
	b := append((*bp)[:0], '{')
	if !t.IsZero() {
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `",`...)
	}
	b = append(b, `"severity":"`...)
	b = append(b, severity(level)...)
	b = append(b, `","message":`...)
	b = appendString(b, msg)
	b = append(b, h.pre...)
	n := len(attrs)
	if r != nil {
		n += r.NumAttrs()
	}
	if n > 0 {
		mark := len(b)
		for _, g := range h.groups {
			b = appendKey(b, g)
			b = append(b, '{')
		}
		inner := len(b)
		if r != nil {
			r.Attrs(func(a slog.Attr) bool {
				b = appendAttr(b, a)
				return true
			})
		}
		for _, a := range attrs {
			b = appendAttr(b, a)
		}
		if len(b) == inner { // every attribute was empty: no groups either
			b = b[:mark]
		} else {
			for range h.groups {
				b = append(b, '}')
			}
		}
	}
	for range h.open {
		b = append(b, '}')
	}
	b = append(b, "}\n"...)
	err := h.out.write(b, level)
	if cap(b) <= 64<<10 { // a rare huge line is not kept
		*bp = b
		lines.Put(bp)
	}
	return err
}

// LogAttrs logs a message with attrs through l at level, with no source
// location, as l.LogAttrs would without walking the stack for one. With
// a logger of New the line is written from attrs as they are: a line of
// many attributes (the proxy's request line) needs no slog.Record,
// which would copy those past its first five into a slice of its own.
func LogAttrs(ctx context.Context, l *slog.Logger, level slog.Level, msg string, attrs []slog.Attr) {
	h := l.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	if ch, ok := h.(*cloudHandler); ok {
		ch.line(time.Now(), level, msg, nil, attrs)
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0)
	r.AddAttrs(attrs...)
	h.Handle(ctx, r)
}

func (h *cloudHandler) WithAttrs(as []slog.Attr) slog.Handler {
	// Encoded as they will be in a line: after a quote, so that the
	// first takes its comma.
	b := append([]byte{'"'}, h.pre...)
	for _, g := range h.groups {
		b = appendKey(b, g)
		b = append(b, '{')
	}
	inner := len(b)
	for _, a := range as {
		b = appendAttr(b, a)
	}
	if len(b) == inner {
		return h // nothing to add: the groups stay pending
	}
	return &cloudHandler{out: h.out, level: h.level, pre: b[1:], open: h.open + len(h.groups)}
}

func (h *cloudHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(h.groups[:len(h.groups):len(h.groups)], name)
	return &h2
}

// appendKey appends "key": after a comma, unless it opens an object.
func appendKey(b []byte, key string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = appendString(b, key)
	return append(b, ':')
}

// appendAttr appends a, as slog's JSONHandler would; nothing for an
// empty attribute or group.
func appendAttr(b []byte, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() == slog.KindAny && v.Any() == nil {
		return b
	}
	if v.Kind() == slog.KindGroup {
		as := v.Group()
		if len(as) == 0 {
			return b
		}
		if a.Key == "" { // inlined
			for _, ga := range as {
				b = appendAttr(b, ga)
			}
			return b
		}
		mark := len(b)
		b = appendKey(b, a.Key)
		b = append(b, '{')
		inner := len(b)
		for _, ga := range as {
			b = appendAttr(b, ga)
		}
		if len(b) == inner {
			return b[:mark]
		}
		return append(b, '}')
	}
	b = appendKey(b, a.Key)
	return appendValue(b, v)
}

func appendValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return appendString(b, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	}
	x := v.Any()
	if err, ok := x.(error); ok {
		if _, marshals := x.(json.Marshaler); !marshals {
			return appendString(b, err.Error())
		}
	}
	j, err := json.Marshal(x)
	if err != nil {
		return appendString(b, "!ERROR:"+err.Error())
	}
	return append(b, j...)
}

// appendString appends s as a JSON string, as slog's JSON handler does.
func appendString(b []byte, s string) []byte { return jsonstr.Append(b, s) }
