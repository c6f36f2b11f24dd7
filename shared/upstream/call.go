package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// Call is a client's tools/call as the pool sends it on, whichever way it
// reaches the upstream.
type Call struct {
	Name      string
	Arguments json.RawMessage
	// Meta is forwarded as it is. It holds no progress token: that is
	// ProgressToken's.
	Meta map[string]json.RawMessage
	// ProgressToken is the client's, or nil. The upstream's progress for
	// the call reaches Notify with it. The token itself goes only onto
	// the call's own stream (a Streamable HTTP POST); on a session other
	// calls share (SSE, stdio), a token of the pool's, bound to that
	// session, goes instead: two clients may pick the same token.
	ProgressToken json.RawMessage
	// Header, when set, makes the extra headers (Mcp-Param-*) of a call
	// to a 2026-07-28 upstream.
	Header func() http.Header
	// Notify receives the notifications the client is to get, as
	// JSON-RPC messages: progress for ProgressToken, with it, and the log
	// messages of the call's own stream. Nil relays none, and no progress
	// token is sent.
	Notify func(msg []byte)
}

// Result is a tools/call result as the client is to get it: the
// upstream's, unchanged. Typed reports that a 2026-07-28 upstream wrote
// it with its resultType.
type Result struct {
	Raw   json.RawMessage
	Typed bool
}

// Call sends c to up, posting it itself within the pool's session of a
// Streamable HTTP upstream, through the SDK client otherwise. A call that
// may have reached the upstream is never sent twice (Once).
func (p *Pool) Call(ctx context.Context, up tenant.Upstream, c Call) (Result, error) {
	if p.Direct(up) {
		return p.callDirect(ctx, up, c)
	}
	return p.callSDK(ctx, up, c)
}

// callDirect posts c within the session and relays the upstream's
// notifications on the call's own stream: progress only for the client's
// token (an upstream may not make up progress the client never asked
// for), log messages as they are.
func (p *Pool) callDirect(ctx context.Context, up tenant.Upstream, c Call) (Result, error) {
	call := toolPost{Name: c.Name, Arguments: c.Arguments, Meta: c.Meta}
	if c.Notify != nil {
		if len(c.ProgressToken) > 0 {
			call.Meta = maps.Clone(c.Meta)
			if call.Meta == nil {
				call.Meta = map[string]json.RawMessage{}
			}
			call.Meta["progressToken"] = c.ProgressToken
		}
		call.Notify = func(msg []byte) {
			if progressFor(msg, c.ProgressToken) {
				c.Notify(msg)
			}
		}
	}
	var res Result
	err := p.Do(ctx, up, Once, func(ctx context.Context, s *mcp.ClientSession) error {
		res.Typed = Modern(s)
		call.Header = nil
		if res.Typed && c.Header != nil {
			call.Header = c.Header()
		}
		var err error
		res.Raw, err = p.postTool(ctx, up, s, call)
		return err
	})
	return res, err
}

// callSDK sends c through the SDK client session, with the progress of a
// token of the pool's relayed to Notify under the client's token.
func (p *Pool) callSDK(ctx context.Context, up tenant.Upstream, c Call) (Result, error) {
	var meta mcp.Meta
	for k, v := range c.Meta {
		var value any
		if err := json.Unmarshal(v, &value); err != nil {
			return Result{}, err
		}
		if meta == nil {
			meta = mcp.Meta{}
		}
		meta[k] = value
	}
	var result *mcp.CallToolResult
	err := p.Do(ctx, up, Once, func(ctx context.Context, s *mcp.ClientSession) error {
		meta, stop := p.relayProgress(s, meta, c)
		defer stop()
		var err error
		result, err = s.CallTool(ctx, &mcp.CallToolParams{Meta: meta, Name: c.Name, Arguments: c.Arguments})
		return err
	})
	if err != nil {
		return Result{}, err
	}
	raw, err := json.Marshal(result)
	return Result{Raw: raw}, err
}

// relayProgress returns meta with a token of the pool's bound to s when
// the client asked for progress, and the function that stops relaying it
// once the call has returned.
func (p *Pool) relayProgress(s *mcp.ClientSession, meta mcp.Meta, c Call) (mcp.Meta, func()) {
	if len(c.ProgressToken) == 0 || c.Notify == nil {
		return meta, func() {}
	}
	var token any
	if err := json.Unmarshal(c.ProgressToken, &token); err != nil || token == nil {
		return meta, func() {}
	}
	relayed := &counter{}
	proxyToken, stop := p.WatchProgress(s, func(n *mcp.ProgressNotificationParams) {
		cp := *n
		cp.ProgressToken = token
		params, err := json.Marshal(&cp)
		if err != nil {
			return
		}
		msg, err := wire.Encode(&jsonrpc.Request{Method: "notifications/progress", Params: params})
		if err != nil {
			return
		}
		c.Notify(msg)
		relayed.add()
	})
	out := maps.Clone(meta)
	if out == nil {
		out = mcp.Meta{}
	}
	out["progressToken"] = proxyToken
	return out, func() {
		relayed.settle()
		stop()
	}
}

// WatchProgress returns a progress token to send on s in place of the
// client's own, and routes to fn each progress notification for it that
// arrives on s, until stop is called. The token is random: upstream
// sessions of every tenant share one client, and an upstream that could
// guess the token of another session's call, or send on a session that
// is not the call's, would write into another tenant's stream.
func (p *Pool) WatchProgress(s *mcp.ClientSession, fn func(*mcp.ProgressNotificationParams)) (token string, stop func()) {
	var b [16]byte
	rand.Read(b[:])
	token = "mcp-proxy-progress-" + hex.EncodeToString(b[:])
	p.progress.Store(token, progressWatch{session: s, fn: fn})
	return token, func() { p.progress.Delete(token) }
}

// progressWatch is the call a progress token belongs to.
type progressWatch struct {
	session *mcp.ClientSession
	fn      func(*mcp.ProgressNotificationParams)
}

func (p *Pool) onProgress(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	if req.Params == nil {
		return
	}
	token, ok := req.Params.ProgressToken.(string)
	if !ok {
		return
	}
	if w, ok := p.progress.Load(token); ok && w.(progressWatch).session == req.Session {
		w.(progressWatch).fn(req.Params)
	}
}

// counter counts the notifications relayed for a call.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *counter) get() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// settle waits briefly for notifications still on their way. The SDK
// hands a session's notifications to their handler on another goroutine
// than the response, so the last progress notification the upstream sent
// before its result may arrive a moment after the result. It waits until
// none came for 2 ms, 10 ms at most.
func (c *counter) settle() {
	for range 5 {
		n := c.get()
		time.Sleep(2 * time.Millisecond)
		if c.get() == n {
			return
		}
	}
}

// progressFor reports whether an upstream's notification may reach the
// client whose call sent token: anything but progress, and progress for
// that token.
func progressFor(msg []byte, token json.RawMessage) bool {
	var n struct {
		Method string `json:"method"`
		Params struct {
			ProgressToken json.RawMessage `json:"progressToken"`
		} `json:"params"`
	}
	if err := wire.Unmarshal(msg, &n); err != nil {
		return false
	}
	if n.Method != "notifications/progress" {
		return true
	}
	return len(token) > 0 && sameToken(n.Params.ProgressToken, token)
}

// sameToken reports whether two progress tokens, a string or a number
// each, are the same value, however written (1 and 1.0, "a" and
// "\u0061"). Anything else is no token: comparing two decoded objects
// with == would panic.
func sameToken(a, b json.RawMessage) bool {
	var x, y any
	if wire.Unmarshal(a, &x) != nil || wire.Unmarshal(b, &y) != nil {
		return false
	}
	switch x.(type) {
	case string, float64:
		return x == y
	}
	return false
}
