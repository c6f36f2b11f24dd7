package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

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
	sent    int // events written
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
	s.sent++
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

// events is how many events were sent so far.
func (s *eventStream) events() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// settle waits briefly for notifications still on their way. The SDK
// hands a session's notifications to their handler on another goroutine
// than the response, so the last progress notification the upstream sent
// before its result may be delivered a moment after the result. It waits
// until no event came for 2 ms, 10 ms at most.
func (s *eventStream) settle() {
	for range 5 {
		n := s.events()
		time.Sleep(2 * time.Millisecond)
		if s.events() == n {
			return
		}
	}
}

// relayProgress prepares the _meta of a tools/call on s, a session the
// upstream's other callers share: the client's progress token never goes
// there (two clients may pick the same one). When the client takes an
// event stream, a token of the proxy's bound to s goes instead, and the
// upstream's progress for it is sent to the client with the client's
// token. It returns the function that stops the relay once the call has
// returned.
func (h *Handler) relayProgress(x *exchange, s *mcp.ClientSession, meta mcp.Meta) (mcp.Meta, func()) {
	token, ok := meta["progressToken"]
	out := mcp.Meta{}
	for k, v := range meta {
		if k != "progressToken" {
			out[k] = v
		}
	}
	if !ok || token == nil || x.stream == nil {
		return out, func() {}
	}
	stream := x.stream
	proxyToken, stop := h.pool.WatchProgress(s, func(p *mcp.ProgressNotificationParams) {
		c := *p
		c.ProgressToken = token
		params, err := json.Marshal(&c)
		if err != nil {
			return
		}
		msg, err := wire.Encode(&jsonrpc.Request{Method: "notifications/progress", Params: params})
		if err != nil {
			return
		}
		stream.send(msg)
	})
	out["progressToken"] = proxyToken
	return out, func() {
		stream.settle()
		stop()
	}
}
