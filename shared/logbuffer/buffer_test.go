package logbuffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// memSink is a unit-test sink: it keeps batches by ID and fails while
// failing is set.
type memSink struct {
	mu      sync.Mutex
	failing bool
	batches map[string]*Batch
	order   []string
	writes  int
}

func newMemSink() *memSink { return &memSink{batches: map[string]*Batch{}} }

func (m *memSink) Write(_ context.Context, b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.failing {
		return errors.New("sink unavailable")
	}
	if _, ok := m.batches[b.ID]; !ok {
		m.batches[b.ID] = b
		m.order = append(m.order, b.ID)
	}
	return nil
}

func (m *memSink) setFailing(v bool) { m.mu.Lock(); m.failing = v; m.mu.Unlock() }

// entries returns the IDs of every stored entry, in write order.
func (m *memSink) entries(t *testing.T) []string {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for _, id := range m.order {
		es, err := DecodeEntries(m.batches[id].Entries)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != m.batches[id].Count {
			t.Errorf("batch %s holds %d entries; its count says %d", id, len(es), m.batches[id].Count)
		}
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func entry(i int) tenant.LogEntry {
	return tenant.LogEntry{
		ID:         fmt.Sprintf("e%05d", i),
		UserID:     "00000000-0000-0000-0000-000000000001",
		InstanceID: "00000000-0000-0000-0000-000000000002",
		APIKeyID:   fmt.Sprintf("00000000-0000-0000-0000-00000000001%d", i%3),
		Method:     "tools/call",
		ToolName:   "demo__echo",
		Status:     tenant.StatusSuccess,
		DurationMs: int64(i % 7),
		CreatedAt:  time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
	}
}

func TestBatchesByCountAndAge(t *testing.T) {
	sink := newMemSink()
	b := New(sink, Options{BatchEntries: 10, MaxAge: 200 * time.Millisecond})
	for i := range 25 {
		b.Append(entry(i))
	}
	b.Kick()
	// Two full batches go at once; the last 5 wait for MaxAge.
	wait.For(t, "two full batches", 10*time.Second, func() bool { return b.Stats().Written == 20 })
	if got := b.Stats().Depth; got != 5 {
		t.Errorf("depth = %d; want 5 waiting for their batch to age", got)
	}
	wait.For(t, "the timer to write the rest", 10*time.Second, func() bool { return b.Stats().Written == 25 })
	ids := sink.entries(t)
	if len(ids) != 25 {
		t.Fatalf("stored %d entries; want 25", len(ids))
	}
	for i, id := range ids {
		if id != entry(i).ID {
			t.Fatalf("entry %d is %s; want %s (oldest first)", i, id, entry(i).ID)
		}
	}
	if s := b.Stats(); s.Batches != 3 || s.Depth != 0 || s.Bytes != 0 {
		t.Errorf("stats %+v; want 3 batches and nothing held", s)
	}
}

// heldSink holds each Write until released, keeping a copy of the
// batch's lines as Write got them.
type heldSink struct {
	got     chan []byte
	release chan struct{}
	batches []*Batch
}

func (h *heldSink) Write(_ context.Context, b *Batch) error {
	h.batches = append(h.batches, b)
	h.got <- bytes.Clone(b.Entries)
	<-h.release
	return nil
}

// TestBatchKeepsItsLines appends entries while a batch is being written:
// the batch's lines, which the sink has until it returns, must stay as
// they were, however the entries after them are held.
func TestBatchKeepsItsLines(t *testing.T) {
	sink := &heldSink{got: make(chan []byte, 40), release: make(chan struct{})}
	b := New(sink, Options{BatchEntries: 3})
	for i := range 5 {
		b.Append(entry(i))
	}
	b.Kick()
	var first []byte
	select {
	case first = <-sink.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch written")
	}
	for i := 5; i < 40; i++ {
		b.Append(entry(i))
	}
	if !bytes.Equal(sink.batches[0].Entries, first) {
		t.Fatalf("the batch being written changed under the sink:\n%s\nwas\n%s", sink.batches[0].Entries, first)
	}
	close(sink.release)
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, batch := range sink.batches {
		es, err := DecodeEntries(batch.Entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) != 40 {
		t.Fatalf("stored %d entries; want 40", len(ids))
	}
	for i, id := range ids {
		if id != entry(i).ID {
			t.Fatalf("entry %d is %s; want %s", i, id, entry(i).ID)
		}
	}
}

func TestBatchBytesBound(t *testing.T) {
	sink := newMemSink()
	b := New(sink, Options{BatchEntries: 1000, BatchBytes: 2000})
	for i := range 40 {
		b.Append(entry(i))
	}
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range sink.order {
		if n := len(sink.batches[id].Entries); n > 2000 {
			t.Errorf("batch of %d bytes; want at most 2000", n)
		}
	}
	if got := len(sink.entries(t)); got != 40 {
		t.Errorf("stored %d entries; want 40", got)
	}
	if len(sink.order) < 2 {
		t.Errorf("%d batches; want the byte bound to split them", len(sink.order))
	}
}

func TestLastUsedPerKey(t *testing.T) {
	sink := newMemSink()
	b := New(sink, Options{})
	for i := range 9 {
		b.Append(entry(i))
	}
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	batch := sink.batches[sink.order[0]]
	for k := range 3 {
		key := entry(k).APIKeyID
		want := entry(6 + k).CreatedAt // the last of i%3 == k among 0..8
		if got := batch.LastUsed[key]; !got.Equal(want) {
			t.Errorf("lastUsed[%s] = %v; want %v", key, got, want)
		}
	}
}

func TestRetriesKeepEntriesInOrder(t *testing.T) {
	sink := newMemSink()
	sink.setFailing(true)
	b := New(sink, Options{BatchEntries: 5, MaxBackoff: 20 * time.Millisecond})
	for i := range 12 {
		b.Append(entry(i))
		b.Kick()
	}
	wait.For(t, "failed writes", 10*time.Second, func() bool { return b.Stats().Failures >= 3 })
	if s := b.Stats(); s.Depth != 12 || s.Written != 0 || s.Dropped != 0 {
		t.Errorf("while failing: %+v; want all 12 held", s)
	}
	sink.setFailing(false)
	// The retry timer alone must get them out: no more Kick.
	wait.For(t, "the batches to be written", 10*time.Second, func() bool { return b.Stats().Written == 10 })
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := sink.entries(t)
	if len(ids) != 12 {
		t.Fatalf("stored %d entries; want 12", len(ids))
	}
	for i, id := range ids {
		if id != entry(i).ID {
			t.Fatalf("entry %d is %s; want %s", i, id, entry(i).ID)
		}
	}
}

func TestBoundDropsAndCounts(t *testing.T) {
	sink := newMemSink()
	sink.setFailing(true)
	var logs strings.Builder
	line := encode(entry(0))
	b := New(sink, Options{MaxBytes: 10 * (len(line) + 1), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	accepted := 0
	for i := range 30 {
		if b.Append(entry(i)) {
			accepted++
		}
	}
	s := b.Stats()
	if s.Dropped == 0 || int(s.Dropped)+accepted != 30 || s.Depth != accepted {
		t.Errorf("stats %+v with %d accepted; want drops counted and the rest held", s, accepted)
	}
	if !strings.Contains(logs.String(), "request log entries dropped") {
		t.Errorf("no drop in the log: %q", logs.String())
	}
	sink.setFailing(false)
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(sink.entries(t)); got != accepted {
		t.Errorf("stored %d; want the %d accepted", got, accepted)
	}
}

func TestDrainGivesUpAtDeadline(t *testing.T) {
	sink := newMemSink()
	sink.setFailing(true)
	b := New(sink, Options{})
	b.Append(entry(1))
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Drain(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 entries not written") {
		t.Errorf("drain error %v; want one entry reported unwritten", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("drain took %v past its deadline", d)
	}
}

func TestDecodeRefusesBadEntries(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"not json", "{nope\n"},
		{"bad user", `{"id":"x","userId":"u","instanceId":"00000000-0000-0000-0000-000000000002","method":"m","status":"success","createdAt":"2026-01-01T00:00:00Z"}`},
		{"bad status", `{"id":"x","userId":"00000000-0000-0000-0000-000000000001","instanceId":"00000000-0000-0000-0000-000000000002","method":"m","status":"fine","createdAt":"2026-01-01T00:00:00Z"}`},
		{"no time", `{"id":"x","userId":"00000000-0000-0000-0000-000000000001","instanceId":"00000000-0000-0000-0000-000000000002","method":"m","status":"success"}`},
		{"NUL byte", `{"id":"x","userId":"00000000-0000-0000-0000-000000000001","instanceId":"00000000-0000-0000-0000-000000000002","method":"m","status":"success","transport":"a\u0000b","createdAt":"2026-01-01T00:00:00Z"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEntries([]byte(tc.data)); err == nil {
				t.Error("decoded; want an error")
			}
		})
	}
}
