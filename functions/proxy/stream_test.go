package proxy

import (
	"net/http/httptest"
	"testing"
)

// TestEventStreamLines: a message with line breaks between its tokens
// (as an upstream may send it) stays one event, a data field per line.
func TestEventStreamLines(t *testing.T) {
	w := httptest.NewRecorder()
	s := &eventStream{w: w}
	s.send([]byte("{\"a\":\n1}"))
	if streamed, n := s.finish([]byte(`{"id":1}`)); !streamed || n != w.Body.Len() {
		t.Fatalf("finish = %v, %d; want true, %d", streamed, n, w.Body.Len())
	}
	want := "event: message\ndata: {\"a\":\ndata: 1}\n\nevent: message\ndata: {\"id\":1}\n\n"
	if got := w.Body.String(); got != want {
		t.Errorf("stream = %q; want %q", got, want)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	s.send([]byte(`{"late":true}`))
	if got := w.Body.String(); got != want {
		t.Errorf("a message after the result was written: %q", got)
	}
}
