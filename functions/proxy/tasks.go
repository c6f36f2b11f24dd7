package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// The tasks extension (2026-07-28, io.modelcontextprotocol/tasks) lets an
// upstream answer a tools/call with a task (resultType "task") that the
// client follows with tasks/get, answers with tasks/update and stops with
// tasks/cancel, naming the task in params.taskId and the Mcp-Name header.
//
// The proxy passes the client's declaration of the extension on to the
// upstream and a task only to a client that declared it (else -32021).
// The task ID the client gets is the proxy's: the upstream's ID and the
// upstream config it belongs to, sealed as requestStates are
// (inputrequired.go), bound to the API key, the instance and the route,
// so that it is unique per upstream and tenant and no one can make one
// up or use another's; tasks/* go to the upstream inside it, with its own
// ID in params and Mcp-Name. A task's ID carries no expiry of the proxy's:
// the upstream keeps the task as long as it says (ttlMs).

// tasksExtension is the extension's identifier.
const tasksExtension = "io.modelcontextprotocol/tasks"

// taskPrefix starts every task ID the proxy makes.
const taskPrefix = "mcpt1."

// sealedTask is what a task ID of the proxy's holds.
type sealedTask struct {
	Upstream string `json:"u"` // the upstream config that made it
	Task     string `json:"t"` // the upstream's task ID
}

// declaresTasks reports whether decoded client capabilities declare the
// extension.
func declaresTasks(caps map[string]json.RawMessage) bool {
	var ext map[string]json.RawMessage
	if json.Unmarshal(caps["extensions"], &ext) != nil {
		return false
	}
	v := bytes.TrimSpace(ext[tasksExtension])
	return len(v) > 0 && v[0] == '{'
}

// clientDeclaresTasks reports whether a 2026-07-28 request declares the
// extension in its _meta.
func clientDeclaresTasks(req *request) bool {
	if !req.epoch.stateless || req.decoded == nil {
		return false
	}
	c := req.decoded.Meta[mcp.MetaKeyClientCapabilities]
	if !bytes.Contains(c, []byte(tasksExtension)) {
		return false
	}
	var caps map[string]json.RawMessage
	return wire.Unmarshal(c, &caps) == nil && declaresTasks(caps)
}

// tasksRequired is the -32021 of a client without the extension.
func tasksRequired(why string) *rpcError {
	e := newError(http.StatusOK, mcp.CodeMissingRequiredClientCapabilities, why)
	e.data = map[string]any{"requiredCapabilities": map[string]any{"extensions": map[string]any{tasksExtension: map[string]any{}}}}
	return e
}

func taskBinding(req *request) []byte {
	route := ""
	if req.only != nil {
		route = req.only.ns
	}
	return []byte(strings.Join([]string{"mcp-proxy task v1", req.key.ID, req.view.inst.ID, route}, "\x00"))
}

// sealTask makes the task ID the client gets for upstream u's task.
func (h *Handler) sealTask(req *request, u *upstreamView, task string) (string, *rpcError) {
	if task == "" || len(task) > maxUpstreamState {
		return "", newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a task without a valid taskId").from(u)
	}
	plain, err := json.Marshal(sealedTask{Upstream: u.up.ConfigID, Task: task})
	if err != nil {
		return "", newError(http.StatusOK, codeInternalError, "cannot seal the task ID")
	}
	nonce := make([]byte, h.states.NonceSize(), h.states.NonceSize()+len(plain)+h.states.Overhead())
	rand.Read(nonce)
	id := taskPrefix + base64.RawURLEncoding.EncodeToString(h.states.Seal(nonce, nonce, plain, taskBinding(req)))
	if len(id) > maxStateBytes {
		// One the proxy would not take back (openTask).
		return "", newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a task without a valid taskId").from(u)
	}
	return id, nil
}

// openTask returns the upstream and its own ID of a task ID the proxy
// made for this caller and route.
func (h *Handler) openTask(req *request, id string) (*upstreamView, string, *rpcError) {
	refused := newError(http.StatusOK, codeInvalidParams, "unknown taskId: not a task of this API key, instance and route")
	enc, ok := strings.CutPrefix(id, taskPrefix)
	if !ok || len(id) > maxStateBytes {
		return nil, "", refused
	}
	sealed, err := base64.RawURLEncoding.DecodeString(enc)
	n := h.states.NonceSize()
	if err != nil || len(sealed) < n+h.states.Overhead() {
		return nil, "", refused
	}
	plain, err := h.states.Open(nil, sealed[:n], sealed[n:], taskBinding(req))
	if err != nil {
		return nil, "", refused
	}
	var t sealedTask
	if json.Unmarshal(plain, &t) != nil {
		return nil, "", refused
	}
	for _, u := range req.targets() {
		if u.up.ConfigID == t.Upstream {
			return u, t.Task, nil
		}
	}
	return nil, "", newError(http.StatusOK, codeInvalidParams, "unknown taskId: its upstream no longer serves this route")
}

// relayTaskCreated makes the client's answer of an upstream's task
// result to its tools/call.
func (h *Handler) relayTaskCreated(req *request, u *upstreamView, raw []byte) (*result, *rpcError) {
	if !clientDeclaresTasks(req) {
		return nil, tasksRequired("upstream " + u.ns + " answered with a task, which the client did not declare it takes").from(u)
	}
	var top map[string]json.RawMessage
	if err := wire.Unmarshal(raw, &top); err != nil {
		return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent an invalid task").from(u)
	}
	if e := taskInputs(req, u, top); e != nil {
		return nil, e
	}
	var task string
	json.Unmarshal(top["taskId"], &task)
	id, e := h.sealTask(req, u, task)
	if e != nil {
		return nil, e
	}
	top["taskId"], _ = json.Marshal(id)
	// A task result carries no requestState; one the upstream sent would
	// reach the client unsealed.
	delete(top, "requestState")
	out, err := json.Marshal(top)
	if err != nil {
		return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
	}
	return &result{value: json.RawMessage(out), upstream: u.ns}, nil
}

// task answers tasks/get, tasks/update and tasks/cancel: passed to the
// upstream that made the task, with its own task ID, and its answer
// given the client's ID back; the input requests of a task that needs
// input reach the client only of the kinds it declared.
func (h *Handler) task(ctx context.Context, req *request) (*result, *rpcError) {
	p := req.decoded
	if p == nil {
		return nil, newError(http.StatusOK, codeInvalidParams, "invalid params: "+req.method+" needs params")
	}
	if !clientDeclaresTasks(req) {
		return nil, tasksRequired(req.method + " is of the tasks extension, which the client did not declare")
	}
	if p.TaskID == "" {
		return nil, newError(http.StatusOK, codeInvalidParams, "invalid params: taskId is required")
	}
	u, upstreamID, e := h.openTask(req, p.TaskID)
	if e != nil {
		return nil, e
	}
	var params map[string]json.RawMessage
	if err := wire.Unmarshal(req.params, &params); err != nil {
		return nil, newError(http.StatusOK, codeInvalidParams, "invalid params: not a JSON object")
	}
	delete(params, "_meta")
	// The proxy seals no requestState of a task's (it drops the
	// upstream's): one here is the client's own making.
	delete(params, "requestState")
	params["taskId"], _ = json.Marshal(upstreamID)
	retry := upstream.Once
	if req.method == "tasks/get" {
		retry = upstream.Idempotent
	}
	raw, err := h.pool.Request(ctx, u.up, retry, req.method, upstreamID, params, forwardedMeta(p.Meta), declaredInputs(p.Meta))
	if err != nil {
		return nil, h.upstreamFailure(ctx, req, u, err)
	}
	var top map[string]json.RawMessage
	if err := wire.Unmarshal(raw, &top); err != nil {
		return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent an invalid result").from(u)
	}
	if _, ok := top["taskId"]; ok {
		top["taskId"], _ = json.Marshal(p.TaskID)
	}
	if e := taskInputs(req, u, top); e != nil {
		return nil, e
	}
	delete(top, "requestState")
	out, err := json.Marshal(top)
	if err != nil {
		return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
	}
	return &result{value: json.RawMessage(out), upstream: u.ns}, nil
}

// taskInputs checks the input requests of a task (status input_required)
// in a task result or a tasks/* answer, as an input-required result's.
func taskInputs(req *request, u *upstreamView, top map[string]json.RawMessage) *rpcError {
	r := top["inputRequests"]
	if len(r) == 0 {
		return nil
	}
	var requests map[string]inputAsk
	if err := wire.Unmarshal(r, &requests); err != nil {
		return newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent invalid inputRequests").from(u)
	}
	if len(requests) == 0 {
		return nil
	}
	return missingInputs(req, u, slices.Collect(maps.Values(requests)))
}
