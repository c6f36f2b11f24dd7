package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// reply is the answer to one JSON-RPC request: a result or an error.
type reply struct {
	id  jsonrpc.ID
	req *request // nil when the message was not a request
	res *result
	err *rpcError
	// typed: the result must carry resultType (2026-07-28).
	typed bool
	// status is the HTTP status of the reply when it answers a request
	// of one message.
	status int
}

// encodeReply encodes a reply as one JSON-RPC response; nil for none.
// An upstream's relayed result is read whole here, within the request's
// budget: a batch holds each of its answers.
func (h *Handler) encodeReply(ctx context.Context, rep *reply) ([]byte, *rpcError) {
	if rep == nil {
		return nil, nil
	}
	if rep.err != nil {
		return encodeError(rep.id, rep.err), nil
	}
	defer rep.res.close()
	var raw json.RawMessage
	if rel := rep.res.relayed; rel != nil {
		var err error
		if raw, err = h.pool.ReadAll(ctx, rel); err != nil {
			return nil, h.relayFailure(ctx, rep, err)
		}
	} else {
		var err error
		if raw, err = json.Marshal(rep.res.value); err != nil {
			return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
		}
		if rep.typed {
			raw = withResultType(raw)
		}
	}
	out, err := wire.EncodeResult(rep.id, raw)
	if err != nil {
		return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
	}
	return out, nil
}

// relayFailure is the error answer of a relayed result that could not be
// read.
func (h *Handler) relayFailure(ctx context.Context, rep *reply, err error) *rpcError {
	u := rep.req.view.byNS[rep.res.upstream]
	if u == nil {
		return newError(http.StatusOK, codeUpstream, "the upstream's result could not be read")
	}
	return h.upstreamFailure(ctx, rep.req, u, err)
}

// respond writes the answer to a request of one message, or 202 Accepted
// when there is none (the message was a notification or a response). An
// answer that follows notifications ends their event stream. An
// upstream's result too large to have been read whole is relayed as it
// arrives (relay).
func (h *Handler) respond(ctx context.Context, w http.ResponseWriter, stream *eventStream, rep *reply, o *outcome) {
	if rep != nil && rep.err == nil && rep.res.relayed != nil && rep.res.relayed.Streaming() {
		h.relay(ctx, w, stream, rep, o)
		return
	}
	body, e := h.encodeReply(ctx, rep)
	if e != nil {
		o.messages[0].err = e
		rep = &reply{id: rep.id, err: e, status: rep.req.epoch.status(e)}
		body, _ = h.encodeReply(ctx, rep)
	}
	if rep != nil && rep.res != nil && rep.res.header != nil {
		for k, v := range rep.res.header {
			w.Header()[k] = v
		}
	}
	if stream != nil {
		if streamed, n := stream.finish(body); streamed {
			o.outBytes = n
			return
		}
	}
	if body == nil {
		w.WriteHeader(http.StatusAccepted)
		o.httpStatus = http.StatusAccepted
		return
	}
	o.httpStatus = rep.status
	o.outBytes = writeJSON(w, rep.status, body)
	// The client has its answer now, not after the request's log line
	// and log entry, which the middleware writes when this returns. With
	// the length set, flushing early keeps the response unchunked.
	http.NewResponseController(w).Flush()
}

// relay writes a response whose result is copied from the upstream's
// connection as it arrives: the proxy holds one buffer of it, whatever
// its size. When the result turns out bad after its first bytes were
// sent (invalid, too deep, too long, cut off), the response is abandoned:
// the client sees a broken response, never a whole one that is wrong.
func (h *Handler) relay(ctx context.Context, w http.ResponseWriter, stream *eventStream, rep *reply, o *outcome) {
	defer rep.res.close()
	head := append(append([]byte(`{"jsonrpc":"2.0","id":`), idJSON(rep.id)...), `,"result":`...)
	write := func(w io.Writer) (int64, error) {
		n, err := w.Write(head)
		if err != nil {
			return int64(n), err
		}
		m, err := rep.res.relayed.WriteTo(w)
		if err != nil {
			return int64(n) + m, err
		}
		k, err := w.Write([]byte("}"))
		return int64(n) + m + int64(k), err
	}
	var n int64
	var err error
	// Broken off unless it ends well, should it panic midway too.
	o.abort = true
	finished := false
	if stream != nil {
		finished, n, err = stream.finishWith(write)
	}
	if !finished {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		n, err = write(w)
	}
	o.httpStatus, o.outBytes, o.abort = http.StatusOK, int(n), err != nil
	if err != nil {
		e := newError(http.StatusOK, codeUpstream, "upstream "+rep.res.upstream+"'s result could not be relayed whole")
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// As for an answer read whole (failure): the request's
			// deadline, not the upstream's error.
			e = newError(http.StatusOK, codeUpstream, "upstream "+rep.res.upstream+" did not answer within the request deadline")
			e.timeout = true
		}
		e.upstream = rep.res.upstream
		o.messages[0].err = e
		h.log.Warn("relayed result abandoned", "upstream", rep.res.upstream, "instance", rep.req.view.inst.ID,
			"requestId", rep.req.requestID, "bytesSent", n, "error", err.Error())
	}
}

// idJSON is a JSON-RPC ID as JSON.
func idJSON(id jsonrpc.ID) []byte {
	b, err := json.Marshal(id.Raw())
	if err != nil {
		return []byte("null")
	}
	return b
}

// jsonContentType is the Content-Type of JSON answers: shared by all of
// them, as net/http copies header values when it writes them.
var jsonContentType = []string{"application/json"}

// writeJSON writes a JSON body with its length.
func writeJSON(w http.ResponseWriter, status int, body []byte) int {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	n, _ := w.Write(body)
	return n
}
