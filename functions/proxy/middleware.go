package proxy

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/logging"
)

// The middleware of the HTTP front, outermost first. Those of methods are
// in protocol.go, with the epochs that use them. A panic in serve is
// recovered there (recoverServe).
func (h *Handler) frontMiddleware() []frontMiddleware {
	return []frontMiddleware{h.counted, h.draining, h.housekeeping, h.logged}
}

// chainFront wraps serve in the front's middleware.
func (h *Handler) chainFront() frontHandler {
	next := h.serve
	mw := h.frontMiddleware()
	for i := len(mw) - 1; i >= 0; i-- {
		next = mw[i](next)
	}
	return next
}

// counted counts the requests being served, which Shutdown waits for.
// The last of them to end writes the log lines that wait to be written
// with others (logging.NewBatched): after it the process may idle, with
// its CPU taken away, until the next request.
func (h *Handler) counted(next frontHandler) frontHandler {
	return func(w http.ResponseWriter, r *http.Request) *outcome {
		h.inflight.Add(1)
		defer func() {
			if h.inflight.Add(-1) == 0 {
				logging.Flush(h.log)
			}
		}()
		return next(w, r)
	}
}

// draining refuses new requests once Shutdown began.
func (h *Handler) draining(next frontHandler) frontHandler {
	return func(w http.ResponseWriter, r *http.Request) *outcome {
		if !h.drain.Load() {
			return next(w, r)
		}
		e := newError(http.StatusServiceUnavailable, codeInternalError, "the proxy is shutting down; retry")
		e.header = http.Header{"Retry-After": {"1"}}
		writeError(w, jsonrpc.ID{}, e)
		return &outcome{err: e, httpStatus: e.status}
	}
}

// housekeeping writes a due batch of the request log and the process
// figures, and starts a due read of the change feed, while a request
// holds the CPU, which Cloud Functions takes away between requests.
func (h *Handler) housekeeping(next frontHandler) frontHandler {
	return func(w http.ResponseWriter, r *http.Request) *outcome {
		if h.opts.RequestLog != nil {
			h.opts.RequestLog.Kick()
		}
		h.maybeLogFigures()
		h.maybePollFeed()
		return next(w, r)
	}
}

// recoverServe answers 500 to a request whose handling panicked, and
// logs the panic; the process serves on. It runs deferred in serve,
// which owns o: the log line and the request log entry keep what o
// holds (the key and instance it is charged to).
func (h *Handler) recoverServe(w http.ResponseWriter, o *outcome) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p)
	}
	h.log.Error("panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "requestId", o.requestID)
	o.err = newError(http.StatusInternalServerError, codeInternalError, "internal error")
	if o.stream != nil && o.stream.abandon() {
		// Events were sent: the response can only be broken off, with
		// no late notification written after it.
		o.abort = true
	}
	if o.abort {
		return // part of an answer was sent: ServeHTTP breaks it off
	}
	o.httpStatus = o.err.status
	o.outBytes = writeError(w, jsonrpc.ID{}, o.err)
}

// recovered answers -32603 to a request whose method panicked, and logs
// the panic; the other messages of the request, and the process, go on.
func (h *Handler) recovered() middleware {
	return func(next methodHandler) methodHandler {
		return func(ctx context.Context, req *request) (res *result, e *rpcError) {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					h.log.Error("panic in method", "method", req.method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()), "requestId", req.requestID)
					res, e = nil, newError(http.StatusInternalServerError, codeInternalError, "internal error")
				}
			}()
			return next(ctx, req)
		}
	}
}
