package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/slogtest"
	"time"
)

func TestCloudLoggingShape(t *testing.T) {
	tests := []struct {
		log  func(*slog.Logger)
		want string
	}{
		{func(l *slog.Logger) { l.Debug("d") }, "DEBUG"},
		{func(l *slog.Logger) { l.Info("i") }, "INFO"},
		{func(l *slog.Logger) { l.Warn("w") }, "WARNING"},
		{func(l *slog.Logger) { l.Error("e") }, "ERROR"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		tt.log(New(&buf, slog.LevelDebug).With("instance", "i-1"))
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("not JSON: %q", buf.String())
		}
		if line["severity"] != tt.want {
			t.Errorf("severity = %v; want %s", line["severity"], tt.want)
		}
		if _, ok := line["message"]; !ok {
			t.Errorf("no message field: %v", line)
		}
		if _, ok := line["level"]; ok {
			t.Errorf("slog's level field left in: %v", line)
		}
		if line["instance"] != "i-1" {
			t.Errorf("attribute lost: %v", line)
		}
	}
}

func TestLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelWarn).Info("hidden")
	if buf.Len() != 0 {
		t.Errorf("info written at warn level: %q", buf.String())
	}
}

func TestTrace(t *testing.T) {
	tests := []struct {
		header, value, want string
	}{
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"traceparent", "garbage", ""},
		{"X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/1;o=1", "105445aa7843bc8bf206b12000100000"},
		{"X-Cloud-Trace-Context", "nothex/1", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set(tt.header, tt.value)
		if got := TraceID(r); got != tt.want {
			t.Errorf("TraceID(%s: %s) = %q; want %q", tt.header, tt.value, got, tt.want)
		}
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("traceparent", tests[0].value)
	attrs := TraceAttrs(r, "proj")
	if len(attrs) != 1 || attrs[0].Value.String() != "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceAttrs = %v", attrs)
	}
}

func TestClientIP(t *testing.T) {
	for _, tt := range []struct {
		name   string
		xff    []string
		remote string
		want   string
	}{
		{"one hop", []string{"203.0.113.7"}, "10.0.0.2:5000", "203.0.113.7"},
		{"spoofed first hop", []string{"6.6.6.6, 203.0.113.7"}, "10.0.0.2:5000", "203.0.113.7"},
		{"spoofed header line", []string{"6.6.6.6", "203.0.113.7"}, "10.0.0.2:5000", "203.0.113.7"},
		{"IPv6 hop", []string{"6.6.6.6,2001:db8::7"}, "10.0.0.2:5000", "2001:db8::7"},
		{"last hop not an address", []string{"203.0.113.7, <script>"}, "192.0.2.1:5000", "192.0.2.1"},
		{"no header", nil, "192.0.2.1:5000", "192.0.2.1"},
		{"no header, IPv6 peer", nil, "[2001:db8::1]:443", "2001:db8::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r); got != tt.want {
				t.Errorf("ClientIP(xff=%q, remote=%q) = %q; want %q", tt.xff, tt.remote, got, tt.want)
			}
		})
	}
}

// TestCloudLoggingLine checks whole lines: the keys renamed are slog's own
// level and message, wherever the time is and whatever the attributes.
func TestCloudLoggingLine(t *testing.T) {
	at := time.Date(2026, 11, 29, 23, 5, 1, 2e6, time.UTC)
	for _, tt := range []struct {
		name  string
		level slog.Level
		time  time.Time
		msg   string
		attrs []slog.Attr
		want  string
	}{
		{"info", slog.LevelInfo, at, "mcp request", []slog.Attr{slog.String("method", "tools/call"), slog.Int("httpStatus", 200)},
			`{"time":"2026-11-29T23:05:01.002Z","severity":"INFO","message":"mcp request","method":"tools/call","httpStatus":200}`},
		{"offset level", slog.LevelInfo + 2, at, "m", nil, `{"time":"2026-11-29T23:05:01.002Z","severity":"INFO","message":"m"}`},
		{"warn", slog.LevelWarn, at, "w", nil, `{"time":"2026-11-29T23:05:01.002Z","severity":"WARNING","message":"w"}`},
		{"below debug", slog.LevelDebug - 4, at, "d", nil, `{"time":"2026-11-29T23:05:01.002Z","severity":"DEBUG","message":"d"}`},
		{"error", slog.LevelError + 4, at, "e", nil, `{"time":"2026-11-29T23:05:01.002Z","severity":"ERROR","message":"e"}`},
		{"no time", slog.LevelInfo, time.Time{}, "no time", nil, `{"severity":"INFO","message":"no time"}`},
		{"quoted message", slog.LevelInfo, at, `say "msg":"x" \ ok`, nil,
			`{"time":"2026-11-29T23:05:01.002Z","severity":"INFO","message":"say \"msg\":\"x\" \\ ok"}`},
		{"keys of slog's names", slog.LevelError, at, "k", []slog.Attr{slog.String("level", "mine"), slog.String("msg", "mine"), slog.Group("g", slog.String("level", "x"))},
			`{"time":"2026-11-29T23:05:01.002Z","severity":"ERROR","message":"k","level":"mine","msg":"mine","g":{"level":"x"}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := New(&buf, slog.LevelDebug-8).Handler()
			rec := slog.NewRecord(tt.time, tt.level, tt.msg, 0)
			rec.AddAttrs(tt.attrs...)
			if err := h.Handle(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestCloudLoggingWrites checks that every line is one Write, made
// before Handle returns, from loggers derived with With as well.
func TestCloudLoggingWrites(t *testing.T) {
	var w countingWriter
	l := New(&w, slog.LevelInfo)
	l.Info("a")
	l.With("k", "v").Warn("b")
	if w.writes != 2 || strings.Count(w.buf.String(), "\n") != 2 {
		t.Errorf("%d writes of %q; want 2 lines in 2 writes", w.writes, w.buf.String())
	}
}

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.buf.Write(p)
}

// TestHandlerConformance runs the standard library's tests of a
// slog.Handler's rules (groups, empty attributes, With) on the handler.
func TestHandlerConformance(t *testing.T) {
	var buf bytes.Buffer
	conformance(t, New(&buf, slog.LevelDebug).Handler(), buf.String)
}

// conformance runs slogtest on h, whose output so far read returns.
func conformance(t *testing.T, h slog.Handler, read func() string) {
	t.Helper()
	err := slogtest.TestHandler(h, func() []map[string]any {
		var out []map[string]any
		for _, line := range bytes.Split(bytes.TrimSpace([]byte(read())), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("not JSON: %s", line)
			}
			// slogtest knows slog's key names.
			m[slog.LevelKey], m[slog.MessageKey] = m["severity"], m["message"]
			delete(m, "severity")
			delete(m, "message")
			out = append(out, m)
		}
		return out
	})
	if err != nil {
		t.Error(err)
	}
}

// TestValues checks each kind of value against slog's JSONHandler's
// encoding of it.
func TestValues(t *testing.T) {
	type point struct{ X, Y int }
	attrs := []slog.Attr{
		slog.String("s", "a \"q\" \\ \n\t\x01 é \u2028 <&>"), slog.String("bad", "\xff\xfe"),
		slog.Int("i", -3), slog.Uint64("u", 7), slog.Float64("f", 1.5), slog.Bool("b", true),
		slog.Duration("d", 1500*time.Millisecond), slog.Time("t", time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)),
		slog.Any("err", io.ErrUnexpectedEOF), slog.Any("p", point{1, 2}), slog.Any("nil", nil),
		slog.Group("g", slog.Int("a", 1), slog.Group("empty")), slog.Group("", slog.Int("inl", 2)),
	}
	var mine, theirs bytes.Buffer
	New(&mine, slog.LevelInfo).LogAttrs(context.Background(), slog.LevelInfo, "m", attrs...)
	slog.New(slog.NewJSONHandler(&theirs, nil)).LogAttrs(context.Background(), slog.LevelInfo, "m", attrs...)
	var a, b map[string]any
	if err := json.Unmarshal(mine.Bytes(), &a); err != nil {
		t.Fatalf("not JSON: %s", mine.Bytes())
	}
	if err := json.Unmarshal(theirs.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "severity", "message", "level", "msg"} {
		delete(a, k)
		delete(b, k)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("values differ from JSONHandler's:\nmine   %v\ntheirs %v", a, b)
	}
}
