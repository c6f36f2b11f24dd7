package proxy

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Before 2026-07-28 a client gives up on a request by sending
// notifications/cancelled with the request's ID, in a request of its own.
// The proxy keeps no session, so it knows a call only by the API key and
// the JSON-RPC ID: two clients sharing a key may use the same ID at once.
// A cancellation is therefore applied only when exactly one call of this
// process matches; cancelling the call's context then reaches the
// upstream (notifications/cancelled upstream, or the closed connection).
// A notification that matches none (the call ran on another instance, or
// already ended) or several is ignored, as the protocol allows.

// calls are the cancellable calls in flight, by API key and JSON-RPC ID.
type calls struct {
	mu sync.Mutex
	m  map[callID]*inflightCall
}

// inflightCall is one tracked call; calls with the same key and ID are
// chained by next.
type inflightCall struct {
	key    callID
	cancel context.CancelFunc
	next   *inflightCall
}

// callID is an API key's ID and a JSON-RPC ID, as the protocol tells a
// number ID from a string one: the number, the usual ID, as it is; any
// other as JSON.
type callID struct {
	keyID string
	num   int64
	other string // "" for a number ID
}

func callKey(keyID string, id jsonrpc.ID) callID {
	if n, ok := id.Raw().(int64); ok {
		return callID{keyID: keyID, num: n}
	}
	raw, _ := json.Marshal(id.Raw())
	return callID{keyID: keyID, other: string(raw)}
}

// track makes the call of keyID with id cancellable by a
// notifications/cancelled sent with the same key, through cancel, which
// ends the call's context; untrack must be called when the call ends.
func (c *calls) track(keyID string, id jsonrpc.ID, cancel context.CancelFunc) *inflightCall {
	e := &inflightCall{key: callKey(keyID, id), cancel: cancel}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[callID]*inflightCall{}
	}
	e.next = c.m[e.key]
	c.m[e.key] = e
	c.mu.Unlock()
	return e
}

// untrack forgets a call track returned.
func (c *calls) untrack(e *inflightCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	head := c.m[e.key]
	if head == e {
		if e.next == nil {
			delete(c.m, e.key)
		} else {
			c.m[e.key] = e.next
		}
		return
	}
	for p := head; p != nil; p = p.next {
		if p.next == e {
			p.next = e.next
			return
		}
	}
}

// cancel cancels the call of keyID with id if exactly one is in flight.
func (c *calls) cancel(keyID string, id jsonrpc.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[callKey(keyID, id)]
	if e == nil || e.next != nil {
		return false
	}
	e.cancel()
	return true
}

// cancelled handles a client's notifications/cancelled.
func (h *Handler) cancelled(c *caller, params json.RawMessage) {
	var p struct {
		RequestID any `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil {
		return
	}
	id, err := jsonrpc.MakeID(p.RequestID)
	if err != nil || !id.IsValid() {
		return
	}
	h.calls.cancel(c.key.ID, id)
}
