package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/wire"
)

// reply is the answer to one JSON-RPC request: a result or an error.
type reply struct {
	id  jsonrpc.ID
	res *result
	err *rpcError
	// typed: the result must carry resultType (2026-07-28).
	typed bool
	// status is the HTTP status of the reply when it answers a request
	// of one message.
	status int
}

// encodeReply encodes a reply as one JSON-RPC response; nil for none.
// An upstream's relayed result is read whole here: a batch holds each of
// its answers.
func (h *Handler) encodeReply(rep *reply) ([]byte, *rpcError) {
	if rep == nil {
		return nil, nil
	}
	if rep.err != nil {
		return encodeError(rep.id, rep.err), nil
	}
	raw, e := h.resultBytes(rep)
	if e != nil {
		return nil, e
	}
	out, err := wire.Encode(&jsonrpc.Response{ID: rep.id, Result: raw})
	if err != nil {
		return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
	}
	return out, nil
}

// resultBytes is a reply's result as JSON, with resultType when the
// client's protocol wants it.
func (h *Handler) resultBytes(rep *reply) (json.RawMessage, *rpcError) {
	var raw json.RawMessage
	typed := false
	if rel := rep.res.relayed; rel != nil {
		// A 2026-07-28 upstream's result has its resultType already.
		raw, typed = rel.Raw, rel.Typed
	} else {
		var err error
		if raw, err = json.Marshal(rep.res.value); err != nil {
			return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
		}
	}
	if rep.typed && !typed {
		raw = withResultType(raw)
	}
	return raw, nil
}

// respond writes the answer to a request of one message, or 202 Accepted
// when there is none (the message was a notification or a response). An
// answer that follows notifications ends their event stream.
func (h *Handler) respond(w http.ResponseWriter, stream *eventStream, rep *reply, o *outcome) {
	body, e := h.encodeReply(rep)
	if e != nil {
		rep = &reply{id: rep.id, err: e, status: e.status}
		body, _ = h.encodeReply(rep)
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

// writeJSON writes a JSON body with its length.
func writeJSON(w http.ResponseWriter, status int, body []byte) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	n, _ := w.Write(body)
	return n
}
