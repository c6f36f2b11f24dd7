package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// eventStream answers one request as Server-Sent Events once something
// must reach the client before the result: the notifications an upstream
// sends during a call (progress, log messages). A request that gets none
// is answered as plain JSON.
type eventStream struct {
	w       http.ResponseWriter
	mu      sync.Mutex
	started bool
	closed  bool
	bytes   int
}

// acceptsEvents reports whether the client takes a text/event-stream
// answer.
func acceptsEvents(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if wire.MediaType(part) == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// send writes one JSON-RPC message as an event, starting the stream on
// the first. After finish it does nothing: a notification that arrives
// after the result is dropped.
func (s *eventStream) send(msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if !s.started {
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	s.write(msg)
}

func (s *eventStream) write(msg []byte) {
	n, _ := s.w.Write([]byte("event: message\ndata: "))
	s.bytes += n
	// A message relayed from an upstream may hold line breaks between
	// its tokens: each line goes in a data field of its own.
	for i, line := range bytes.Split(msg, []byte("\n")) {
		if i > 0 {
			n, _ = s.w.Write([]byte("\ndata: "))
			s.bytes += n
		}
		n, _ = s.w.Write(line)
		s.bytes += n
	}
	n, _ = s.w.Write([]byte("\n\n"))
	s.bytes += n
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// finish ends the stream with the response and reports whether it did:
// false when the stream never started, and the response is to be sent as
// JSON.
func (s *eventStream) finish(body []byte) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if !s.started {
		return false, 0
	}
	if body != nil {
		s.write(body)
	}
	return true, s.bytes
}

// finishWith ends a started stream with a response that write produces
// as it goes, one compact JSON message without a line break, and reports
// whether it did: false when the stream never started. n is the bytes of
// the whole stream, err that of write.
func (s *eventStream) finishWith(write func(io.Writer) (int64, error)) (finished bool, n int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if !s.started {
		return false, 0, nil
	}
	k, _ := s.w.Write([]byte("event: message\ndata: "))
	m, werr := write(s.w)
	if werr == nil {
		var j int
		j, werr = s.w.Write([]byte("\n\n"))
		m += int64(j)
	}
	s.bytes += k + int(m)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
	return true, int64(s.bytes), werr
}

// abandon ends the stream without a response, so that no notification is
// written after it, and reports whether it had started.
func (s *eventStream) abandon() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.started
}
