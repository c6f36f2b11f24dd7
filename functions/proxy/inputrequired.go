package proxy

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/chacha20poly1305"

	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// From 2026-07-28 an upstream that needs the client's input to answer a
// tools/call, prompts/get or resources/read answers with an
// input-required result: the requests it has for the client
// (inputRequests: elicitation, sampling, roots) and an opaque
// requestState. The client answers them and sends the request again, with
// a new id, its inputResponses and the requestState; any instance of the
// proxy may get it.
//
// The proxy relays the input requests only of a kind the client declared
// in that request's _meta, else answers -32021. The requestState the
// client gets is the proxy's: the upstream's own, with the upstream it
// belongs to, sealed with XChaCha20-Poly1305 under a key every instance
// derives from the deployment's encryption key, bound to the API key,
// the instance, the route, the method and the name, and expiring after
// Options.StateTTL. A state that was altered, that another key or
// another call presents, or that expired is refused with -32602.

// stateKeyInfo is the HKDF info of the sealing key (Options.StateKey).
const stateKeyInfo = "mcp-proxy 2026-07-28 requestState v1"

const (
	// statePrefix starts every requestState the proxy makes.
	statePrefix = "mcpp1."
	// maxStateBytes bounds a requestState a client sends; an upstream's
	// own is bounded to maxUpstreamState before it is sealed.
	maxStateBytes    = 64 << 10
	maxUpstreamState = 32 << 10
)

// StateKey is Options.StateKey as every instance derives it from the
// deployment's keyring (MCP_ENCRYPTION_KEY).
func StateKey(k *keyring.Keyring) ([]byte, error) { return k.Derive(stateKeyInfo) }

// newStateAEAD is the AEAD of requestStates and task IDs under key; a
// nil key is a random one of the process, which no other process can
// open. XChaCha20-Poly1305, not the AES-GCM of the keyring: one key
// seals a value per input-required result or task of every instance for
// as long as MCP_ENCRYPTION_KEY lasts, and its 192-bit random nonces do
// not repeat at that count, where GCM's 96-bit ones may after 2^32.
func newStateAEAD(key []byte) cipher.AEAD {
	if key == nil {
		key = make([]byte, chacha20poly1305.KeySize)
		rand.Read(key)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		panic("proxy: StateKey must be 32 bytes: " + err.Error())
	}
	return aead
}

// sealedState is what a requestState of the proxy's holds.
type sealedState struct {
	Upstream string `json:"u"`           // the upstream config that asked
	State    string `json:"s,omitempty"` // the upstream's requestState
	Expires  int64  `json:"e"`           // unix seconds
}

// stateBinding is the additional data a requestState is sealed with: who
// may present it, and for what.
func stateBinding(req *request, name string) []byte {
	route := ""
	if req.only != nil {
		route = req.only.ns
	}
	b := make([]byte, 0, 64+len(req.key.ID)+len(req.view.inst.ID)+len(route)+len(req.method)+len(name))
	for i, part := range []string{stateKeyInfo, req.key.ID, req.view.inst.ID, route, req.method, name} {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, part...)
	}
	return b
}

// sealState makes the requestState the client gets for upstream u's
// state (possibly "").
func (h *Handler) sealState(req *request, name string, u *upstreamView, state string) (string, *rpcError) {
	if len(state) > maxUpstreamState {
		return "", newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a requestState larger than the proxy relays").from(u)
	}
	plain, err := json.Marshal(sealedState{Upstream: u.up.ConfigID, State: state, Expires: h.now().Add(h.opts.StateTTL).Unix()})
	if err != nil {
		return "", newError(http.StatusOK, codeInternalError, "cannot seal the requestState")
	}
	nonce := make([]byte, h.states.NonceSize(), h.states.NonceSize()+len(plain)+h.states.Overhead())
	rand.Read(nonce)
	sealed := statePrefix + base64.RawURLEncoding.EncodeToString(h.states.Seal(nonce, nonce, plain, stateBinding(req, name)))
	if len(sealed) > maxStateBytes {
		// Escaped, sealed and encoded, the state grew past what the
		// proxy takes back: the client's retry could only be refused.
		return "", newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a requestState larger than the proxy relays").from(u)
	}
	return sealed, nil
}

// openState returns the upstream's own state inside a requestState the
// client sent back, once it is found to be the proxy's, unaltered, for
// this caller, this call and upstream u, and unexpired.
func (h *Handler) openState(req *request, name string, u *upstreamView, state string) (string, *rpcError) {
	refused := func(why string) (string, *rpcError) {
		return "", newError(http.StatusOK, codeInvalidParams, "invalid requestState: "+why)
	}
	enc, ok := strings.CutPrefix(state, statePrefix)
	if !ok || len(state) > maxStateBytes {
		return refused("not one this proxy issued")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(sealed) < h.states.NonceSize()+h.states.Overhead() {
		return refused("not one this proxy issued")
	}
	n := h.states.NonceSize()
	plain, err := h.states.Open(nil, sealed[:n], sealed[n:], stateBinding(req, name))
	if err != nil {
		return refused("altered, or issued for another API key, instance, route, method or name")
	}
	var s sealedState
	if err := json.Unmarshal(plain, &s); err != nil {
		return refused("not one this proxy issued")
	}
	if h.now().Unix() > s.Expires {
		return refused("expired; send the request again without inputResponses and requestState")
	}
	if s.Upstream != u.up.ConfigID {
		return refused("issued for another upstream than the one that serves " + name + " now")
	}
	return s.State, nil
}

func (h *Handler) now() time.Time {
	if h.opts.Now != nil {
		return h.opts.Now()
	}
	return time.Now()
}

// inputKinds are the client capabilities an upstream may ask input of,
// by the method of the input request.
var inputKinds = map[string]string{
	"elicitation/create":     "elicitation",
	"sampling/createMessage": "sampling",
	"roots/list":             "roots",
}

// declaredInputs is the part of a 2026-07-28 request's declared client
// capabilities that an upstream may act on through the proxy, as a JSON
// object to send on: elicitation, sampling and roots, which let it ask
// the client for input, and the tasks extension; nil when it declares
// none of them. Capabilities without any of those names are not decoded.
func declaredInputs(meta map[string]json.RawMessage) json.RawMessage {
	c := meta[mcp.MetaKeyClientCapabilities]
	if !bytes.Contains(c, []byte(`"elicitation"`)) && !bytes.Contains(c, []byte(`"sampling"`)) &&
		!bytes.Contains(c, []byte(`"roots"`)) && !bytes.Contains(c, []byte(`"`+tasksExtension+`"`)) {
		return nil
	}
	var caps map[string]json.RawMessage
	if wire.Unmarshal(c, &caps) != nil {
		return nil
	}
	out := map[string]json.RawMessage{}
	for _, kind := range inputKinds {
		if v := bytes.TrimSpace(caps[kind]); len(v) > 0 && v[0] == '{' {
			out[kind] = v
		}
	}
	if declaresTasks(caps) {
		out["extensions"] = json.RawMessage(`{"` + tasksExtension + `":{}}`)
	}
	if len(out) == 0 {
		return nil
	}
	raw, _ := json.Marshal(out)
	return raw
}

// inputAsk is what an input request asks of the client: its method,
// and the parts of its kind's capability it needs beyond the kind (an
// elicitation's mode; sampling's tools and context), which the client
// must have declared too.
type inputAsk struct {
	Method string `json:"method"`
	Params struct {
		Mode           string          `json:"mode"`
		Tools          json.RawMessage `json:"tools"`
		ToolChoice     json.RawMessage `json:"toolChoice"`
		IncludeContext string          `json:"includeContext"`
	} `json:"params"`
}

// needs is the sub-capabilities of its kind the input request needs:
// "form" or "url" for an elicitation (form when it names no mode), "tools"
// and "context" for a sampling request that gives tools or asks for
// context.
func (a *inputAsk) needs() []string {
	switch a.Method {
	case "elicitation/create":
		if a.Params.Mode == "" || a.Params.Mode == "form" {
			return []string{"form"}
		}
		return []string{a.Params.Mode}
	case "sampling/createMessage":
		var n []string
		if hasValue(a.Params.Tools) || hasValue(a.Params.ToolChoice) {
			n = append(n, "tools")
		}
		if c := a.Params.IncludeContext; c != "" && c != "none" {
			n = append(n, "context")
		}
		return n
	}
	return nil
}

func hasValue(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && string(v) != "null"
}

// declaredPart reports whether a declared capability (a JSON object)
// covers the sub-capability part. An elicitation capability without
// form nor url is the form mode's alone, as the spec has it.
func declaredPart(declared json.RawMessage, kind, part string) bool {
	var parts map[string]json.RawMessage
	if json.Unmarshal(declared, &parts) != nil {
		return false
	}
	if kind == "elicitation" && part == "form" && parts["form"] == nil && parts["url"] == nil {
		return true
	}
	v := bytes.TrimSpace(parts[part])
	return len(v) > 0 && v[0] == '{'
}

// missingInputs checks what the input requests ask (their kind, by
// method, and the sub-capabilities of it they need) against the client's
// declared capabilities: -32021 naming what it lacks, an upstream error
// for a kind the proxy does not know.
func missingInputs(req *request, u *upstreamView, asks []inputAsk) *rpcError {
	if !req.epoch.stateless && len(asks) == 0 {
		// Nothing to ask, yet a retry it cannot make (its requestState
		// does not reach the upstream).
		return newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" answered with an input-required result, which a client of this protocol version cannot take").from(u)
	}
	var declared map[string]json.RawMessage
	// A client of an older version declares its capabilities once, in
	// initialize, which the proxy does not keep: it declares none here.
	if req.epoch.stateless && req.decoded != nil {
		if c := declaredInputs(req.decoded.Meta); c != nil {
			json.Unmarshal(c, &declared)
		}
	}
	required := map[string]map[string]struct{}{}
	for i := range asks {
		kind, ok := inputKinds[asks[i].Method]
		if !ok {
			return newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" asked the client for input of a kind the proxy does not relay").from(u)
		}
		d, ok := declared[kind]
		for _, part := range asks[i].needs() {
			// An undeclared kind is named alone when {} would do.
			if ok && declaredPart(d, kind, part) || !ok && part == "form" {
				continue
			}
			if required[kind] == nil {
				required[kind] = map[string]struct{}{}
			}
			required[kind][part] = struct{}{}
		}
		if !ok && required[kind] == nil {
			required[kind] = map[string]struct{}{}
		}
	}
	if len(required) == 0 {
		return nil
	}
	kinds := make([]string, 0, len(required))
	for k, parts := range required {
		name := k
		if len(parts) > 0 {
			names := make([]string, 0, len(parts))
			for p := range parts {
				names = append(names, k+"."+p)
			}
			slices.Sort(names)
			name = strings.Join(names, ", ")
		}
		kinds = append(kinds, name)
	}
	slices.Sort(kinds)
	e := newError(http.StatusOK, mcp.CodeMissingRequiredClientCapabilities,
		"upstream "+u.ns+" needs input the client did not declare it can give: "+strings.Join(kinds, ", "))
	e.data = map[string]any{"requiredCapabilities": required}
	return e.from(u)
}

// callInput is what a 2026-07-28 tools/call gives its upstream for an
// input-required result: the client's input capabilities, and on a retry
// its inputResponses and the upstream's requestState out of the proxy's.
// nil when there is none of them, as for most calls.
func (h *Handler) callInput(req *request, u *upstreamView, p *requestParams) (*upstream.Input, *rpcError) {
	caps := declaredInputs(p.Meta)
	if caps == nil && len(p.InputResponses) == 0 && p.RequestState == "" {
		return nil, nil
	}
	in := &upstream.Input{Capabilities: caps}
	if r := bytes.TrimSpace(p.InputResponses); len(r) > 0 && string(r) != "null" {
		if r[0] != '{' {
			return nil, newError(http.StatusOK, codeInvalidParams, "invalid params: inputResponses must be an object")
		}
		in.InputResponses = r
	}
	if p.RequestState != "" {
		state, e := h.openState(req, p.Name, u, p.RequestState)
		if e != nil {
			return nil, e
		}
		in.RequestState = state
	}
	return in, nil
}

// relayInputRequired makes the client's answer of an upstream's
// input-required tools/call result: refused unless the client declared
// each kind of input asked, else with the requestState replaced by the
// proxy's sealed one.
func (h *Handler) relayInputRequired(req *request, u *upstreamView, name string, raw []byte) (*result, *rpcError) {
	var top map[string]json.RawMessage
	if err := wire.Unmarshal(raw, &top); err != nil {
		return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent an invalid input-required result").from(u)
	}
	var requests map[string]inputAsk
	if r := top["inputRequests"]; len(r) > 0 {
		if err := wire.Unmarshal(r, &requests); err != nil {
			return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent invalid inputRequests").from(u)
		}
	}
	if e := missingInputs(req, u, slices.Collect(maps.Values(requests))); e != nil {
		return nil, e
	}
	var state string
	if s := top["requestState"]; len(s) > 0 {
		if err := json.Unmarshal(s, &state); err != nil {
			return nil, newError(http.StatusOK, codeUpstream, "upstream "+u.ns+" sent a requestState that is not a string").from(u)
		}
	}
	sealed, e := h.sealState(req, name, u, state)
	if e != nil {
		return nil, e
	}
	top["requestState"], _ = json.Marshal(sealed)
	out, err := json.Marshal(top)
	if err != nil {
		return nil, newError(http.StatusOK, codeInternalError, "cannot encode the result")
	}
	return &result{value: json.RawMessage(out), upstream: u.ns}, nil
}

// prepareInput readies the params of a prompts/get or resources/read for
// an upstream that may answer with an input-required result: the
// client's input capabilities in _meta, and on a retry the upstream's
// own requestState out of the proxy's. Other params are left as they are.
func (h *Handler) prepareInput(req *request, u *upstreamView, params any) *rpcError {
	var state *string
	var responses *mcp.InputResponseMap
	switch p := params.(type) {
	case *mcp.GetPromptParams:
		state, responses = &p.RequestState, &p.InputResponses
	case *mcp.ReadResourceParams:
		state, responses = &p.RequestState, &p.InputResponses
	default:
		return nil
	}
	if !req.epoch.stateless {
		// Not of these versions: nothing the client makes up reaches
		// the upstream as a state the proxy did not seal.
		*state, *responses = "", nil
		return nil
	}
	if *state != "" {
		s, e := h.openState(req, clientName(req), u, *state)
		if e != nil {
			return e
		}
		*state = s
	}
	if req.decoded != nil {
		if caps := declaredInputs(req.decoded.Meta); caps != nil {
			p := params.(mcp.Params)
			meta := p.GetMeta()
			if meta == nil {
				meta = map[string]any{}
			}
			meta[mcp.MetaKeyClientCapabilities] = caps
			p.SetMeta(meta)
		}
	}
	return nil
}

// sealInputRequired checks and rewrites a prompts/get or resources/read
// result the SDK client decoded, when it is input-required: as
// relayInputRequired does for a tools/call.
func (h *Handler) sealInputRequired(req *request, u *upstreamView, res any) *rpcError {
	var requests mcp.InputRequestMap
	var state *string
	switch r := res.(type) {
	// A client may act on input requests whatever the resultType (the
	// go-sdk's does): they are checked wherever they are.
	case *mcp.GetPromptResult:
		if r == nil || !r.NeedsInput() && len(r.InputRequests) == 0 {
			return nil
		}
		requests, state = r.InputRequests, &r.RequestState
	case *mcp.ReadResourceResult:
		if r == nil || !r.NeedsInput() && len(r.InputRequests) == 0 {
			return nil
		}
		requests, state = r.InputRequests, &r.RequestState
	default:
		return nil
	}
	asks := make([]inputAsk, len(requests))
	i := 0
	for _, ir := range requests {
		a := &asks[i]
		i++
		switch p := ir.(type) {
		case *mcp.ElicitParams:
			a.Method, a.Params.Mode = "elicitation/create", p.Mode
		case *mcp.CreateMessageParams:
			a.Method, a.Params.IncludeContext = "sampling/createMessage", p.IncludeContext
		case *mcp.CreateMessageWithToolsParams:
			a.Method, a.Params.IncludeContext = "sampling/createMessage", p.IncludeContext
			if len(p.Tools) > 0 || p.ToolChoice != nil {
				a.Params.Tools = json.RawMessage(`[]`)
			}
		case *mcp.ListRootsParams:
			a.Method = "roots/list"
		}
	}
	if e := missingInputs(req, u, asks); e != nil {
		return e
	}
	sealed, e := h.sealState(req, clientName(req), u, *state)
	if e != nil {
		return e
	}
	*state = sealed
	return nil
}

// clientName is what a request names as the client sent it (the tool,
// the prompt, the resource's URI): what Mcp-Name repeats.
func clientName(req *request) string {
	if req.decoded == nil {
		return ""
	}
	if req.method == "resources/read" {
		return req.decoded.URI
	}
	return req.decoded.Name
}
