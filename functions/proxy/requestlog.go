package proxy

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// outcome is what happened to one HTTP request, as the front returns it:
// the one log line and the request log are written from it.
type outcome struct {
	start     time.Time
	requestID string
	version   string // the MCP-Protocol-Version header
	// Set as far as authentication went: a key found, its instance.
	key       *tenant.Key
	grant     *tenant.Grant // of an access token; key is then its Key
	view      *view
	only      *upstreamView
	keyCache  configcache.Outcome
	viewCache configcache.Outcome
	// err is the failure of the request as a whole, before or instead of
	// its messages.
	err        *rpcError
	httpStatus int
	inBytes    int
	outBytes   int
	// messages are the requests and notifications of the body, each
	// logged as a request of its own when the body is a batch.
	messages []message
	one      [1]message // messages' room for the usual single message
	batch    bool
	// abort: the response is to be broken off: its first bytes were
	// sent, and what follows them cannot be a whole answer.
	abort bool
	// stream is the request's event stream, nil when it has none.
	stream *eventStream
}

// message is what happened to one JSON-RPC message of a request.
type message struct {
	start    time.Time
	took     time.Duration // set for the members of a batch
	method   string        // "" when the message had none, or did not decode
	tool     string        // of a tools/call
	upstream string        // the namespace of the upstream that answered
	err      *rpcError
	inBytes  int
	outBytes int
}

// status is how a message (or request) ended, as the request log says it.
func status(e *rpcError) string {
	switch {
	case e == nil:
		return tenant.StatusSuccess
	case e.timeout:
		return "timeout"
	case e.rateLimited:
		return tenant.StatusRateLimited
	case e.quotaExceeded:
		return tenant.StatusQuotaExceeded
	}
	return "error"
}

// logged writes the log line of each request and its request log entries.
func (h *Handler) logged(next frontHandler) frontHandler {
	return func(w http.ResponseWriter, r *http.Request) *outcome {
		o := next(w, r)
		h.logLine(r, o)
		h.record(r, o)
		return o
	}
}

// summary is the message the log line of a request speaks of: its only
// message, a batch as a whole, or nothing.
func (o *outcome) summary() message {
	m := message{err: o.err}
	switch {
	case o.batch:
		m.method = "(batch)"
	case len(o.messages) == 1 && o.err == nil:
		m = o.messages[0]
	}
	return m
}

// logLine writes the one log line of a request.
func (h *Handler) logLine(r *http.Request, o *outcome) {
	took := h.opts.Now().Sub(o.start)
	m := o.summary()
	// Room for every attribute: the record copies them, so this array
	// stays on the stack.
	var room [18]slog.Attr
	attrs := append(room[:0],
		slog.String("method", m.method),
		slog.String("status", status(m.err)),
		slog.Int("httpStatus", o.httpStatus),
		slog.Int64("durationMs", took.Milliseconds()),
		slog.String("requestId", o.requestID),
		slog.Int("inputBytes", o.inBytes),
		slog.Int("outputBytes", o.outBytes),
		slog.String("keyCache", o.keyCache.String()),
	)
	switch {
	case o.grant != nil:
		attrs = append(attrs, slog.String("instance", o.key.InstanceID), slog.String("grantId", o.grant.ID))
	case o.key != nil:
		attrs = append(attrs, slog.String("instance", o.key.InstanceID), slog.String("apiKeyId", o.key.ID))
	}
	if o.view != nil {
		attrs = append(attrs, slog.String("configCache", o.viewCache.String()))
	}
	if m.tool != "" {
		attrs = append(attrs, slog.String("tool", m.tool))
	}
	if m.upstream != "" {
		attrs = append(attrs, slog.String("upstream", m.upstream))
	}
	if o.version != "" {
		attrs = append(attrs, slog.String("protocolVersion", o.version))
	}
	if m.err != nil {
		attrs = append(attrs, slog.Int64("rpcCode", m.err.code), slog.String("error", m.err.message))
	}
	attrs = append(attrs, logging.TraceAttrs(r, h.opts.ProjectID)...)
	level := slog.LevelInfo
	if o.httpStatus >= 500 {
		level = slog.LevelError
	}
	logging.LogAttrs(r.Context(), h.log, level, "mcp request", attrs)
}

// record appends the request's entries to the request log: one for the
// request, or one per message of a batch that named a method. Requests
// without a valid key have no user or instance to charge them to: the
// structured log line (and, for refused keys, the warning) covers them.
func (h *Handler) record(r *http.Request, o *outcome) {
	if h.opts.RequestLog == nil || o.key == nil {
		return
	}
	if !o.batch {
		m := o.summary()
		m.inBytes, m.outBytes, m.took = o.inBytes, o.outBytes, h.opts.Now().Sub(o.start)
		m.start = o.start
		h.append(r, o, m)
		return
	}
	for _, m := range o.messages {
		if m.method != "" {
			h.append(r, o, m)
		}
	}
}

func (h *Handler) append(r *http.Request, o *outcome, m message) {
	method := m.method
	if method == "" {
		method = "(none)" // the body was refused before a method was read
	}
	e := tenant.LogEntry{
		RequestID: o.requestID, UserID: o.key.UserID, OrganizationID: o.key.OrganizationID,
		InstanceID: o.key.InstanceID, APIKeyID: o.key.ID, Method: method, ToolName: m.tool,
		Transport: o.transport(m.upstream), Status: status(m.err), DurationMs: m.took.Milliseconds(),
		InputBytes: int64(m.inBytes), OutputBytes: int64(m.outBytes), UserAgent: r.UserAgent(), CreatedAt: m.start,
	}
	if m.err != nil {
		e.ErrorCode, e.ErrorMessage = strconv.FormatInt(m.err.code, 10), m.err.message
	}
	if o.grant != nil {
		e.APIKeyID, e.GrantID = o.grant.APIKeyID, o.grant.ID
	}
	h.opts.RequestLog.Append(e)
}

// transport is the transport of the upstream a message went to; "" for a
// message answered from several upstreams or none.
func (o *outcome) transport(ns string) string {
	if ns != "" && o.view != nil {
		if u := o.view.byNS[ns]; u != nil {
			return string(u.up.Transport)
		}
	}
	if o.only != nil {
		return string(o.only.up.Transport)
	}
	return ""
}
