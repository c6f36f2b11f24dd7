package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/wait"
)

// lockedWriter counts Writes and may be read while loggers write to it.
type lockedWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *lockedWriter) read() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String(), w.writes
}

// messages are the messages of the lines in s, in order.
func messages(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m struct{ Message string }
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a whole JSON line: %q", line)
		}
		out = append(out, m.Message)
	}
	return out
}

// TestBatchedLinesWait checks that INFO lines wait, that a WARNING line
// writes them before itself in one Write, and that Flush writes what
// waits, from loggers derived with With as well.
func TestBatchedLinesWait(t *testing.T) {
	var w lockedWriter
	l := NewBatched(&w, slog.LevelInfo, time.Hour)
	l.Info("a")
	l.With("k", "v").Info("b")
	if s, n := w.read(); n != 0 {
		t.Fatalf("INFO lines written at once (%d writes): %q", n, s)
	}
	l.Warn("c")
	s, n := w.read()
	if got := strings.Join(messages(t, s), ","); got != "a,b,c" || n != 1 {
		t.Fatalf("after a warning: lines %q in %d writes; want a,b,c in 1", got, n)
	}
	l.Debug("hidden")
	l.Info("d")
	if err := Flush(l.With("x", 1)); err != nil {
		t.Fatal(err)
	}
	s, n = w.read()
	if got := strings.Join(messages(t, s), ","); got != "a,b,c,d" || n != 2 {
		t.Fatalf("after Flush: lines %q in %d writes; want a,b,c,d in 2", got, n)
	}
	if err := Flush(l); err != nil { // nothing waits: no empty Write
		t.Fatal(err)
	}
	if _, n := w.read(); n != 2 {
		t.Errorf("Flush with nothing waiting wrote (%d writes)", n)
	}
}

// TestBatchedDelay checks that a waiting line is written by itself once
// its delay has passed, with no other line or Flush to push it.
func TestBatchedDelay(t *testing.T) {
	var w lockedWriter
	l := NewBatched(&w, slog.LevelInfo, 20*time.Millisecond)
	written := func(want string) {
		t.Helper()
		if err := wait.Until(context.Background(), 10*time.Second, func() bool {
			s, _ := w.read()
			return strings.Join(messages(t, s), ",") == want
		}); err != nil {
			s, _ := w.read()
			t.Fatalf("lines %q not written 10 s after a delay of 20 ms: %q", want, s)
		}
	}
	l.Info("alone")
	written("alone")
	// And again for a line after the first batch went out.
	l.Info("again")
	written("alone,again")
}

// TestBatchedBound checks that waiting lines are written once they reach
// batchBytes, without waiting for the delay.
func TestBatchedBound(t *testing.T) {
	var w lockedWriter
	l := NewBatched(&w, slog.LevelInfo, time.Hour)
	text := strings.Repeat("x", 1000)
	lines := 0
	for {
		l.Info("m", "text", text)
		lines++
		if _, n := w.read(); n > 0 {
			break
		}
		if lines > 2*batchBytes/len(text) {
			t.Fatalf("%d lines of %d bytes still waiting", lines, len(text))
		}
	}
	s, _ := w.read()
	if len(s) < batchBytes || len(messages(t, s)) != lines {
		t.Errorf("%d bytes of %d lines; want the %d lines, at least %d bytes", len(s), len(messages(t, s)), lines, batchBytes)
	}
}

// TestBatchedWritesWholeLines checks that a batch is written in Writes
// of whole lines, each at most pipeBuf bytes unless one line is longer:
// no other writer to the same pipe can come within a line.
func TestBatchedWritesWholeLines(t *testing.T) {
	var w recordingWriter
	l := NewBatched(&w, slog.LevelInfo, time.Hour)
	for i := range 200 {
		l.Info("m", "text", strings.Repeat("y", i*7%900))
	}
	l.Info("long", "text", strings.Repeat("z", 3*pipeBuf))
	l.Info("after")
	if err := Flush(l); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for i, p := range w.writes {
		if !strings.HasSuffix(p, "\n") {
			t.Fatalf("write %d does not end a line: …%q", i, p[max(0, len(p)-40):])
		}
		if len(p) > pipeBuf && strings.Count(p, "\n") > 1 {
			t.Errorf("write %d: %d bytes of %d lines; more than %d bytes may hold one line only", i, len(p), strings.Count(p, "\n"), pipeBuf)
		}
		all.WriteString(p)
	}
	if got := len(messages(t, all.String())); got != 202 || len(w.writes) < 2 {
		t.Errorf("%d lines in %d writes; want 202 lines in several", got, len(w.writes))
	}
}

// recordingWriter keeps each Write apart.
type recordingWriter struct{ writes []string }

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// TestBatchedConcurrent logs from many goroutines at once (run with
// -race): every line arrives whole, once, and each goroutine's lines in
// the order it logged them.
func TestBatchedConcurrent(t *testing.T) {
	var w lockedWriter
	l := NewBatched(&w, slog.LevelInfo, time.Millisecond)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				level := slog.LevelInfo
				if i%97 == 0 {
					level = slog.LevelWarn
				}
				l.Log(t.Context(), level, fmt.Sprintf("%d-%d", g, i))
			}
		})
	}
	wg.Wait()
	if err := Flush(l); err != nil {
		t.Fatal(err)
	}
	s, _ := w.read()
	next := make([]int, goroutines)
	got := messages(t, s)
	for _, m := range got {
		var g, i int
		if _, err := fmt.Sscanf(m, "%d-%d", &g, &i); err != nil {
			t.Fatalf("message %q", m)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d after line %d", g, i, next[g]-1)
		}
		next[g]++
	}
	if len(got) != goroutines*each {
		t.Errorf("%d lines; want %d", len(got), goroutines*each)
	}
}

// TestBatchedConformance runs slogtest on a batched logger, flushed
// before its lines are read.
func TestBatchedConformance(t *testing.T) {
	var w lockedWriter
	l := NewBatched(&w, slog.LevelDebug, time.Hour)
	conformance(t, l.Handler(), func() string {
		if err := Flush(l); err != nil {
			t.Fatal(err)
		}
		s, _ := w.read()
		return s
	})
}
