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

	"mcpproxy.dev/mcpproxy/shared/budget"
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
	// ResultType makes Result.WriteTo add "resultType":"complete" to a
	// result object without a resultType at its top level, as a
	// 2026-07-28 client is to get it.
	ResultType bool
	// Ask, when set, takes the requests the upstream sends to the client
	// during the call (ask.go); nil refuses them.
	Ask Asker
	// Input is what the client may give an upstream that asks for
	// input (2026-07-28): its capabilities and, on a retry, its answers;
	// nil for none.
	Input *Input
}

// codeUnreadable is the code of the error a call gets for an upstream's
// answer the SDK cannot decode (the proxy's "upstream" code).
const codeUnreadable = -32000

// Input is what a 2026-07-28 request carries for an upstream that
// answered it with an input-required result before (Result.InputRequired):
// the client capabilities the upstream may ask input of, and, on a
// retry, the client's answers and the upstream's requestState.
type Input struct {
	// Capabilities replace the empty clientCapabilities the pool sends
	// in _meta: a JSON object, or nil.
	Capabilities json.RawMessage
	// InputResponses is the client's inputResponses as they came (a JSON
	// object), or nil.
	InputResponses json.RawMessage
	// RequestState is the upstream's own requestState, "" for none.
	RequestState string
}

// CallTool sends c to up, posting it itself within the pool's session of
// a Streamable HTTP upstream, through the SDK client otherwise. A call
// that may have reached the upstream is never sent twice (Once).
//
// The Result may still be on the upstream's connection, read under ctx:
// ctx must last until the caller has written it (Result.WriteTo) and
// closed it (Result.Close, which the caller must call). The notifications
// the upstream sent before its result have reached c.Notify when CallTool
// returns.
func (p *Pool) CallTool(ctx context.Context, up tenant.Upstream, c Call) (*Result, error) {
	var res *Result
	var err error
	if p.direct(up) {
		res, err = p.callDirect(ctx, up, c)
	} else {
		res, err = p.callSDK(ctx, up, c)
	}
	if err != nil {
		return nil, err
	}
	res.addType = c.ResultType
	return res, nil
}

// ReadAll reads res whole and closes it: at most MaxMessageBytes,
// charged to the request's budget account. For a caller that holds each
// answer, as a JSON-RPC batch does.
func (p *Pool) ReadAll(ctx context.Context, res *Result) ([]byte, error) {
	defer res.Close()
	if res.stream == nil && !res.addType {
		return res.held, nil
	}
	if res.stream == nil {
		if add, members, ok := typedShape(res.held, res.examined); ok && !add {
			return res.held, nil // what WriteTo would write
		} else if ok {
			n := int64(len(res.held) + len(`"`+resultTypeKey+`":`+resultTypeComplete))
			if members {
				n++ // the comma
			}
			if err := budget.NewMeter(budget.FromContext(ctx), p.opts.MaxMessageBytes, -1).Cover(ctx, n); err != nil {
				return nil, err
			}
			return typedResult(res.held, members), nil
		}
	}
	buf := &meteredBuffer{ctx: ctx, meter: budget.NewMeter(budget.FromContext(ctx), p.opts.MaxMessageBytes, -1)}
	if _, err := res.WriteTo(buf); err != nil {
		return nil, err
	}
	return buf.data, nil
}

// Hold reads a result still on the upstream's connection whole, as
// ReadAll does, and returns it held, to be examined (InputRequired) and
// written as any held result; it closes res. A held result is returned
// as it is.
func (p *Pool) Hold(ctx context.Context, res *Result) (*Result, error) {
	if res.stream == nil {
		return res, nil
	}
	defer res.Close()
	addType := res.addType
	res.addType, res.examined = false, true
	buf := &meteredBuffer{ctx: ctx, meter: budget.NewMeter(budget.FromContext(ctx), p.opts.MaxMessageBytes, -1)}
	if _, err := res.WriteTo(buf); err != nil {
		return nil, err
	}
	return &Result{Typed: res.Typed, held: buf.data, addType: addType, upstream: res.upstream}, nil
}

// meteredBuffer holds what is written to it, charged to its meter first.
type meteredBuffer struct {
	ctx   context.Context
	meter *budget.Meter
	data  []byte
}

func (b *meteredBuffer) Write(p []byte) (int, error) {
	if err := b.meter.Cover(b.ctx, int64(len(b.data)+len(p))); err != nil {
		return 0, err
	}
	if need := len(b.data) + len(p); need > cap(b.data) {
		// Doubling, as the answer was read before.
		b.data = append(make([]byte, 0, max(need, 2*cap(b.data))), b.data...)
	}
	b.data = append(b.data, p...)
	return len(p), nil
}

// callDirect posts c within the session and relays the upstream's
// notifications on the call's own stream: progress only for the client's
// token (an upstream may not make up progress the client never asked
// for), log messages as they are.
func (p *Pool) callDirect(ctx context.Context, up tenant.Upstream, c Call) (*Result, error) {
	call := toolPost{Name: c.Name, Arguments: c.Arguments, Meta: c.Meta, Input: c.Input, Ask: c.Ask}
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
	var res *Result
	err := p.Do(ctx, up, Once, func(ctx context.Context, s *mcp.ClientSession) error {
		typed := stateless(s)
		call.Header = nil
		if typed && c.Header != nil {
			call.Header = c.Header()
		}
		r, err := p.postTool(ctx, up, s, call)
		if err != nil {
			return err
		}
		r.Typed = typed
		res = r
		return nil
	})
	return res, err
}

// callSDK sends c through the SDK client session, with the progress of a
// token of the pool's relayed to Notify under the client's token.
func (p *Pool) callSDK(ctx context.Context, up tenant.Upstream, c Call) (*Result, error) {
	var meta mcp.Meta
	for k, v := range c.Meta {
		var value any
		if err := json.Unmarshal(v, &value); err != nil {
			return nil, err
		}
		if meta == nil {
			meta = mcp.Meta{}
		}
		meta[k] = value
	}
	params := &mcp.CallToolParams{Name: c.Name, Arguments: c.Arguments}
	if r := c.Input; r != nil {
		if len(r.InputResponses) > 0 {
			if err := json.Unmarshal(r.InputResponses, &params.InputResponses); err != nil {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid inputResponses: not an object of input responses"}
			}
		}
		params.RequestState = r.RequestState
		if len(r.Capabilities) > 0 {
			if meta == nil {
				meta = mcp.Meta{}
			}
			meta[mcp.MetaKeyClientCapabilities] = r.Capabilities
		}
	}
	var result *mcp.CallToolResult
	typed := false
	err := p.Do(ctx, up, Once, func(ctx context.Context, s *mcp.ClientSession) (err error) {
		defer func() {
			// The SDK's decoder of input requests panics on a null
			// one: the upstream's answer is bad, its session good.
			if recover() != nil {
				err = &jsonrpc.Error{Code: codeUnreadable, Message: "upstream " + up.Name + " sent a result the proxy cannot read"}
			}
		}()
		meta, stop := p.relayProgress(s, meta, c)
		defer stop()
		typed = stateless(s)
		cp := *params
		cp.Meta = meta
		defer p.track(ctx, s, c.Ask)()
		result, err = s.CallTool(ctx, &cp)
		return err
	})
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	return &Result{held: raw, upstream: up.Name, Typed: typed}, nil
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
	proxyToken, stop := p.watchProgress(s, func(n *mcp.ProgressNotificationParams) {
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

// watchProgress returns a progress token to send on s in place of the
// client's own, and routes to fn each progress notification for it that
// arrives on s, until stop is called. The token is random: upstream
// sessions of every tenant share one client, and an upstream that could
// guess the token of another session's call, or send on a session that
// is not the call's, would write into another tenant's stream.
func (p *Pool) watchProgress(s *mcp.ClientSession, fn func(*mcp.ProgressNotificationParams)) (token string, stop func()) {
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
