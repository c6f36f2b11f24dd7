package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// The HTTP front: what an HTTP request must be before any of its messages
// is read, who sent it, and its body, taken apart into requests.

// frontHandler serves one HTTP request and returns what happened, for the
// log line and the request log.
type frontHandler func(w http.ResponseWriter, r *http.Request) *outcome

// frontMiddleware wraps a frontHandler.
type frontMiddleware func(frontHandler) frontHandler

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.auth != nil && oauth.Owns(r.URL.Path) {
		h.serveOAuth(w, r)
		if h.inflight.Load() == 0 { // as counted does
			logging.Flush(h.log)
		}
		return
	}
	if o := h.front(w, r); o.abort {
		// A relayed result failed after its first bytes were sent: the
		// client must not take what it got for a whole answer.
		abort(w)
	}
}

// abort breaks off a response whose first bytes were sent. The
// connection is closed at once where it can be taken over (HTTP/1):
// the Functions Framework recovers every panic, http.ErrAbortHandler
// included, writes its own text after what was sent and ends the
// response cleanly.
func abort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// serve handles an HTTP request once the middleware let it through.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (o *outcome) {
	o = &outcome{start: h.opts.Now(), httpStatus: http.StatusOK, requestID: requestID(r)}
	defer h.recoverServe(w, o)
	if e := h.serveHTTP(w, r, o); e != nil {
		o.err, o.httpStatus = e, e.status
		o.outBytes = writeError(w, jsonrpc.ID{}, e)
	}
	return o
}

// serveHTTP checks the request, authenticates it, reads its body and
// answers it; an error it returns is the answer to the whole request.
func (h *Handler) serveHTTP(w http.ResponseWriter, r *http.Request, o *outcome) *rpcError {
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		return newError(http.StatusNotFound, codeInvalidRequest, "no MCP endpoint at "+r.URL.Path+" (use /mcp, /mcp/{instanceId} or /mcp/{instanceId}/{namespace})")
	}
	if e := h.checkOrigin(w, r); e != nil {
		return e
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		o.httpStatus = http.StatusNoContent
		return nil
	default:
		// The proxy is stateless: no standalone stream to GET, no session
		// to DELETE.
		e := newError(http.StatusMethodNotAllowed, codeInvalidRequest, r.Method+" is not supported: this stateless endpoint takes POST only")
		e.header = http.Header{"Allow": {"POST, OPTIONS"}}
		return e
	}
	if e := checkContentType(r); e != nil {
		return e
	}
	if e := checkAccept(r); e != nil {
		return e
	}
	version, e := headerVersion(r)
	if e != nil {
		return e
	}
	o.version = version
	c, e := h.authenticate(r.Context(), r, rt, o)
	if e != nil {
		h.challenge(r, e)
		return e
	}
	c.requestID, c.header, c.version = o.requestID, r.Header, version
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	// A client that stops reading its answer holds the request (its
	// goroutine, its budget account) only until its writes fail; net/http
	// clears the deadline once the request is done.
	deadline, _ := ctx.Deadline()
	http.NewResponseController(w).SetWriteDeadline(deadline.Add(h.opts.WriteGrace))
	// The body and every upstream answer of the request are held within
	// the process's budget for bytes in flight, until the response is
	// written.
	acct := h.opts.Budget.Open()
	defer acct.Close()
	ctx = budget.NewContext(ctx, acct)
	if r.ContentLength > budget.Peek && r.ContentLength <= h.opts.MaxBodyBytes {
		// A large body is known before it is read: all its request will
		// hold is taken in one step (budget.Account.Prepay).
		if e := h.prepay(ctx, acct, r.ContentLength); e != nil {
			return e
		}
	}
	body, err := budget.NewMeter(acct, h.opts.MaxBodyBytes, r.ContentLength).ReadAll(ctx, r.Body)
	if err != nil {
		var tooLarge *budget.TooLargeError
		switch {
		case errors.As(err, &tooLarge):
			return newError(http.StatusRequestEntityTooLarge, codeInvalidRequest, fmt.Sprintf("request body larger than %d bytes (MAX_BODY_BYTES)", h.opts.MaxBodyBytes))
		case errors.Is(err, budget.ErrBusy):
			return busy()
		}
		return newError(http.StatusBadRequest, codeParseError, "cannot read request body")
	}
	o.inBytes = len(body)
	if len(body) > budget.Peek && r.ContentLength < 0 {
		// A large body that did not say its length: what else its
		// request will hold is taken now, while it holds the body.
		if e := h.prepay(ctx, acct, int64(len(body))); e != nil {
			return e
		}
	}
	if isBatch(body) {
		return h.serveBatch(ctx, w, c, body, o)
	}
	var stream *eventStream
	var notify func([]byte)
	if acceptsEvents(r.Header) {
		stream = &eventStream{w: w}
		notify = stream.send
		o.stream = stream
	}
	rep, m := h.answer(ctx, c, body, notify, cancel)
	o.one[0] = m
	o.messages = o.one[:]
	h.respond(ctx, w, stream, rep, o)
	return nil
}

// isBatch reports whether a body is a JSON array: a JSON-RPC batch.
func isBatch(body []byte) bool {
	rest := bytes.TrimLeft(body, " \t\r\n")
	return len(rest) > 0 && rest[0] == '['
}

// serveBatch answers a JSON-RPC batch (2025-03-26 only) with a batch of
// the answers of its members.
func (h *Handler) serveBatch(ctx context.Context, w http.ResponseWriter, c *caller, body []byte, o *outcome) *rpcError {
	if c.version != "" && c.version != wire.V20250326 {
		return newError(http.StatusBadRequest, codeInvalidRequest, "JSON-RPC batches are not supported by protocol version "+c.version)
	}
	var raw []json.RawMessage
	if err := wire.Unmarshal(body, &raw); errors.Is(err, wire.ErrTooDeep) {
		return newError(http.StatusBadRequest, codeInvalidRequest, fmt.Sprintf("message nested deeper than %d levels", wire.MaxDepth))
	} else if err != nil {
		return newError(http.StatusBadRequest, codeParseError, "invalid JSON: "+err.Error())
	}
	if len(raw) == 0 {
		return newError(http.StatusBadRequest, codeInvalidRequest, "empty batch")
	}
	if len(raw) > h.opts.MaxBatch {
		return newError(http.StatusBadRequest, codeInvalidRequest, fmt.Sprintf("batch of %d messages; at most %d are taken (MAX_BATCH_MESSAGES)", len(raw), h.opts.MaxBatch))
	}
	// Each message is a request of its own in the request log, so that a
	// batch neither evades usage and audit nor hides its tools behind the
	// last one's name.
	o.batch = true
	var out []json.RawMessage
	for _, data := range raw {
		rep, m := h.answer(ctx, c, data, nil, nil)
		resp, e := h.encodeReply(ctx, rep)
		if e != nil {
			m.err = e
			resp, _ = h.encodeReply(ctx, &reply{id: rep.id, err: e})
		}
		m.outBytes = len(resp)
		m.took = h.opts.Now().Sub(m.start)
		o.messages = append(o.messages, m)
		if resp != nil {
			out = append(out, resp)
		}
	}
	// Errors of single members travel inside the batch's 200.
	if len(out) == 0 {
		h.respond(ctx, w, nil, nil, o)
		return nil
	}
	batch, _ := json.Marshal(out)
	o.httpStatus, o.outBytes = http.StatusOK, writeJSON(w, http.StatusOK, batch)
	return nil
}

// answer handles one JSON-RPC message: the reply to send, nil for a
// notification or a response, and what happened. cancel ends ctx when
// the message is the whole request (nil in a batch).
func (h *Handler) answer(ctx context.Context, c *caller, data []byte, notify func([]byte), cancel context.CancelFunc) (*reply, message) {
	m := message{start: h.opts.Now(), inBytes: len(data)}
	msg, err := wire.Decode(data)
	if err != nil {
		var syntax *json.SyntaxError
		e := newError(http.StatusBadRequest, codeInvalidRequest, "not a JSON-RPC 2.0 message: "+err.Error())
		switch {
		case errors.Is(err, wire.ErrTooDeep):
			e = newError(http.StatusBadRequest, codeInvalidRequest, fmt.Sprintf("message nested deeper than %d levels", wire.MaxDepth))
		case errors.As(err, &syntax) || !json.Valid(data):
			e = newError(http.StatusBadRequest, codeParseError, "invalid JSON")
		}
		m.err = e
		return &reply{err: e, status: e.status}, m
	}
	req, ok := msg.(*jsonrpc.Request)
	if !ok {
		resp := msg.(*jsonrpc.Response)
		if resp.Result == nil && resp.Error == nil {
			// Neither a request (no method) nor a response.
			m.err = newError(http.StatusBadRequest, codeInvalidRequest, "missing method")
			return &reply{id: resp.ID, err: m.err, status: m.err.status}, m
		}
		if h.asks != nil {
			if ours, e := h.asks.deliver(ctx, c, resp); ours {
				m.method, m.err = "(answer)", e
				if e != nil {
					return &reply{err: e, status: e.status}, m
				}
			}
		}
		return nil, m // no answer to a response
	}
	m.method = req.Method
	if req.Method == "" {
		m.err = newError(http.StatusBadRequest, codeInvalidRequest, "missing method")
		return &reply{id: req.ID, err: m.err, status: m.err.status}, m
	}
	if !req.ID.IsValid() {
		if req.Method == "notifications/cancelled" {
			h.cancelled(c, req.Params)
		}
		return nil, m // notifications need no answer
	}
	decoded := decodeRequestParams(req.Params)
	ep := epochOf(c.version, decoded)
	if req.Method == "tools/call" && decoded != nil {
		m.tool = decoded.Name
	}
	next, ok := h.epochs[ep][req.Method]
	if !ok {
		m.err = newError(http.StatusOK, codeMethodNotFound, "method not found: "+req.Method)
		return &reply{id: req.ID, err: m.err, status: ep.status(m.err)}, m
	}
	rq := &request{caller: c, id: req.ID, method: req.Method, params: req.Params, decoded: decoded, epoch: ep, notify: notify, cancel: cancel}
	res, e := next(ctx, rq)
	if e != nil {
		m.err, m.upstream = e, e.upstream
		return &reply{id: req.ID, req: rq, err: e, status: ep.status(e)}, m
	}
	m.upstream = res.upstream
	return &reply{id: req.ID, req: rq, res: res, typed: ep.stateless, status: http.StatusOK}, m
}

// prepay takes for a request with a large body, in one step, the room it
// will hold: the body, about four more copies of it while it is relayed
// (decoded params, the arguments, the call's params, the encoded call;
// measured with make bench-memory), and one upstream answer.
func (h *Handler) prepay(ctx context.Context, acct *budget.Account, bodyBytes int64) *rpcError {
	err := acct.Prepay(ctx, (1+bodyCopies)*bodyBytes+h.opts.MaxAnswerBytes)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, budget.ErrBusy):
		return busy()
	}
	return newError(http.StatusServiceUnavailable, codeInternalError, "the request ended while waiting for room")
}

// bodyCopies is how many more times than once a request body is held
// while its call is relayed.
const bodyCopies = 4

// busy is the answer when the process holds as many bytes in flight as
// its budget allows and no room freed in time: the client retries, the
// process does not grow.
func busy() *rpcError {
	e := newError(http.StatusServiceUnavailable, codeInternalError, "the proxy holds as many request and result bytes as its memory allows (INFLIGHT_BYTES); retry")
	e.header = http.Header{"Retry-After": {"1"}}
	return e
}

// checkOrigin guards against DNS rebinding and sets CORS headers. Served
// on a loopback address (make dev, tests), the proxy answers only requests
// addressed to a loopback host name, and loopback origins are allowed.
// Elsewhere a request with an Origin header must come from a configured
// origin; requests without one (non-browser clients) pass.
func (h *Handler) checkOrigin(w http.ResponseWriter, r *http.Request) *rpcError {
	local := onLoopback(r)
	if local && !loopbackHost(r.Host) {
		return newError(http.StatusForbidden, codeForbidden, "host "+r.Host+" is not allowed")
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	allowed := h.origins[origin] || h.origins["*"]
	if !allowed && local {
		if u, err := url.Parse(origin); err == nil && loopbackHost(u.Host) {
			allowed = true
		}
	}
	if !allowed {
		return newError(http.StatusForbidden, codeForbidden, "origin "+origin+" is not allowed")
	}
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", origin)
	hdr.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", allowedHeaders(r))
		hdr.Set("Access-Control-Max-Age", "600")
	}
	return nil
}

// allowedHeaders are the request headers a browser may send: the
// proxy's own, and the Mcp-Param-* headers of a 2026-07-28 tool call the
// preflight asks for (their names depend on the tool's schema).
func allowedHeaders(r *http.Request) string {
	allowed := "Authorization, X-API-Key, Content-Type, Accept, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Session-Id"
	n := 0
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if n < maxParamHeaders && len(name) > len(paramHeaderPrefix) && len(name) <= 256 &&
				strings.EqualFold(name[:len(paramHeaderPrefix)], paramHeaderPrefix) && validHeaderName(name) {
				allowed += ", " + name
				n++
			}
		}
	}
	return allowed
}

// maxParamHeaders bounds the Mcp-Param-* names a preflight is allowed.
const maxParamHeaders = 64

// validHeaderName reports whether s is an HTTP header name (an RFC 9110
// token), so that nothing else is echoed into the response.
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// onLoopback reports whether the request reached a loopback address.
func onLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// loopbackHost reports whether a Host value names this machine.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAccept refuses a client that accepts neither JSON nor an event
// stream. A missing Accept is tolerated: the answer is JSON.
func checkAccept(r *http.Request) *rpcError {
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return nil
	}
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt := wire.MediaType(part)
			switch mt {
			case "application/json", "application/*", "*/*", "text/event-stream", "text/*":
				return nil
			}
		}
	}
	return newError(http.StatusNotAcceptable, codeInvalidRequest, "Accept must allow application/json")
}

func checkContentType(r *http.Request) *rpcError {
	if wire.MediaType(r.Header.Get("Content-Type")) != "application/json" {
		return newError(http.StatusUnsupportedMediaType, codeInvalidRequest, "Content-Type must be application/json")
	}
	return nil
}

// authenticate resolves the API key through the warm cache, checks it may
// be used on this route and loads its instance.
func (h *Handler) authenticate(ctx context.Context, r *http.Request, rt route, o *outcome) (*caller, *rpcError) {
	secret, ok := apiKey(r)
	if !ok {
		return nil, unauthorized("", "missing API key: send Authorization: Bearer <key> or X-API-Key")
	}
	if h.auth != nil && oauth.LooksLikeJWT(secret) {
		return h.authenticateToken(ctx, r, rt, secret, o)
	}
	prefix := tenant.DisplayPrefix(secret)
	if !tenant.WellFormedKey(secret) {
		// No key of ours has another shape: no lookup, no cache entry.
		h.authFailure(r, prefix, "malformed key")
		return nil, unauthorized("invalid_token", "invalid API key")
	}
	hash := tenant.HashKey(secret)
	key, outcome, err := h.keys.Get(ctx, string(hash[:]), func(ctx context.Context) (*tenant.Key, error) {
		// Made-up keys of the right shape each cost a lookup: the
		// process sends at most KeyLookupRate a second, so that a
		// flood neither takes the pool's connections from cold
		// instance loads nor multiplies into Postgres across instances.
		if !h.keyLookups.Allow() {
			return nil, errLookupRate
		}
		return h.store.LookupAPIKey(ctx, hash)
	})
	o.keyCache = outcome
	switch {
	case errors.Is(err, errLookupRate):
		h.authFailure(r, prefix, "key lookup rate exceeded")
		e := newError(http.StatusTooManyRequests, codeInternalError, "too many API key lookups on this instance; retry in a second")
		e.header = http.Header{"Retry-After": {"1"}}
		return nil, e
	case errors.Is(err, tenant.ErrNotFound):
		h.authFailure(r, prefix, "unknown key")
		return nil, unauthorized("invalid_token", "invalid API key")
	case err != nil:
		h.log.Error("api key lookup failed", "error", err.Error())
		return nil, newError(http.StatusServiceUnavailable, codeInternalError, "cannot check the API key now; retry later")
	}
	if err := key.Check(h.opts.Now()); err != nil {
		h.authFailure(r, prefix, err.Error())
		return nil, unauthorized("invalid_token", err.Error())
	}
	o.key = key
	if rt.instanceID != "" && rt.instanceID != key.InstanceID {
		h.authFailure(r, prefix, "key used on another instance")
		return nil, newError(http.StatusForbidden, codeForbidden, "the API key does not belong to instance "+rt.instanceID)
	}
	return h.open(ctx, key, rt, o)
}

// open loads the instance of an authenticated caller.
func (h *Handler) open(ctx context.Context, key *tenant.Key, rt route, o *outcome) (*caller, *rpcError) {
	v, outcome, err := h.views.Get(ctx, key.InstanceID, func(ctx context.Context) (*view, error) {
		inst, err := h.store.LoadInstanceConfig(ctx, key.InstanceID)
		if err != nil {
			return nil, err
		}
		return newView(inst), nil
	})
	o.viewCache = outcome
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		return nil, unauthorized("invalid_token", tenant.ErrInstanceDeleted.Error())
	case err != nil:
		h.log.Error("instance load failed", "instance", key.InstanceID, "error", err.Error())
		return nil, newError(http.StatusServiceUnavailable, codeInternalError, "cannot load the instance configuration now; retry later")
	}
	o.view = v
	if e := h.overQuota(key); e != nil {
		return nil, e
	}
	if e := h.rateLimited(key, v); e != nil {
		return nil, e
	}
	c := &caller{key: key, view: v, asks: h.asks}
	if rt.namespace != "" {
		u, ok := v.byNS[rt.namespace]
		if !ok {
			return nil, newError(http.StatusNotFound, codeInvalidRequest, "instance has no upstream "+rt.namespace)
		}
		c.only = u
		o.only = u
	}
	return c, nil
}

// errLookupRate is the error of a key lookup beyond KeyLookupRate.
var errLookupRate = errors.New("key lookup rate exceeded")

func unauthorized(oauthError, message string) *rpcError {
	e := newError(http.StatusUnauthorized, codeUnauthorized, message)
	challenge := `Bearer realm="mcp-proxy"`
	if oauthError != "" {
		challenge += fmt.Sprintf(`, error=%q, error_description=%q`, oauthError, message)
	}
	e.header = http.Header{"Www-Authenticate": {challenge}}
	return e
}

// authFailure logs a refused key for security review: the client's
// address and the key's display prefix, never the key.
// A flood of made-up keys would otherwise write a line per request: at
// most 20 a second are written, and the next written line says how many
// were left out.
func (h *Handler) authFailure(r *http.Request, keyPrefix, reason string) {
	if !h.failureLines.Allow() {
		h.failuresLeftOut.Add(1)
		return
	}
	h.log.Warn("authentication failed", "reason", reason, "keyPrefix", keyPrefix,
		"clientIp", logging.ClientIP(r), "userAgent", r.UserAgent(), "path", r.URL.Path,
		"leftOutBefore", h.failuresLeftOut.Swap(0))
}

// apiKey takes the key from Authorization: Bearer, else X-API-Key.
func apiKey(r *http.Request) (string, bool) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
			return strings.TrimSpace(token), true
		}
	}
	if k := strings.TrimSpace(r.Header.Get("X-API-Key")); k != "" {
		return k, true
	}
	return "", false
}
