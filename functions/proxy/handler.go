package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"golang.org/x/time/rate"

	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// Store is what the proxy needs of Postgres: two queries, each one round
// trip, both behind the warm cache.
type Store interface {
	LookupAPIKey(ctx context.Context, hash [32]byte) (*tenant.Key, error)
	LoadInstanceConfig(ctx context.Context, instanceID string) (*tenant.Instance, error)
}

// Options tune a Handler. Zero values take the defaults named.
type Options struct {
	// RequestTimeout bounds a whole request, upstream calls included.
	// Default 120 s.
	RequestTimeout time.Duration
	// ListTimeout bounds asking one upstream for a list, so one slow
	// upstream drops out of tools/list instead of holding it. Default 10 s.
	ListTimeout time.Duration
	// MaxBodyBytes bounds a request body. Default 4 MiB.
	MaxBodyBytes int64
	// Budget bounds the bytes the process holds for requests in flight:
	// bodies and upstream answers. Nil holds them without a bound.
	Budget *budget.Budget
	// MaxAnswerBytes is the room a request with a large body takes for
	// its upstream's answer, the pool's MaxMessageBytes. Default 16 MiB.
	MaxAnswerBytes int64
	// KeyLookupRate bounds the Postgres lookups of API keys not in the
	// warm cache, per second and process (the burst is the same
	// number); a request beyond it gets 429. Default 100.
	KeyLookupRate float64
	// MaxBatch bounds the messages of a JSON-RPC batch (2025-03-26).
	// Default 50.
	MaxBatch int
	// AllowedOrigins are the browser origins that may call the proxy; a
	// request with any other Origin header is refused (DNS rebinding
	// protection). Requests without Origin (non-browser clients) pass.
	AllowedOrigins []string
	// Cache configures the API key and instance caches.
	Cache configcache.Options
	// ToolsTTL is how long an upstream's tool list is kept. Default 30 s.
	ToolsTTL time.Duration
	// MaxListBytes bounds one upstream's tool list, and its prompts,
	// resources and templates together, as JSON: a larger one leaves the
	// upstream out of the lists. Default 4 MiB.
	MaxListBytes int64
	// ListCacheBytes bounds the tool lists the process keeps, and
	// separately the catalogs, the least recently used evicted beyond it.
	// Default 16 MiB each.
	ListCacheBytes int64
	// ProjectID qualifies trace IDs in log lines.
	ProjectID string
	// Version is reported as serverInfo.version.
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// RequestLog receives one entry per request made with a valid key;
	// nil keeps no request log (the structured log line is still written).
	RequestLog *logbuffer.Buffer
	// DBStats reports the Postgres pool for the process figures; nil
	// leaves the pool out of them.
	DBStats func() postgres.Stats
	// FiguresInterval is how often, while requests come, the process
	// figures are logged. Default 1 minute.
	FiguresInterval time.Duration
}

// Handler is the proxy's MCP endpoint. It is safe for concurrent use; one
// Handler serves every request of a process.
type Handler struct {
	store Store
	pool  *upstream.Pool
	log   *slog.Logger
	opts  Options
	keys  *configcache.Cache[*tenant.Key]
	views *configcache.Cache[*view]
	tools *configcache.Cache[*toolList]
	// catalogCache keeps each upstream's capabilities, prompts, resources
	// and templates, like tools.
	catalogCache *configcache.Cache[*catalog]
	origins      map[string]bool
	keyLookups   *rate.Limiter // lookups of keys not in the cache
	// failureLines bounds the log lines of refused keys; failuresLeftOut
	// counts those it left out since the last one written.
	failureLines    *rate.Limiter
	failuresLeftOut atomic.Int64
	calls           calls // tools/call in flight, for notifications/cancelled

	draining    atomic.Bool  // set by Shutdown: new requests are refused
	inflight    atomic.Int64 // requests being served
	lastFigures atomic.Int64 // unix nanoseconds of the last process figures
}

// New makes a Handler.
func New(store Store, pool *upstream.Pool, logger *slog.Logger, opts Options) *Handler {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 120 * time.Second
	}
	if opts.ListTimeout <= 0 {
		opts.ListTimeout = 10 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	if opts.MaxAnswerBytes <= 0 {
		opts.MaxAnswerBytes = upstream.DefaultMaxMessageBytes
	}
	if opts.KeyLookupRate <= 0 {
		opts.KeyLookupRate = 100
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 50
	}
	if opts.ToolsTTL <= 0 {
		opts.ToolsTTL = 30 * time.Second
	}
	if opts.MaxListBytes <= 0 {
		opts.MaxListBytes = 4 << 20
	}
	if opts.ListCacheBytes <= 0 {
		opts.ListCacheBytes = 16 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.FiguresInterval <= 0 {
		opts.FiguresInterval = time.Minute
	}
	h := &Handler{store: store, pool: pool, log: logger, opts: opts, origins: map[string]bool{},
		keyLookups:   rate.NewLimiter(rate.Limit(opts.KeyLookupRate), max(1, int(opts.KeyLookupRate))),
		failureLines: rate.NewLimiter(20, 20)}
	for _, o := range opts.AllowedOrigins {
		h.origins[strings.TrimSuffix(strings.TrimSpace(o), "/")] = true
	}
	notFound := func(err error) bool { return errors.Is(err, tenant.ErrNotFound) }
	refreshFailed := func(what string) func(string, error) {
		return func(_ string, err error) {
			logger.Warn("cache refresh failed; serving the cached value", "cache", what, "error", err.Error())
		}
	}
	panicked := func(what string) func(string, any, []byte) {
		return func(_ string, p any, stack []byte) {
			logger.Error("panic in cache loader; the load failed", "cache", what, "panic", fmt.Sprint(p), "stack", string(stack))
		}
	}
	keyOpts := opts.Cache
	keyOpts.IsNegative, keyOpts.OnRefreshError, keyOpts.OnPanic = notFound, refreshFailed("apiKey"), panicked("apiKey")
	h.keys = configcache.New[*tenant.Key](keyOpts)
	viewOpts := opts.Cache
	viewOpts.IsNegative, viewOpts.OnRefreshError, viewOpts.OnPanic = notFound, refreshFailed("instance"), panicked("instance")
	h.views = configcache.New[*view](viewOpts)
	// A failing upstream must drop out of the list, so its tool list is
	// never served stale.
	h.tools = configcache.New[*toolList](configcache.Options{Size: opts.Cache.Size, TTL: opts.ToolsTTL,
		StaleIfError: -1, LoadTimeout: opts.ListTimeout, Now: opts.Now, OnPanic: panicked("tools"),
		Cost: func(v any) int64 { return v.(*toolList).bytes }, MaxCost: opts.ListCacheBytes})
	h.catalogCache = configcache.New[*catalog](configcache.Options{Size: opts.Cache.Size, TTL: opts.ToolsTTL,
		StaleIfError: -1, LoadTimeout: opts.ListTimeout, Now: opts.Now, OnPanic: panicked("catalog"),
		Cost: func(v any) int64 { return v.(*catalog).bytes }, MaxCost: opts.ListCacheBytes})
	return h
}

// exchange is one HTTP request as it is handled and then logged.
type exchange struct {
	start     time.Time
	requestID string
	key       *tenant.Key
	keyPrefix string
	view      *view
	only      *upstreamView  // set on a single-upstream route
	stream    *eventStream   // set when the client takes an event stream
	params    *requestParams // of the message being answered, nil if they do not decode
	// resultTyped: the result came from a 2026-07-28 upstream as it
	// encoded it, resultType included.
	resultTyped bool
	header      http.Header
	version     string // MCP-Protocol-Version of the request
	modern      bool   // the request speaks 2026-07-28 or later
	keyCache    configcache.Outcome
	viewCache   configcache.Outcome
	httpStatus  int
	// Of the (last) JSON-RPC request in the body:
	method     string
	tool       string
	upstream   string
	status     string // success, error or timeout
	rpcCode    int64
	errMessage string
	inBytes    int
	outBytes   int
	// members is the length of a batch, whose messages are logged each
	// as an exchange of its own; 0 for a single message.
	members int
}

// member is the exchange of one message of a batch: the request's
// route, key and instance, with an outcome of its own.
func (x *exchange) member(start time.Time) *exchange {
	return &exchange{start: start, requestID: x.requestID, key: x.key, keyPrefix: x.keyPrefix, view: x.view,
		only: x.only, header: x.header, version: x.version, keyCache: x.keyCache, viewCache: x.viewCache,
		httpStatus: http.StatusOK, status: "success"}
}

func (x *exchange) fail(e *rpcError) {
	if x.status != "timeout" {
		x.status = "error"
	}
	x.rpcCode, x.errMessage = e.code, e.message
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	if h.draining.Load() {
		e := newError(http.StatusServiceUnavailable, codeInternalError, "the proxy is shutting down; retry")
		e.header = http.Header{"Retry-After": {"1"}}
		writeError(w, jsonrpc.ID{}, e)
		return
	}
	// A due batch of the request log is written now, while this request
	// holds the CPU that Cloud Functions takes away between requests.
	if h.opts.RequestLog != nil {
		h.opts.RequestLog.Kick()
	}
	h.maybeLogFigures()
	x := &exchange{start: h.opts.Now(), httpStatus: http.StatusOK, status: "success", requestID: requestID(r), header: r.Header}
	defer h.logExchange(r, x)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "requestId", x.requestID)
			e := newError(http.StatusInternalServerError, codeInternalError, "internal error")
			x.fail(e)
			x.httpStatus = e.status
			writeError(w, jsonrpc.ID{}, e)
		}
	}()
	if e := h.serve(w, r, x); e != nil {
		x.fail(e)
		x.httpStatus = e.status
		x.outBytes = writeError(w, jsonrpc.ID{}, e)
	}
}

// serve handles a request; an error it returns is answered by ServeHTTP.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, x *exchange) *rpcError {
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
		x.httpStatus = http.StatusNoContent
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
	x.version = version
	if e := h.authenticate(r.Context(), r, rt, x); e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
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
	x.inBytes = len(body)
	if len(body) > budget.Peek && r.ContentLength < 0 {
		// A large body that did not say its length: what else its
		// request will hold is taken now, while it holds the body.
		if e := h.prepay(ctx, acct, int64(len(body))); e != nil {
			return e
		}
	}
	return h.dispatch(ctx, w, r, body, x)
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

// dispatch decodes the body (one message, or a batch on 2025-03-26) and
// answers it.
func (h *Handler) dispatch(ctx context.Context, w http.ResponseWriter, r *http.Request, body []byte, x *exchange) *rpcError {
	trimmed := strings.TrimLeft(string(body[:min(len(body), 64)]), " \t\r\n")
	if strings.HasPrefix(trimmed, "[") {
		if x.version != "" && x.version != version20250326 {
			return newError(http.StatusBadRequest, codeInvalidRequest, "JSON-RPC batches are not supported by protocol version "+x.version)
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
		// Each message is a request of its own in the request log, so
		// that a batch neither evades usage and audit nor hides its
		// tools behind the last one's name.
		x.method, x.members = "(batch)", len(raw)
		var out []json.RawMessage
		for _, m := range raw {
			mx := x.member(h.opts.Now())
			resp := h.answer(ctx, m, mx)
			mx.inBytes, mx.outBytes = len(m), len(resp)
			if mx.method != "" {
				h.record(r, mx, h.opts.Now().Sub(mx.start))
			}
			if resp != nil {
				out = append(out, resp)
			}
		}
		// Errors of single members travel inside the batch's 200.
		x.httpStatus = http.StatusOK
		if len(out) == 0 {
			return h.write(w, x, nil)
		}
		body, _ := json.Marshal(out)
		return h.write(w, x, body)
	}
	if acceptsEvents(x.header) {
		x.stream = &eventStream{w: w}
	}
	return h.write(w, x, h.answer(ctx, body, x))
}

// write sends a response body, or 202 Accepted when there is none (the
// body held only notifications or responses). A response that follows
// notifications ends their event stream.
func (h *Handler) write(w http.ResponseWriter, x *exchange, body []byte) *rpcError {
	if x.stream != nil {
		if streamed, n := x.stream.finish(body); streamed {
			x.outBytes = n
			return nil
		}
	}
	if body == nil {
		w.WriteHeader(http.StatusAccepted)
		x.httpStatus = http.StatusAccepted
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(x.httpStatus)
	w.Write(body)
	x.outBytes = len(body)
	// The client has its answer now, not after the request's log line
	// and log entry, which ServeHTTP writes when this returns. With the
	// length set, flushing early keeps the response unchunked.
	http.NewResponseController(w).Flush()
	return nil
}

// answer handles one JSON-RPC message and returns the encoded response,
// or nil for a notification or a response.
func (h *Handler) answer(ctx context.Context, data []byte, x *exchange) json.RawMessage {
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
		return h.errorResponse(x, jsonrpc.ID{}, e)
	}
	req, ok := msg.(*jsonrpc.Request)
	if !ok {
		if resp := msg.(*jsonrpc.Response); resp.Result == nil && resp.Error == nil {
			// Neither a request (no method) nor a response.
			return h.errorResponse(x, resp.ID, newError(http.StatusBadRequest, codeInvalidRequest, "missing method"))
		}
		return nil // a response to a request the proxy never sends
	}
	x.method = req.Method
	if req.Method == "" {
		return h.errorResponse(x, req.ID, newError(http.StatusBadRequest, codeInvalidRequest, "missing method"))
	}
	if !req.ID.IsValid() {
		if req.Method == "notifications/cancelled" {
			h.cancelled(x, req.Params)
		}
		return nil // notifications need no answer
	}
	x.params, x.resultTyped = decodeRequestParams(req.Params), false
	x.modern = x.version >= version20260728 || x.params.protocolVersion() != ""
	table := methods
	if x.modern {
		table = modernMethods
	}
	fn, ok := table[req.Method]
	if !ok {
		return h.errorResponse(x, req.ID, newError(http.StatusOK, codeMethodNotFound, "method not found: "+req.Method))
	}
	if x.modern {
		if e := checkModern(x, req.Method, x.params); e != nil {
			return h.errorResponse(x, req.ID, e)
		}
	}
	if req.Method == "tools/call" && x.key != nil && !x.modern {
		// Only older versions cancel by notification; from 2026-07-28 a
		// closed request says so, which ctx carries already.
		var done func()
		ctx, done = h.calls.track(ctx, x.key.ID, req.ID)
		defer done()
	}
	result, e := fn(h, ctx, x, req.Params)
	if e != nil {
		return h.errorResponse(x, req.ID, e)
	}
	raw, ok := result.(json.RawMessage) // an upstream's result, relayed as it came
	if !ok {
		var err error
		if raw, err = json.Marshal(result); err != nil {
			return h.errorResponse(x, req.ID, newError(http.StatusOK, codeInternalError, "cannot encode the result"))
		}
	}
	if x.modern && !x.resultTyped {
		raw = withResultType(raw)
	}
	out, err := wire.Encode(&jsonrpc.Response{ID: req.ID, Result: raw})
	if err != nil {
		return h.errorResponse(x, req.ID, newError(http.StatusOK, codeInternalError, "cannot encode the result"))
	}
	return out
}

func (h *Handler) errorResponse(x *exchange, id jsonrpc.ID, e *rpcError) json.RawMessage {
	if x.modern {
		e.status = modernStatus(e.code, e.status)
	}
	x.fail(e)
	if e.status != http.StatusOK {
		x.httpStatus = e.status
	}
	return encodeError(id, e)
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
		hdr.Set("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, Accept, MCP-Protocol-Version, Mcp-Method, Mcp-Name")
		hdr.Set("Access-Control-Max-Age", "600")
	}
	return nil
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
func (h *Handler) authenticate(ctx context.Context, r *http.Request, rt route, x *exchange) *rpcError {
	secret, ok := apiKey(r)
	if !ok {
		return unauthorized("", "missing API key: send Authorization: Bearer <key> or X-API-Key")
	}
	x.keyPrefix = tenant.DisplayPrefix(secret)
	if !tenant.WellFormedKey(secret) {
		// No key of ours has another shape: no lookup, no cache entry.
		h.authFailure(r, x, "malformed key")
		return unauthorized("invalid_token", "invalid API key")
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
	x.keyCache = outcome
	switch {
	case errors.Is(err, errLookupRate):
		h.authFailure(r, x, "key lookup rate exceeded")
		e := newError(http.StatusTooManyRequests, codeInternalError, "too many API key lookups on this instance; retry in a second")
		e.header = http.Header{"Retry-After": {"1"}}
		return e
	case errors.Is(err, tenant.ErrNotFound):
		h.authFailure(r, x, "unknown key")
		return unauthorized("invalid_token", "invalid API key")
	case err != nil:
		h.log.Error("api key lookup failed", "error", err.Error())
		return newError(http.StatusServiceUnavailable, codeInternalError, "cannot check the API key now; retry later")
	}
	if err := key.Check(h.opts.Now()); err != nil {
		h.authFailure(r, x, err.Error())
		return unauthorized("invalid_token", err.Error())
	}
	x.key = key
	if rt.instanceID != "" && rt.instanceID != key.InstanceID {
		h.authFailure(r, x, "key used on another instance")
		return newError(http.StatusForbidden, codeForbidden, "the API key does not belong to instance "+rt.instanceID)
	}
	v, outcome, err := h.views.Get(ctx, key.InstanceID, func(ctx context.Context) (*view, error) {
		inst, err := h.store.LoadInstanceConfig(ctx, key.InstanceID)
		if err != nil {
			return nil, err
		}
		return newView(inst), nil
	})
	x.viewCache = outcome
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		return unauthorized("invalid_token", tenant.ErrInstanceDeleted.Error())
	case err != nil:
		h.log.Error("instance load failed", "instance", key.InstanceID, "error", err.Error())
		return newError(http.StatusServiceUnavailable, codeInternalError, "cannot load the instance configuration now; retry later")
	}
	x.view = v
	if rt.namespace != "" {
		u, ok := v.byNS[rt.namespace]
		if !ok {
			return newError(http.StatusNotFound, codeInvalidRequest, "instance has no upstream "+rt.namespace)
		}
		x.only = u
	}
	return nil
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
func (h *Handler) authFailure(r *http.Request, x *exchange, reason string) {
	if !h.failureLines.Allow() {
		h.failuresLeftOut.Add(1)
		return
	}
	h.log.Warn("authentication failed", "reason", reason, "keyPrefix", x.keyPrefix,
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

// requestID is the trace ID of the request when it has one, else random.
func requestID(r *http.Request) string {
	if id := logging.TraceID(r); id != "" {
		return id
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// logExchange writes the one log line of a request.
func (h *Handler) logExchange(r *http.Request, x *exchange) {
	took := h.opts.Now().Sub(x.start)
	attrs := []slog.Attr{
		slog.String("method", x.method),
		slog.String("status", x.status),
		slog.Int("httpStatus", x.httpStatus),
		slog.Int64("durationMs", took.Milliseconds()),
		slog.String("requestId", x.requestID),
		slog.Int("inputBytes", x.inBytes),
		slog.Int("outputBytes", x.outBytes),
		slog.String("keyCache", x.keyCache.String()),
	}
	if x.key != nil {
		attrs = append(attrs, slog.String("instance", x.key.InstanceID), slog.String("apiKeyId", x.key.ID))
	}
	if x.view != nil {
		attrs = append(attrs, slog.String("configCache", x.viewCache.String()))
	}
	if x.tool != "" {
		attrs = append(attrs, slog.String("tool", x.tool))
	}
	if x.upstream != "" {
		attrs = append(attrs, slog.String("upstream", x.upstream))
	}
	if x.version != "" {
		attrs = append(attrs, slog.String("protocolVersion", x.version))
	}
	if x.status != "success" {
		attrs = append(attrs, slog.Int64("rpcCode", x.rpcCode), slog.String("error", x.errMessage))
	}
	attrs = append(attrs, logging.TraceAttrs(r, h.opts.ProjectID)...)
	level := slog.LevelInfo
	if x.httpStatus >= 500 {
		level = slog.LevelError
	}
	// The Handler directly, with no caller's PC: Logger.LogAttrs would
	// walk the stack for a source location the logger does not print.
	if ctx := r.Context(); h.log.Enabled(ctx, level) {
		rec := slog.NewRecord(time.Now(), level, "mcp request", 0)
		rec.AddAttrs(attrs...)
		h.log.Handler().Handle(ctx, rec)
	}
	h.record(r, x, took)
}

// record appends the request's entry to the request log. Requests
// without a valid key have no user or instance to charge them to: the
// structured log line (and, for refused keys, the warning) covers them.
func (h *Handler) record(r *http.Request, x *exchange, took time.Duration) {
	if h.opts.RequestLog == nil || x.key == nil || x.members > 0 {
		return
	}
	method := x.method
	if method == "" {
		method = "(none)" // the body was refused before a method was read
	}
	e := tenant.LogEntry{
		RequestID: x.requestID, UserID: x.key.UserID, OrganizationID: x.key.OrganizationID,
		InstanceID: x.key.InstanceID, APIKeyID: x.key.ID, Method: method, ToolName: x.tool,
		Transport: x.transport(), Status: x.status, DurationMs: took.Milliseconds(),
		InputBytes: int64(x.inBytes), OutputBytes: int64(x.outBytes), UserAgent: r.UserAgent(), CreatedAt: x.start,
	}
	if x.status != tenant.StatusSuccess {
		e.ErrorCode, e.ErrorMessage = strconv.FormatInt(x.rpcCode, 10), x.errMessage
	}
	h.opts.RequestLog.Append(e)
}

// transport is the transport of the upstream the request went to; "" for
// a request answered from several upstreams or none.
func (x *exchange) transport() string {
	if x.upstream != "" && x.view != nil {
		if u := x.view.byNS[x.upstream]; u != nil {
			return string(u.up.Transport)
		}
	}
	if x.only != nil {
		return string(x.only.up.Transport)
	}
	return ""
}
