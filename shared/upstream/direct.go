package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// A tools/call is the proxy's hot path. Through the SDK client it would be
// decoded into the SDK's types and encoded again, with the SDK's decoder
// allocating a fresh 32 KiB buffer per message (BENCHMARKS.md). For a
// Streamable HTTP upstream the pool instead posts the call itself (CallTool),
// within the SDK session (its session ID and negotiated protocol version),
// and relays the upstream's result as it comes (result.go). Lists, resources
// and prompts, SSE and stdio upstreams keep going through the SDK client.

// toolPost is a tools/call as the pool posts it itself (Call).
type toolPost struct {
	Name      string
	Arguments json.RawMessage
	Meta      map[string]json.RawMessage // forwarded as they are
	// Header holds extra request headers (Mcp-Param-*).
	Header http.Header
	// Notify receives each notification the upstream sends on the call's
	// stream (progress, log messages) as raw JSON; nil drops them.
	Notify func(raw []byte)
	// Input, for a 2026-07-28 upstream only, or nil (Call.Input).
	Input *Input
	// Ask takes the upstream's requests to the client; nil refuses them.
	Ask Asker
}

// callParams encodes the params of a tools/call.
func callParams(version string, c toolPost) ([]byte, error) {
	return appendCallParams(nil, version, c)
}

// appendCallParams appends the params of a tools/call to out. From
// 2026-07-28 there is no session: each request says in its _meta who
// asks and in what version; that part is the same for every call and
// written as it is.
func appendCallParams(out []byte, version string, c toolPost) ([]byte, error) {
	var err error
	out = append(out, '{')
	meta := false
	if wire.Stateless(version) {
		out = append(out, `"_meta":{"`+mcp.MetaKeyProtocolVersion+`":`...)
		if out, err = appendJSONString(out, version); err != nil {
			return nil, err
		}
		if c.Input != nil && len(c.Input.Capabilities) > 0 {
			out = append(append(append(out, `,"`+mcp.MetaKeyClientCapabilities+`":`...), c.Input.Capabilities...),
				`,"`+mcp.MetaKeyClientInfo+`":{"name":"`+ClientName+`","version":"1"}`...)
		} else {
			out = append(out, `,"`+mcp.MetaKeyClientCapabilities+`":{},"`+mcp.MetaKeyClientInfo+`":{"name":"`+ClientName+`","version":"1"}`...)
		}
		meta = true
	}
	for k, v := range c.Meta {
		if meta {
			out = append(out, ',')
		} else {
			out = append(out, `"_meta":{`...)
			meta = true
		}
		if out, err = appendJSONString(out, k); err != nil {
			return nil, err
		}
		out = append(append(out, ':'), v...)
	}
	if meta {
		out = append(out, "},"...)
	}
	out = append(out, `"name":`...)
	if out, err = appendJSONString(out, c.Name); err != nil {
		return nil, err
	}
	out = append(out, `,"arguments":`...)
	out = append(out, c.Arguments...)
	if r := c.Input; r != nil && wire.Stateless(version) {
		if len(r.InputResponses) > 0 {
			out = append(append(out, `,"inputResponses":`...), r.InputResponses...)
		}
		if r.RequestState != "" {
			out = append(out, `,"requestState":`...)
			if out, err = appendJSONString(out, r.RequestState); err != nil {
				return nil, err
			}
		}
	}
	return append(out, '}'), nil
}

// appendJSONString appends s as encoding/json writes it: a string of
// printable ASCII that it does not escape (a version, most names) as it
// is, any other through encoding/json.
func appendJSONString(out []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			return append(out, q...), err
		}
	}
	return append(append(append(out, '"'), s...), '"'), nil
}

// toolMessage is a tools/call with the ID mcp-proxy-<seq> as wire.Encode
// writes it, made in one buffer: the ID is the pool's and needs no
// escaping, the params are appended in place.
func toolMessage(seq, version string, c toolPost) ([]byte, error) {
	size := 128 + len(seq) + len(c.Name) + len(c.Arguments)
	if wire.Stateless(version) {
		size += 192
	}
	for k, v := range c.Meta {
		size += len(k) + len(v) + 4
	}
	if r := c.Input; r != nil {
		size += len(r.Capabilities) + len(r.InputResponses) + len(r.RequestState) + 40
	}
	out := append(make([]byte, 0, size), `{"jsonrpc":"2.0","id":"mcp-proxy-`...)
	out = append(out, seq...)
	out = append(out, `","method":"tools/call","params":`...)
	out, err := appendCallParams(out, version, c)
	if err != nil {
		return nil, err
	}
	return append(out, '}'), nil
}

// postTool sends c to the upstream of s, a session of up, and returns the
// result, which may still be on the upstream's connection (Result). An
// error answer of the upstream is a *jsonrpc.Error (see Answer); an
// upstream that no longer knows the session yields mcp.ErrSessionMissing,
// so Do may retry on a new session.
func (p *Pool) postTool(ctx context.Context, up tenant.Upstream, s *mcp.ClientSession, c toolPost) (*Result, error) {
	version := sessionVersion(s)
	// A string ID of its own: the SDK numbers its requests in the same
	// session, and the upstream may refuse an ID already in flight.
	seq := strconv.FormatUint(p.callSeq.Add(1), 10)
	id, err := jsonrpc.MakeID("mcp-proxy-" + seq)
	if err != nil {
		return nil, err
	}
	body, err := toolMessage(seq, version, c)
	if err != nil {
		return nil, err
	}
	req, err := p.newRequest(ctx, up, s, version, body, c.Name)
	if err != nil {
		return nil, err
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	result, err := p.post(ctx, up, s, version, id, req, c.Notify, c.Ask)
	if err != nil && ctx.Err() != nil && !wire.Stateless(version) {
		// The caller gave up: tell the upstream to stop working on it.
		// (From 2026-07-28, closing the request's connection says so.)
		go p.cancel(up, s, version, id)
	}
	return result, err
}

// post sends the call and reads its answer: a Result that may still hold
// the response's body (its Close closes it), or an error.
func (p *Pool) post(ctx context.Context, up tenant.Upstream, s *mcp.ClientSession, version string, id jsonrpc.ID, req *http.Request, notify func([]byte), ask Asker) (*Result, error) {
	resp, err := p.roundTrip(up, req)
	if err != nil {
		var cerr *credentials.Error
		if errors.As(err, &cerr) {
			return nil, err // names the upstream already
		}
		return nil, fmt.Errorf("upstream %s: %w", up.Name, err)
	}
	if resp.StatusCode == http.StatusNotFound && s.ID() != "" {
		resp.Body.Close()
		return nil, fmt.Errorf("upstream %s: %w", up.Name, mcp.ErrSessionMissing)
	}
	mt := wire.MediaType(resp.Header.Get("Content-Type"))
	var res *Result
	switch {
	case mt == "text/event-stream" && resp.StatusCode == http.StatusOK:
		res, err = p.readStream(ctx, up, s, version, id, resp.Body, notify, ask)
	case mt == "application/json":
		res, err = p.readJSON(ctx, up, id, resp)
		if res == nil && err == nil {
			err = fmt.Errorf("upstream %s: answered HTTP %d (%s) without a JSON-RPC response", up.Name, resp.StatusCode, mt)
		}
	default:
		err = fmt.Errorf("upstream %s: answered HTTP %d (%s) without a JSON-RPC response", up.Name, resp.StatusCode, mt)
	}
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	res.upstream = up.Name
	if res.stream != nil {
		res.stream.body = resp.Body
	} else {
		resp.Body.Close()
	}
	return res, nil
}

// readJSON reads a JSON body as the answer to id: nil, nil when it is
// another message. A body that says it is larger than MaxMessageBytes is
// refused before it is read.
func (p *Pool) readJSON(ctx context.Context, up tenant.Upstream, id jsonrpc.ID, resp *http.Response) (*Result, error) {
	limit := p.opts.MaxMessageBytes
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("upstream %s: read the answer: %w", up.Name, &budget.TooLargeError{Limit: limit})
	}
	rd := answerReaders.Get().(*wire.Reader)
	rd.Reset(&limitReader{r: resp.Body, left: limit, limit: limit})
	meter := budget.NewMeter(budget.FromContext(ctx), limit, resp.ContentLength)
	res, _, _, err := readMessage(ctx, rd, meter, id)
	if res == nil || res.stream == nil {
		rd.Reset(nil)
		answerReaders.Put(rd)
	}
	if _, answered := err.(*jsonrpc.Error); err != nil && !answered {
		return nil, fmt.Errorf("upstream %s: read the answer: %w", up.Name, err)
	}
	return res, err
}

// roundTrip sends req, authorised by newRequest, with the pool's
// transport itself: an MCP endpoint answers a POST, it does not redirect
// it, and http.Client's redirect and deadline bookkeeping would cost more
// than the rest of a relayed call. A redirect is refused as the SDK's
// client refuses it (guardedClient): following it would take the
// credentials wherever the upstream names.
func (p *Pool) roundTrip(up tenant.Upstream, req *http.Request) (*http.Response, error) {
	base := p.base()
	if p.h1.serves(req) {
		base = p.h1
	}
	g := guardOf(base, up, p.creds, p.target(up.URL), p.opts.MaxMessageBytes)
	if g.refuse != nil || !g.target.allows(req.URL) {
		// admit records a refusal in its guard: one of its own on the
		// heap, so that g stays on the stack on every other call.
		return nil, p.guard(up).admit(req)
	}
	resp, err := g.send(req)
	if err != nil || !isRedirect(resp.StatusCode) {
		return resp, err
	}
	to, _ := resp.Location()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	return nil, redirectRefused(up.Name, to)
}

// newRequest is a POST to up within s: the config's credentials, then
// the session and the protocol version, which a header of the config
// does not replace, and for a tools/call of tool ("" for none) its
// Mcp-Method and Mcp-Name.
func (p *Pool) newRequest(ctx context.Context, up tenant.Upstream, s *mcp.ClientSession, version string, body []byte, tool string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, up.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up.Name, err)
	}
	if err := p.creds.Authorize(up, req); err != nil {
		return nil, credentialFailure(up.Name, err)
	}
	// The values share one array, where Header.Set allocates one each;
	// each is cut to its length, so that an Add does not write over the
	// next.
	h, vals := req.Header, make([]string, 0, 6)
	set := func(k, v string) {
		vals = append(vals, v)
		n := len(vals)
		h[k] = vals[n-1 : n : n]
	}
	set("Content-Type", "application/json")
	set("Accept", "application/json, text/event-stream")
	if version != "" {
		set("Mcp-Protocol-Version", version)
	}
	if sid := s.ID(); sid != "" {
		set("Mcp-Session-Id", sid)
	}
	if tool != "" {
		set("Mcp-Method", "tools/call")
		set("Mcp-Name", tool)
	}
	return req, nil
}

// sessionVersion is the protocol version s negotiated with its upstream.
func sessionVersion(s *mcp.ClientSession) string {
	if r := s.InitializeResult(); r != nil {
		return r.ProtocolVersion
	}
	return ""
}

// stateless reports whether s speaks 2026-07-28 or later with its upstream.
func stateless(s *mcp.ClientSession) bool { return wire.Stateless(sessionVersion(s)) }

// readStream reads the upstream's event stream up to the response to id,
// handing notifications to notify and the upstream's requests to the
// client to ask (refusing them when it is nil). An event is bounded by
// MaxMessageBytes; what is held of one is charged to the request's
// budget account (readMessage).
func (p *Pool) readStream(ctx context.Context, up tenant.Upstream, s *mcp.ClientSession, version string, id jsonrpc.ID, body io.Reader, notify func([]byte), ask Asker) (*Result, error) {
	lines := lineReaders.Get().(*bufio.Reader)
	lines.Reset(body)
	events := newEventReader(lines, p.opts.MaxMessageBytes)
	rd := answerReaders.Get().(*wire.Reader)
	meter := budget.NewMeter(budget.FromContext(ctx), p.opts.MaxMessageBytes, -1)
	res, err := p.readEvents(ctx, up, s, version, id, events, rd, meter, notify, ask)
	if res != nil && res.stream != nil {
		res.stream.lines = lines
		return res, nil
	}
	rd.Reset(nil)
	answerReaders.Put(rd)
	lines.Reset(nil)
	lineReaders.Put(lines)
	return res, err
}

func (p *Pool) readEvents(ctx context.Context, up tenant.Upstream, s *mcp.ClientSession, version string, id jsonrpc.ID, events *eventReader, rd *wire.Reader, meter *budget.Meter, notify func([]byte), ask Asker) (*Result, error) {
	refused := 0
	for {
		if err := events.next(); err != nil {
			return nil, p.streamError(ctx, up, err)
		}
		rd.Reset(events)
		res, other, raw, err := readMessage(ctx, rd, meter, id)
		if _, answered := err.(*jsonrpc.Error); answered {
			return nil, err
		}
		if err != nil {
			return nil, p.streamError(ctx, up, err)
		}
		if res != nil {
			return res, nil
		}
		if m, ok := other.(*jsonrpc.Request); ok {
			if m.ID.IsValid() {
				// Each answer is a POST of the proxy's: a flood of
				// requests is answered up to a bound, then ignored.
				if refused++; refused <= maxRefusals {
					if ask != nil && askable(m.Method) {
						// The read goes on: the result comes after the
						// client's answer, on this stream.
						go p.relayAsk(ctx, up, s, version, m, ask) // ends when ask returns
					} else {
						p.refuse(up, s, version, m)
					}
				}
			} else if notify != nil {
				notify(raw)
			}
		}
	}
}

// streamError is the error of a stream that failed before the answer.
func (p *Pool) streamError(ctx context.Context, up tenant.Upstream, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errStreamEnded) {
		return fmt.Errorf("upstream %s: %w: %w", up.Name, errStreamEnded, io.EOF)
	}
	return fmt.Errorf("upstream %s: an event of its answer: %w", up.Name, err)
}

// maxRefusals is how many requests to the client an upstream may send
// during one call and have refused; later ones are not answered.
const maxRefusals = 16

// refuse answers an upstream's request to the client (sampling,
// elicitation, roots) with an error, so the upstream does not wait.
func (p *Pool) refuse(up tenant.Upstream, s *mcp.ClientSession, version string, req *jsonrpc.Request) {
	p.send(up, s, version, &jsonrpc.Response{ID: req.ID, Error: refusal(req.Method)})
}

// cancel tells the upstream the call id is abandoned.
func (p *Pool) cancel(up tenant.Upstream, s *mcp.ClientSession, version string, id jsonrpc.ID) {
	params, err := json.Marshal(map[string]any{"requestId": id.Raw(), "reason": "the client's request ended"})
	if err != nil {
		return
	}
	p.send(up, s, version, &jsonrpc.Request{Method: "notifications/cancelled", Params: params})
}

// send posts one message within the session that needs no answer; the
// error says whether the upstream took it (2xx).
func (p *Pool) send(up tenant.Upstream, s *mcp.ClientSession, version string, msg jsonrpc.Message) error {
	body, err := wire.Encode(msg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hreq, err := p.newRequest(ctx, up, s, version, body, "")
	if err != nil {
		return err
	}
	resp, err := p.roundTrip(up, hreq)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("upstream %s: answered HTTP %d", up.Name, resp.StatusCode)
	}
	return nil
}
