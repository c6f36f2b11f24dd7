package proxy

import (
	"context"
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
