package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// outcome is what came back for one HTTP POST.
type outcome uint8

const (
	fromProxy outcome = iota // an HTTP response the proxy produced
	fromFront                // the front's own 502: no proxy answered
	noAnswer                 // a transport error: nothing came back
)

// attempt is one HTTP POST a client sent, named by its trace ID.
type attempt struct {
	trace  [16]byte
	start  int64 // unix nanoseconds
	status int16
	result outcome
	// unlogged: the proxy's answer says it never resolved the key (401,
	// or a 503 from a process shutting down or unable to check the key),
	// so by design no log entry exists.
	unlogged bool
}

// op is one operation of a client: a tools/call, a tools/list or a
// (re)connection, and the error the client saw, "" for none.
type op struct {
	start, end int64 // unix nanoseconds
	err        string
}

// recorder is a client's RoundTripper: it gives every POST a W3C
// traceparent with a fresh trace ID (the proxy logs it as the request
// ID), adds the key, and records what came back.
type recorder struct {
	base http.RoundTripper
	key  string

	mu       sync.Mutex
	attempts []attempt
	last     attempt // the latest POST, to name an operation's error
	lastMsg  string  // the proxy's error message of the latest POST
}

func (rc *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+rc.key)
	if r.Method != http.MethodPost {
		return rc.base.RoundTrip(r)
	}
	var a attempt
	var span [8]byte
	rand.Read(a.trace[:])
	rand.Read(span[:])
	r.Header.Set("traceparent", "00-"+hex.EncodeToString(a.trace[:])+"-"+hex.EncodeToString(span[:])+"-01")
	a.start = time.Now().UnixNano()
	resp, err := rc.base.RoundTrip(r)
	msg := ""
	switch {
	case err != nil:
		a.result = noAnswer
	case resp.Header.Get(frontHeader) != "":
		a.result = fromFront
		a.status = int16(resp.StatusCode)
	default:
		a.result = fromProxy
		a.status = int16(resp.StatusCode)
		if resp.StatusCode >= 300 {
			// Error answers are small JSON-RPC errors: read the message
			// and hand the body on unread.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			json.Unmarshal(body, &m)
			msg = m.Error.Message
			a.unlogged = unloggedByDesign(resp.StatusCode, msg)
		}
	}
	rc.mu.Lock()
	rc.attempts = append(rc.attempts, a)
	rc.last, rc.lastMsg = a, msg
	rc.mu.Unlock()
	return resp, err
}

// unloggedByDesign tells the proxy's answers that come before it has
// resolved the key: the proxy's record skips a request without a key, as
// there is no instance or user to charge it to.
func unloggedByDesign(status int, msg string) bool {
	switch {
	case status == http.StatusUnauthorized:
		return true
	case status == http.StatusServiceUnavailable:
		return msg == "the proxy is shutting down; retry" || msg == "cannot check the API key now; retry later"
	}
	return false
}

// errKind names an operation's error for the report, from the error and
// the latest POST of the client.
func (rc *recorder) errKind(err error) string {
	rc.mu.Lock()
	last, msg := rc.last, rc.lastMsg
	rc.mu.Unlock()
	var jerr *jsonrpc.Error
	switch {
	case errors.Is(err, errToolResult):
		return "tool isError"
	case last.result == fromFront:
		return "front 502 (no proxy)"
	case last.result == noAnswer:
		return "no answer"
	case last.status >= 300:
		if msg != "" {
			return fmt.Sprintf("http %d: %s", last.status, msg)
		}
		return fmt.Sprintf("http %d", last.status)
	case errors.As(err, &jerr):
		return fmt.Sprintf("json-rpc %d: %s", jerr.Code, jerr.Message)
	}
	return "client: " + err.Error()
}

var errToolResult = errors.New("the tool answered isError")

// load is the well-behaved clients of a run, spread over the tenants'
// keys.
type load struct {
	url     string
	keys    []string
	clients []*client
	seq     atomic.Int64 // picks each operation's kind over all clients
	// progress counts the progress notifications the clients got: they
	// never ask for any, so each one was forged or misrouted.
	progress atomic.Int64
}

type client struct {
	tenant int // index in load.keys
	rec    *recorder
	ops    []op
}

// run drives the clients until ctx ends.
func (l *load) run(ctx context.Context, n int) {
	base := &http.Transport{MaxIdleConnsPerHost: n, MaxIdleConns: n, IdleConnTimeout: 90 * time.Second}
	defer base.CloseIdleConnections()
	l.clients = make([]*client, n)
	var wg sync.WaitGroup
	for i := range l.clients {
		c := &client{tenant: i % len(l.keys), rec: &recorder{base: base, key: l.keys[i%len(l.keys)]}}
		l.clients[i] = c
		wg.Go(func() { l.drive(ctx, c) })
	}
	wg.Wait()
}

// drive sends operations one after another; a session broken by a
// transport or HTTP error is replaced by a new one.
func (l *load) drive(ctx context.Context, c *client) {
	httpClient := &http.Client{Transport: c.rec}
	var s *mcp.ClientSession
	defer func() {
		if s != nil {
			s.Close()
		}
	}()
	for ctx.Err() == nil {
		start := time.Now()
		if s == nil {
			t := &mcp.StreamableClientTransport{Endpoint: l.url, HTTPClient: httpClient, MaxRetries: -1, DisableStandaloneSSE: true}
			mc := mcp.NewClient(&mcp.Implementation{Name: "mcpsoak", Version: "1"}, &mcp.ClientOptions{
				ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { l.progress.Add(1) },
			})
			var err error
			// 2025-11-25 as mcpload speaks it: from 2026-07-28 the go-sdk
			// client answers tools/list from its cache, which would
			// leave the proxy out of the lists.
			if s, err = mc.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"}); err != nil {
				s = nil
				if ctx.Err() != nil {
					return
				}
				c.ops = append(c.ops, op{start: start.UnixNano(), end: time.Now().UnixNano(), err: "connect: " + c.rec.errKind(err)})
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		var err error
		// Nine calls to one list.
		if l.seq.Add(1)%10 == 0 {
			_, err = s.ListTools(ctx, nil)
		} else {
			var res *mcp.CallToolResult
			res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "demo__echo", Arguments: map[string]any{"text": "soak"}})
			if err == nil && res.IsError {
				err = errToolResult
			}
		}
		if err != nil && ctx.Err() != nil {
			return // the run ended mid-request: not an error a user saw
		}
		o := op{start: start.UnixNano(), end: time.Now().UnixNano()}

		if err != nil {
			o.err = c.rec.errKind(err)
			var jerr *jsonrpc.Error
			if !errors.Is(err, errToolResult) && !errors.As(err, &jerr) {
				s.Close()
				s = nil
			}
		}
		c.ops = append(c.ops, o)
	}
}
