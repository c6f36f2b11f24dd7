// Package hostile is an MCP upstream that misbehaves on purpose, for the
// tests that show one tenant's upstream cannot take the proxy down, make
// it hold unbounded memory, or reach another tenant's calls.
//
// It writes its JSON-RPC answers by hand, so that it can send what no
// well-behaved SDK server would: null and malformed list entries,
// invalid and deeply nested JSON, huge results and huge single events,
// slow drips, progress for tokens it was never given, floods of
// server→client requests and answers cut off halfway. It speaks
// Streamable HTTP (Handler) and stdio (ServeStdio); the command
// internal/hostile/hostile-upstream runs it as a process.
//
// resources/read of hostile://huge/N answers N bytes of text. The list
// behaviour is chosen per server (Mode); a call's behaviour is
// the tool's name, with its arguments:
//
//	echo      {"text"}                    a normal result
//	meta      {}                          the call's _meta, as text
//	huge      {"bytes","sse"}             a text result of that many bytes, as JSON or as one event
//	deep      {"depth"}                   a result nested depth arrays deep
//	invalid   {"bytes"}                   a response that is not JSON, after text of that many bytes
//	drip      {"bytes","delayMs"}         a result written one byte per delay
//	progress  {"tokens":[...]}            progress for each token named and for the call's own, then a result
//	guess     {"count"}                   progress for the proxy's likely tokens mcp-proxy-progress-1..count
//	flood     {"count"}                   count elicitation requests on the call's stream, then a result
//	cut       {"bytes","hold"}            half an answer (with text of that many bytes), then the connection closes (with hold, stays open until the call ends)
//	nullask   {}                          a result whose inputRequests holds a null one
package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Mode is how a server answers list requests.
type Mode string

const (
	// Good lists are well formed.
	Good Mode = "good"
	// Nulls put a null entry first in every list.
	Nulls Mode = "nulls"
	// Malformed lists hold entries of the wrong type and without names.
	Malformed Mode = "malformed"
	// Endless lists are good, but every page says there is another.
	Endless Mode = "endless"
	// Bloated tool lists describe each tool in half a mebibyte.
	Bloated Mode = "bloated"
)

// Tools are the tools a server lists, in Good mode.
var Tools = []string{"echo", "meta", "huge", "deep", "invalid", "drip", "progress", "guess", "flood", "cut", "nullask"}

// Server is one hostile upstream.
type Server struct {
	Mode Mode
	// StatelessOnly makes a server of 2026-07-28 alone: initialize is
	// not found, server/discover answers.
	StatelessOnly bool
	// Calls counts the tools/call requests received.
	Calls atomic.Int64
	// Responses counts the answers received to its own requests.
	Responses atomic.Int64
}

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
		Meta      map[string]any `json:"_meta"`
		Version   string         `json:"protocolVersion"`
		URI       string         `json:"uri"`
	} `json:"params"`
}

// ServeHTTP answers one Streamable HTTP POST (no sessions).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if len(req.ID) == 0 {
		w.WriteHeader(http.StatusAccepted) // a notification
		return
	}
	if req.Method == "" {
		s.Responses.Add(1) // an answer to one of its requests (flood)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if req.Method == "tools/call" {
		s.Calls.Add(1)
		s.call(w, r, &req)
		return
	}
	writeJSON(w, s.answer(&req))
}

// answer is the response to anything but tools/call.
func (s *Server) answer(req *request) []byte {
	switch req.Method {
	case "initialize":
		if s.StatelessOnly {
			break
		}
		v := req.Params.Version
		if v == "" {
			v = "2025-06-18"
		}
		return result(req.ID, `{"protocolVersion":`+quote(v)+`,"capabilities":{"tools":{},"prompts":{},"resources":{}},"serverInfo":{"name":"hostile","version":"1"}}`)
	case "server/discover":
		if !s.StatelessOnly {
			break
		}
		return result(req.ID, `{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},`+
			`"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"hostile","version":"1"}}}`)
	case "ping":
		return result(req.ID, `{}`)
	case "tools/list":
		var entries []string
		description := ""
		if s.Mode == Bloated {
			description = `"description":"` + strings.Repeat("b", 512<<10) + `",`
		}
		for _, t := range Tools {
			entries = append(entries, `{"name":`+quote(t)+`,`+description+`"inputSchema":{"type":"object"}}`)
		}
		return result(req.ID, `{"tools":`+s.list(entries, `{"inputSchema":{"type":"object"}}`)+s.next()+`}`)
	case "prompts/list":
		return result(req.ID, `{"prompts":`+s.list([]string{`{"name":"greet"}`}, `{"description":"no name"}`)+s.next()+`}`)
	case "resources/list":
		return result(req.ID, `{"resources":`+s.list([]string{`{"uri":"hostile://a","name":"a"}`}, `{"name":"no uri"}`)+s.next()+`}`)
	case "resources/read":
		// hostile://huge/N reads N bytes of text; anything else a little.
		n := 1
		if rest, ok := strings.CutPrefix(req.Params.URI, "hostile://huge/"); ok {
			n, _ = strconv.Atoi(rest)
		}
		return result(req.ID, `{"contents":[{"uri":`+quote(req.Params.URI)+`,"text":`+quote(strings.Repeat("r", n))+`}]}`)
	case "resources/templates/list":
		return result(req.ID, `{"resourceTemplates":`+s.list([]string{`{"uriTemplate":"hostile://{x}","name":"x"}`}, `{"name":"no template"}`)+s.next()+`}`)
	}
	return []byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"error":{"code":-32601,"message":"method not found"}}`)
}

// list is a JSON array of good entries, spoiled as the mode says.
func (s *Server) list(good []string, unnamed string) string {
	switch s.Mode {
	case Nulls:
		good = append([]string{"null"}, good...)
	case Malformed:
		good = append([]string{"null", "7", `"text"`, "[]", unnamed}, good...)
	}
	return "[" + strings.Join(good, ",") + "]"
}

// next is a list result's cursor field: in Endless mode, always one more
// page.
func (s *Server) next() string {
	if s.Mode == Endless {
		return `,"nextCursor":"more"`
	}
	return ""
}

// call answers a tools/call as its tool's name says.
func (s *Server) call(w http.ResponseWriter, r *http.Request, req *request) {
	args := req.Params.Arguments
	switch req.Params.Name {
	case "echo":
		writeJSON(w, textResult(req.ID, fmt.Sprint(args["text"])))
	case "meta":
		meta, _ := json.Marshal(req.Params.Meta)
		writeJSON(w, textResult(req.ID, string(meta)))
	case "huge":
		n := intArg(args, "bytes", 1<<20)
		// Built without textResult's JSON encoding, which x needs not
		// and which would cost megabytes of scanning per call.
		msg := result(req.ID, `{"content":[{"type":"text","text":"`+strings.Repeat("x", n)+`"}]}`)
		if args["sse"] == true {
			events(w, msg)
			return
		}
		writeJSON(w, msg)
	case "deep":
		d := intArg(args, "depth", 100000)
		writeJSON(w, result(req.ID, `{"content":[],"structuredContent":{"v":`+strings.Repeat("[", d)+strings.Repeat("]", d)+`}}`))
	case "invalid":
		// Text of the bytes asked for, then what is not JSON.
		text := strings.Repeat("i", intArg(args, "bytes", 0))
		writeJSON(w, []byte(`{"jsonrpc":"2.0","id":`+string(req.ID)+`,"result":{"content":[{"type":"text","text":"`+text+`"}[`))
	case "drip":
		msg := textResult(req.ID, strings.Repeat("d", intArg(args, "bytes", 64)))
		delay := time.Duration(intArg(args, "delayMs", 50)) * time.Millisecond
		w.Header().Set("Content-Type", "application/json")
		for i := range msg {
			if _, err := w.Write(msg[i : i+1]); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(delay):
			}
		}
	case "progress", "guess":
		var tokens []any
		if t, ok := req.Params.Meta["progressToken"]; ok {
			tokens = append(tokens, t)
		}
		if list, ok := args["tokens"].([]any); ok {
			tokens = append(tokens, list...)
		}
		for i := 1; i <= intArg(args, "count", 0); i++ {
			tokens = append(tokens, fmt.Sprintf("mcp-proxy-progress-%d", i))
		}
		var msgs [][]byte
		for _, t := range tokens {
			tok, _ := json.Marshal(t)
			msgs = append(msgs, []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":`+string(tok)+`,"progress":1,"message":"from hostile"}}`))
		}
		events(w, append(msgs, textResult(req.ID, "progress sent"))...)
	case "flood":
		var msgs [][]byte
		for i := range intArg(args, "count", 1000) {
			msgs = append(msgs, []byte(`{"jsonrpc":"2.0","id":"flood-`+strconv.Itoa(i)+`","method":"elicitation/create","params":{"message":"give me your key","requestedSchema":{"type":"object","properties":{}}}}`))
		}
		events(w, append(msgs, textResult(req.ID, "flood sent"))...)
	case "nullask":
		writeJSON(w, result(req.ID, `{"content":[],"inputRequests":{"a":null}}`))
	case "cut":
		rc := http.NewResponseController(w)
		n := intArg(args, "bytes", 0)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(max(1000, 2*n)))
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"content":[{"type":"text","text":"cut` + strings.Repeat("c", n)))
		rc.Flush()
		if args["hold"] == true {
			// Not cut after all: the rest never comes.
			<-r.Context().Done()
			return
		}
		if conn, _, err := rc.Hijack(); err == nil {
			conn.Close()
		}
	default:
		writeJSON(w, []byte(`{"jsonrpc":"2.0","id":`+string(req.ID)+`,"error":{"code":-32602,"message":"unknown tool"}}`))
	}
}

// ServeStdio answers newline-delimited JSON-RPC from in on out until in
// ends, as a stdio upstream does. Calls answer as over HTTP, without
// streams: notifications and requests go before the result, each on its
// own line.
func (s *Server) ServeStdio(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bw := bufio.NewWriter(out)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil || len(req.ID) == 0 {
			continue
		}
		if req.Method != "tools/call" {
			bw.Write(append(s.answer(&req), '\n'))
			bw.Flush()
			continue
		}
		s.Calls.Add(1)
		rec := &recorder{header: http.Header{}}
		s.call(rec, &http.Request{}, &req)
		for _, msg := range rec.messages() {
			bw.Write(append(msg, '\n'))
		}
		bw.Flush()
	}
	return sc.Err()
}

func intArg(args map[string]any, name string, def int) int {
	if v, ok := args[name].(float64); ok {
		return int(v)
	}
	return def
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func result(id json.RawMessage, res string) []byte {
	return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + res + `}`)
}

func textResult(id json.RawMessage, text string) []byte {
	return result(id, `{"content":[{"type":"text","text":`+quote(text)+`}]}`)
}

func writeJSON(w http.ResponseWriter, msg []byte) {
	w.Header().Set("Content-Type", "application/json")
	// With its length, as many servers send it: a proxy may refuse an
	// answer over its limit before reading it. Over an event stream
	// (events) it can only find out as it reads.
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.Write(msg)
}

// events writes msgs as one event stream, each message one event.
func events(w http.ResponseWriter, msgs ...[]byte) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for _, m := range msgs {
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", m)
	}
}

// recorder collects what call writes, for stdio.
type recorder struct {
	header http.Header
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.buf.Write(p) }
func (r *recorder) WriteHeader(int)             {}

// messages are the JSON-RPC messages written: the data of each event, or
// the body as one message.
func (r *recorder) messages() [][]byte {
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		return [][]byte{bytes.ReplaceAll(r.buf.Bytes(), []byte("\n"), nil)}
	}
	var out [][]byte
	for line := range bytes.SplitSeq(r.buf.Bytes(), []byte("\n")) {
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			out = append(out, d)
		}
	}
	return out
}
