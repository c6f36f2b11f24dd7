package proxy

import (
	"context"
	"encoding/json"
	"strconv"
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
	m  map[string][]*inflightCall
}

type inflightCall struct{ cancel context.CancelFunc }

// callKey is keyID and id as JSON, as the protocol tells a number ID
// from a string one; a number, the usual ID, without a JSON encoder.
func callKey(keyID string, id jsonrpc.ID) string {
	if n, ok := id.Raw().(int64); ok {
		return keyID + "\x00" + strconv.FormatInt(n, 10)
	}
	raw, _ := json.Marshal(id.Raw())
	return keyID + "\x00" + string(raw)
}

// track makes ctx cancellable by a notifications/cancelled for id sent
// with the same key; done must be called when the call ends.
func (c *calls) track(ctx context.Context, keyID string, id jsonrpc.ID) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	k, e := callKey(keyID, id), &inflightCall{cancel: cancel}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string][]*inflightCall{}
	}
	c.m[k] = append(c.m[k], e)
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		list := c.m[k]
		for i, x := range list {
			if x == e {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(c.m, k)
		} else {
			c.m[k] = list
		}
		c.mu.Unlock()
		cancel()
	}
}

// cancel cancels the call of keyID with id if exactly one is in flight.
func (c *calls) cancel(keyID string, id jsonrpc.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.m[callKey(keyID, id)]
	if len(list) != 1 {
		return false
	}
	list[0].cancel()
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
