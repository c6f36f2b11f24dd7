package proxy

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"mcpproxy.dev/mcpproxy/shared/rendezvous"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// An upstream's request to the client during a tools/call (elicitation,
// sampling, roots) reaches a 2025-era client on the call's event stream,
// under an ID of the proxy's; the client's answer comes back as a POST of
// its own, to whichever instance the platform picks. The ID says where the
// answer goes (a rendezvous document in Firestore the calling instance
// waits on) and for whom: sealed with AES-256-GCM under a key of the
// proxy's, holding the API key's ID and an expiry, bound to the instance,
// so that no client can make one up, answer another tenant's request, or
// answer after the call's deadline. A client gets such requests only for
// the capabilities it declared at initialize, which the proxy, keeping no
// session, hands back to it sealed as its Mcp-Session-Id.
//
// A call without such a request costs nothing of this: no Firestore
// operation, no sealing; the session ID is opened only when an upstream
// asks.

// asks relays upstream requests to clients; nil when the proxy has no
// rendezvous (Options.Rendezvous).
type asks struct {
	aead  cipher.AEAD
	store *rendezvous.Store
	now   func() time.Time
	log   *slog.Logger
	// maxWait bounds how long a relayed request waits for its answer,
	// within the call's deadline.
	maxWait time.Duration
}

func newAsks(key []byte, store *rendezvous.Store, now func() time.Time, log *slog.Logger) (*asks, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &asks{aead: aead, store: store, now: now, log: log, maxWait: 10 * time.Minute}, nil
}

// Prefixes of the proxy's sealed values. The additional data of each seal
// names its use, so a session ID never opens as a request ID.
const (
	sessionPrefix = "mcpp1."
	askPrefix     = "mcp-proxy-ask."
)

// seal encrypts plain for use, as URL-safe base64 after prefix.
func (a *asks) seal(prefix, use string, plain []byte) string {
	nonce := make([]byte, a.aead.NonceSize(), a.aead.NonceSize()+len(plain)+a.aead.Overhead())
	rand.Read(nonce)
	return prefix + base64.RawURLEncoding.EncodeToString(a.aead.Seal(nonce, nonce, plain, []byte(use)))
}

// open is seal's inverse; nil for anything it did not seal for use.
func (a *asks) open(prefix, use, s string) []byte {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) > 1024 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) < a.aead.NonceSize()+a.aead.Overhead() {
		return nil
	}
	plain, err := a.aead.Open(nil, b[:a.aead.NonceSize()], b[a.aead.NonceSize():], []byte(use))
	if err != nil {
		return nil
	}
	return plain
}

// clientCaps are the capabilities of a 2025-era client the proxy relays
// requests for, as bits.
type clientCaps byte

const (
	capElicitForm clientCaps = 1 << iota
	capElicitURL
	capSampling
	capRoots
)

// declaredCaps reads the capabilities of initialize's params.
func declaredCaps(params json.RawMessage) clientCaps {
	var p struct {
		Capabilities struct {
			Elicitation *struct {
				Form json.RawMessage `json:"form"`
				URL  json.RawMessage `json:"url"`
			} `json:"elicitation"`
			Sampling json.RawMessage `json:"sampling"`
			Roots    json.RawMessage `json:"roots"`
		} `json:"capabilities"`
	}
	if wire.Unmarshal(params, &p) != nil {
		return 0
	}
	var c clientCaps
	object := func(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '{' }
	if e := p.Capabilities.Elicitation; e != nil {
		// {} is form elicitation, as before modes existed.
		if object(e.Form) || !object(e.URL) {
			c |= capElicitForm
		}
		if object(e.URL) {
			c |= capElicitURL
		}
	}
	if object(p.Capabilities.Sampling) {
		c |= capSampling
	}
	if object(p.Capabilities.Roots) {
		c |= capRoots
	}
	return c
}

// sessionID is the Mcp-Session-Id a client with caps is given: the
// capabilities and the API key's ID, sealed. Nothing of it is kept.
func (a *asks) sessionID(keyID string, caps clientCaps) string {
	return a.seal(sessionPrefix, "session", append([]byte{byte(caps)}, keyID...))
}

// sessionCaps are the capabilities the caller's Mcp-Session-Id declares
// for its API key; none for a missing, forged or other key's ID.
func (a *asks) sessionCaps(c *caller) clientCaps {
	plain := a.open(sessionPrefix, "session", c.header.Get("Mcp-Session-Id"))
	if len(plain) < 1 || string(plain[1:]) != c.key.ID {
		return 0
	}
	return clientCaps(plain[0])
}

// allows reports whether a client with caps takes method with params.
func (c clientCaps) allows(method string, params json.RawMessage) bool {
	switch method {
	case "sampling/createMessage":
		return c&capSampling != 0
	case "roots/list":
		return c&capRoots != 0
	case "elicitation/create":
		var p struct {
			Mode string `json:"mode"`
		}
		wire.Unmarshal(params, &p)
		if p.Mode == "url" {
			return c&capElicitURL != 0
		}
		return c&capElicitForm != 0
	}
	return false
}

// askID is the sealed ID of a relayed request: the rendezvous document's
// name, the expiry, the API key's ID; bound to the instance.
type askID struct {
	doc     [16]byte
	expires time.Time
	keyID   string
}

func (a *asks) sealID(id askID, instanceID string) string {
	plain := make([]byte, 0, 24+len(id.keyID))
	plain = append(plain, id.doc[:]...)
	plain = binary.BigEndian.AppendUint64(plain, uint64(id.expires.UnixMilli()))
	plain = append(plain, id.keyID...)
	return a.seal(askPrefix, "ask "+instanceID, plain)
}

func (a *asks) openID(s, instanceID string) (askID, bool) {
	plain := a.open(askPrefix, "ask "+instanceID, s)
	if len(plain) < 24 {
		return askID{}, false
	}
	var id askID
	copy(id.doc[:], plain)
	id.expires = time.UnixMilli(int64(binary.BigEndian.Uint64(plain[16:24])))
	id.keyID = string(plain[24:])
	return id, true
}

// Ask relays an upstream's request of the call req to its client and
// waits for the answer (upstream.Asker). callTool sets it only for a
// 2025-era client whose answer can stream and a proxy with a rendezvous.
func (req *request) Ask(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	return req.asks.relay(ctx, req, method, params)
}

func (a *asks) relay(ctx context.Context, req *request, method string, params json.RawMessage) (json.RawMessage, error) {
	if !a.sessionCaps(req.caller).allows(method, params) {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound,
			Message: "the client did not declare the capability " + method + " needs; mcp-proxy does not relay it"}
	}
	id := askID{expires: a.now().Add(a.maxWait), keyID: req.key.ID}
	if d, ok := ctx.Deadline(); ok && d.Before(id.expires) {
		id.expires = d
	}
	rand.Read(id.doc[:])
	msgID, err := jsonrpc.MakeID(a.sealID(id, req.key.InstanceID))
	if err != nil {
		return nil, err
	}
	msg, err := wire.Encode(&jsonrpc.Request{ID: msgID, Method: method, Params: params})
	if err != nil {
		return nil, err
	}
	req.notify(msg)
	wctx, cancel := context.WithDeadline(ctx, id.expires)
	defer cancel()
	raw, err := a.store.Wait(wctx, hex.EncodeToString(id.doc[:]), id.keyID)
	if err != nil {
		if ctx.Err() == nil {
			a.log.WarnContext(ctx, "relayed request not answered", "method", method, "instance", req.key.InstanceID,
				"requestId", req.requestID, "error", err.Error())
		}
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the client did not answer " + method + " in time"}
	}
	var answer struct {
		Result json.RawMessage `json:"result"`
		Error  *jsonrpc.Error  `json:"error"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, err
	}
	if answer.Error != nil {
		return nil, answer.Error
	}
	return answer.Result, nil
}

// deliver takes a client's answer to a relayed request to the instance
// that waits for it. A response whose ID is not one of the proxy's
// (false) is dropped, as the proxy always did.
func (a *asks) deliver(ctx context.Context, c *caller, resp *jsonrpc.Response) (bool, *rpcError) {
	s, _ := resp.ID.Raw().(string)
	if !strings.HasPrefix(s, askPrefix) {
		return false, nil
	}
	id, ok := a.openID(s, c.key.InstanceID)
	if !ok || id.keyID != c.key.ID || !a.now().Before(id.expires) {
		// One answer for every case: a forger learns nothing of which
		// check failed.
		a.log.WarnContext(ctx, "answer to a relayed request refused", "instance", c.key.InstanceID,
			"keyPrefix", c.key.Prefix, "requestId", c.requestID)
		return true, newError(http.StatusBadRequest, codeInvalidRequest, "no relayed request of this client waits for this answer")
	}
	var answer []byte
	var err error
	if resp.Error != nil {
		var jerr *jsonrpc.Error
		if !errors.As(resp.Error, &jerr) {
			jerr = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: resp.Error.Error()}
		}
		answer, err = json.Marshal(struct {
			Error *jsonrpc.Error `json:"error"`
		}{jerr})
	} else {
		answer, err = json.Marshal(struct {
			Result json.RawMessage `json:"result"`
		}{bytes.TrimSpace(resp.Result)})
	}
	if err != nil {
		return true, newError(http.StatusBadRequest, codeInvalidRequest, "the answer is not valid JSON")
	}
	switch err := a.store.Answer(ctx, hex.EncodeToString(id.doc[:]), id.keyID, answer, id.expires); {
	case errors.Is(err, rendezvous.ErrAnswered):
		return true, newError(http.StatusBadRequest, codeInvalidRequest, "this request was answered already")
	case errors.Is(err, rendezvous.ErrTooLarge):
		return true, newError(http.StatusRequestEntityTooLarge, codeInvalidRequest, "the answer is larger than the proxy relays")
	case err != nil:
		a.log.ErrorContext(ctx, "answer to a relayed request not stored", "instance", c.key.InstanceID,
			"requestId", c.requestID, "error", err.Error())
		return true, newError(http.StatusServiceUnavailable, codeInternalError, "cannot pass the answer on now; retry")
	}
	return true, nil
}
