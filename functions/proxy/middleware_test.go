package proxy

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestCancellablePanic: a tools/call whose method panics is no longer
// tracked once the recovered middleware has answered it. A call left
// tracked would hold its entry for the life of the process, and make a
// later notifications/cancelled for the same key and ID ambiguous, so
// that it would cancel nothing.
func TestCancellablePanic(t *testing.T) {
	h := &Handler{}
	id, _ := jsonrpc.MakeID(float64(7))
	req := &request{caller: &caller{key: &tenant.Key{ID: "key"}}, id: id, method: "tools/call"}
	panicking := func(context.Context, *request) (*result, *rpcError) { panic("method failed") }
	func() {
		defer func() { recover() }()
		h.cancellable()(panicking)(context.Background(), req)
	}()
	if n := len(h.calls.m); n != 0 {
		t.Errorf("calls tracked after a panicking call: %d; want 0", n)
	}
}

// TestPanicAfterEvents: a request whose handling panics once its event
// stream has started gets no error written after the events (the client
// would take the stream for ended) and is broken off; a notification that
// arrives after the panic is not written either.
func TestPanicAfterEvents(t *testing.T) {
	h := &Handler{log: slog.New(slog.DiscardHandler)}
	w := httptest.NewRecorder()
	o := &outcome{stream: &eventStream{w: w}}
	o.stream.send([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`))
	sent := w.Body.String()
	func() {
		defer h.recoverServe(w, o)
		panic("handling failed")
	}()
	o.stream.send([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":2}}`))
	if !o.abort || w.Body.String() != sent || o.err == nil {
		t.Errorf("after a panic mid-stream: abort %v, error %v, %q written after the event", o.abort, o.err, strings.TrimPrefix(w.Body.String(), sent))
	}
}
