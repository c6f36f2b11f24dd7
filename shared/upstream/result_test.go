package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// startHostileProcess runs the hostile upstream as a process of its own
// over Streamable HTTP, so that what it allocates is not counted with
// the test's, and returns its URL.
func startHostileProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(hostile.Binary(t), "--addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("hostile upstream's URL: %v", err)
	}
	return strings.TrimSpace(url)
}

func hostileUpstream(url string) tenant.Upstream {
	return tenant.Upstream{ConfigID: "h1", Name: "Hostile", Transport: tenant.TransportStreamableHTTP, URL: url}
}

func args(v map[string]any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// relay is what the proxy does with a result: CallTool, WriteTo, Close.
func relay(ctx context.Context, p *upstream.Pool, up tenant.Upstream, c upstream.Call, w io.Writer) (int64, error) {
	res, err := p.CallTool(ctx, up, c)
	if err != nil {
		return 0, err
	}
	defer res.Close()
	return res.WriteTo(w)
}

// TestCallToolStreamsLargeResults: a 20 MiB result, as one JSON body and
// as one event, reaches the writer whole and compact, with its
// resultType added when asked, while the call allocates a small part of
// it; read whole (Call), it costs the result's size at least.
func TestCallToolStreamsLargeResults(t *testing.T) {
	const size = 20 << 20
	url := startHostileProcess(t)
	p := upstream.NewPool(upstream.PoolOptions{MaxMessageBytes: 32 << 20})
	t.Cleanup(p.Close)
	up := hostileUpstream(url)
	ctx := context.Background()
	text := strings.Repeat("x", size)
	want := sha256.Sum256([]byte(`{"content":[{"type":"text","text":"` + text + `"}],"resultType":"complete"}`))
	text = ""

	for _, sse := range []bool{false, true} {
		t.Run(fmt.Sprintf("sse=%v", sse), func(t *testing.T) {
			call := upstream.Call{Name: "huge", Arguments: args(map[string]any{"bytes": size, "sse": sse}), ResultType: true}
			// The first call fills the pools (buffers, connections).
			if _, err := relay(ctx, p, up, call, io.Discard); err != nil {
				t.Fatal(err)
			}
			const calls = 3
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range calls {
				h := &hashWriter{h: sha256.New()}
				n, err := relay(ctx, p, up, call, h)
				if err != nil {
					t.Fatal(err)
				}
				if got := [32]byte(h.h.Sum(nil)); got != want || n != h.n {
					t.Fatalf("wrote %d bytes (said %d), not the result with its resultType", h.n, n)
				}
			}
			runtime.ReadMemStats(&after)
			perCall := (after.TotalAlloc - before.TotalAlloc) / calls
			t.Logf("streamed %d MiB: %d KiB allocated per call, heap in use %d KiB before, %d KiB after",
				size>>20, perCall>>10, before.HeapInuse>>10, after.HeapInuse>>10)
			if perCall > 1<<20 {
				t.Errorf("a streamed call allocated %d KiB; want under 1 MiB for a %d MiB result", perCall>>10, size>>20)
			}

			// Read whole, as the proxy read results before.
			runtime.GC()
			runtime.ReadMemStats(&before)
			res, err := p.CallTool(ctx, up, call)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := p.ReadAll(ctx, res)
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			t.Logf("read whole: %d KiB allocated", (after.TotalAlloc-before.TotalAlloc)>>10)
			if len(whole) != size+len(`{"content":[{"type":"text","text":""}],"resultType":"complete"}`) {
				t.Errorf("ReadAll read %d bytes", len(whole))
			}
		})
	}
}

type hashWriter struct {
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

// startHostile runs the hostile upstream in the test's process, so that
// its counters can be read.
func startHostile(t *testing.T, mode hostile.Mode) (*hostile.Server, string) {
	s := &hostile.Server{Mode: mode}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// TestCallToolBadResults: a result that turns out bad after the call
// returned makes WriteTo fail; one that is read whole fails the call, as
// before.
func TestCallToolBadResults(t *testing.T) {
	_, url := startHostile(t, hostile.Good)
	p := upstream.NewPool(upstream.PoolOptions{MaxMessageBytes: 1 << 20})
	t.Cleanup(p.Close)
	up := hostileUpstream(url)
	var tooLarge *budget.TooLargeError
	for _, tt := range []struct {
		name     string
		tool     string
		args     map[string]any
		callErr  bool // CallTool fails; else WriteTo does
		want     func(error) bool
		wantText string
	}{
		{"deep, small", "deep", map[string]any{"depth": 2000}, true, nil, "without a JSON-RPC response"},
		// Too deep shows within the first bytes, which are checked
		// before CallTool returns.
		{"deep, large", "deep", map[string]any{"depth": 100000}, true, func(err error) bool { return errors.Is(err, wire.ErrTooDeep) }, ""},
		{"invalid, small", "invalid", nil, true, nil, "without a JSON-RPC response"},
		{"invalid, large", "invalid", map[string]any{"bytes": 200000}, false, func(err error) bool { var s *wire.SyntaxError; return errors.As(err, &s) }, ""},
		{"cut, small", "cut", nil, true, nil, "read the answer"},
		{"cut, large", "cut", map[string]any{"bytes": 200000}, false, nil, "unexpected EOF"},
		// A JSON answer says its length: refused before it is read.
		{"over the limit", "huge", map[string]any{"bytes": 2 << 20}, true, func(err error) bool { return errors.As(err, &tooLarge) }, ""},
		{"event over the limit", "huge", map[string]any{"bytes": 2 << 20, "sse": true}, false, func(err error) bool { return errors.As(err, &tooLarge) }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := p.CallTool(context.Background(), up, upstream.Call{Name: tt.tool, Arguments: args(tt.args)})
			if !tt.callErr {
				if err != nil {
					t.Fatalf("CallTool: %v; want the result, failing later", err)
				}
				defer res.Close()
				var out bytes.Buffer
				_, err = res.WriteTo(&out)
				if err == nil {
					t.Fatalf("WriteTo wrote %d bytes without an error", out.Len())
				}
				if bytes.IndexByte(out.Bytes(), '\n') >= 0 {
					t.Error("WriteTo wrote a newline")
				}
			} else if err == nil {
				res.Close()
				t.Fatal("CallTool returned a result")
			}
			if tt.want != nil && !tt.want(err) {
				t.Errorf("error %v", err)
			}
			if !strings.Contains(fmt.Sprint(err), tt.wantText) || !strings.Contains(err.Error(), "Hostile") {
				t.Errorf("error %q; want it to name the upstream and say %q", err, tt.wantText)
			}
		})
	}
}

// TestCallToolAsBefore: small results, error answers, progress and the
// upstream's requests behave as they did before results were streamed.
func TestCallToolAsBefore(t *testing.T) {
	srv, url := startHostile(t, hostile.Good)
	p := upstream.NewPool(upstream.PoolOptions{})
	t.Cleanup(p.Close)
	up := hostileUpstream(url)
	ctx := context.Background()

	var out bytes.Buffer
	if _, err := relay(ctx, p, up, upstream.Call{Name: "echo", Arguments: args(map[string]any{"text": "hi\nthere"})}, &out); err != nil {
		t.Fatal(err)
	}
	if want := `{"content":[{"type":"text","text":"hi\nthere"}]}`; out.String() != want {
		t.Errorf("echo: %s; want %s", out.String(), want)
	}
	out.Reset()
	if _, err := relay(ctx, p, up, upstream.Call{Name: "echo", Arguments: args(map[string]any{"text": "hi"}), ResultType: true}, &out); err != nil {
		t.Fatal(err)
	}
	if want := `{"content":[{"type":"text","text":"hi"}],"resultType":"complete"}`; out.String() != want {
		t.Errorf("echo with resultType: %s; want %s", out.String(), want)
	}

	_, err := p.CallTool(ctx, up, upstream.Call{Name: "nonesuch", Arguments: args(nil)})
	if jerr, ok := upstream.Answer(err); !ok || jerr.Code != -32602 {
		t.Errorf("unknown tool: %v; want the upstream's error answer", err)
	}

	var mu sync.Mutex
	var notes []string
	call := upstream.Call{Name: "progress", Arguments: args(map[string]any{"tokens": []any{"someone-else", 7}}),
		ProgressToken: json.RawMessage(`"mine"`), Notify: func(msg []byte) {
			mu.Lock()
			notes = append(notes, string(msg))
			mu.Unlock()
		}}
	out.Reset()
	if _, err := relay(ctx, p, up, call, &out); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], `"progressToken":"mine"`) {
		t.Errorf("notifications %q; want the progress for the call's own token only", notes)
	}
	if !strings.Contains(out.String(), "progress sent") {
		t.Errorf("progress result %s", out.String())
	}

	out.Reset()
	if _, err := relay(ctx, p, up, upstream.Call{Name: "flood", Arguments: args(map[string]any{"count": 40})}, &out); err != nil {
		t.Fatal(err)
	}
	if n := srv.Responses.Load(); n != 16 {
		t.Errorf("%d of 40 requests to the client refused; want 16", n)
	}
	if !strings.Contains(out.String(), "flood sent") {
		t.Errorf("flood result %s", out.String())
	}

	out.Reset()
	if _, err := relay(ctx, p, up, upstream.Call{Name: "drip", Arguments: args(map[string]any{"bytes": 20, "delayMs": 1})}, &out); err != nil {
		t.Fatal(err)
	}
	if want := `{"content":[{"type":"text","text":"` + strings.Repeat("d", 20) + `"}]}`; out.String() != want {
		t.Errorf("drip: %s; want %s", out.String(), want)
	}

	// Through the SDK client (stdio): the same Result.
	stdio := tenant.Upstream{ConfigID: "h2", Name: "Stdio", Transport: tenant.TransportStdio, Command: hostile.Binary(t)}
	out.Reset()
	if _, err := relay(ctx, p, stdio, upstream.Call{Name: "echo", Arguments: args(map[string]any{"text": "sdk"}), ResultType: true}, &out); err != nil {
		t.Fatal(err)
	}
	if want := `{"content":[{"type":"text","text":"sdk"}],"resultType":"complete"}`; out.String() != want {
		t.Errorf("echo through the SDK: %s; want %s", out.String(), want)
	}
}

// envelopeServer answers initialize as the hostile upstream does, and a
// tools/call with the answer its tool's name picks, id filled in.
func envelopeServer(t *testing.T, answers map[string]func(id string) (contentType, body string)) string {
	h := &hostile.Server{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		json.Unmarshal(body, &req)
		answer, ok := answers[req.Params.Name]
		if req.Method != "tools/call" || !ok {
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.ServeHTTP(w, r)
			return
		}
		ct, b := answer(string(req.ID))
		w.Header().Set("Content-Type", ct)
		if ct == "application/json" {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		}
		io.WriteString(w, b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestHostileEnvelopes: whatever the upstream wraps its result in, the
// call neither crashes nor holds more than its bounds; a result written
// before its id (as some SDKs write it) is relayed when the id is the
// call's, and fails when it is not.
func TestHostileEnvelopes(t *testing.T) {
	result := func(n int) string { return `{"content":[{"type":"text","text":"` + strings.Repeat("r", n) + `"}]}` }
	const big = 200 << 10
	type answer = func(id string) (string, string)
	json := func(f func(id, r string) string, n int) answer {
		return func(id string) (string, string) { return "application/json", f(id, result(n)) }
	}
	events := func(f func(id, r string) string, n int) answer {
		return func(id string) (string, string) { return "text/event-stream", f(id, result(n)) }
	}
	cases := []struct {
		name string
		a    answer
		// ok: relayed whole; else callErr says where it fails.
		ok, callErr bool
	}{
		{"result first", json(func(id, r string) string { return `{"result":` + r + `,"jsonrpc":"2.0","id":` + id + `}` }, big), true, false},
		{"result first, small", json(func(id, r string) string { return `{"result":` + r + `,"jsonrpc":"2.0","id":` + id + `}` }, 10), true, false},
		{"result first, another id", json(func(id, r string) string { return `{"result":` + r + `,"jsonrpc":"2.0","id":"other"}` }, big), false, false},
		{"result first, no jsonrpc", json(func(id, r string) string { return `{"result":` + r + `,"id":` + id + `}` }, big), false, false},
		{"another id first", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":"other","result":` + r + `}` }, big), false, true},
		{"huge id", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","id":"` + strings.Repeat("i", 300<<10) + `","result":` + r + `}`
		}, 10), false, true},
		{"huge unknown member", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","x":"` + strings.Repeat("i", 300<<10) + `","id":` + id + `,"result":` + r + `}`
		}, 10), true, false},
		{"two results", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `,"result":` + r + `}`
		}, big), false, false},
		{"an error after the result", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `,"error":{"code":1,"message":"x"}}`
		}, big), false, false},
		{"a method after the result", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `,"method":"x"}` }, big), false, false},
		{"trailing garbage", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `} and more` }, big), false, false},
		// Small answers, read whole: as they were decoded before.
		{"spaced, small", json(func(id, r string) string {
			return "{ \"jsonrpc\" : \"2.0\" ,\n\"id\" : " + id + " , \"result\" : " + r + " }\n"
		}, 10), true, false},
		{"two results, small", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","id":` + id + `,"result":{"x":1},"result":` + r + `}`
		}, 10), true, false},
		{"an error after the result, small", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `,"error":{"code":1,"message":"x"}}`
		}, 10), false, true},
		{"a method after the result, small", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `,"method":"x"}` }, 10), false, true},
		{"another id, small", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":"other","result":` + r + `}` }, 10), false, true},
		{"bad JSON after a good head, small", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[}}` }, 10), false, true},
		{"nested too deep, small", json(func(id, r string) string {
			return `{"jsonrpc":"2.0","id":` + id + `,"result":` + strings.Repeat("[", wire.MaxDepth) + strings.Repeat("]", wire.MaxDepth) + `}`
		}, 10), false, true},
		{"trailing garbage, small", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `} and more` }, 10), false, true},
		{"announced over the limit", json(func(id, r string) string { return `{"jsonrpc":"2.0","id":` + id + `,"result":` + r + `}` }, 2<<20), false, true},
		{"not an object", json(func(id, r string) string { return `["jsonrpc","2.0",` + r + `]` }, big), false, true},
		{"result first over lines of an event", events(func(id, r string) string {
			return "event: message\ndata: {\"result\":\r\ndata: " + r + "\ndata: ,\"jsonrpc\" :\"2.0\",\ndata:\"id\":" + id + "}\n\n"
		}, big), true, false},
		{"events before, and after", events(func(id, r string) string {
			return ": comment\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"" +
				strings.Repeat("l", big) + "\"}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":" + r + "}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":" + id +
				",\"result\":" + r + "}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"result\":7}\n\n"
		}, big), true, false},
		{"event not ended", events(func(id, r string) string {
			return "data: {\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"result\":" + r + "}\n"
		}, big), false, false},
		{"event stream ends first", events(func(id, r string) string {
			return "data: {\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":" + r + "}\n\n"
		}, big), false, true},
	}
	answers := map[string]answer{}
	for i, c := range cases {
		answers[fmt.Sprint("t", i)] = c.a
	}
	p := upstream.NewPool(upstream.PoolOptions{MaxMessageBytes: 1 << 20})
	t.Cleanup(p.Close)
	up := hostileUpstream(envelopeServer(t, answers))
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var notes []string
			res, err := p.CallTool(context.Background(), up, upstream.Call{Name: fmt.Sprint("t", i), Arguments: args(nil), Notify: func(m []byte) { notes = append(notes, string(m)) }})
			if err != nil {
				if !c.callErr {
					t.Fatalf("CallTool: %v", err)
				}
				var tl *budget.TooLargeError
				if strings.HasPrefix(c.name, "announced") && !errors.As(err, &tl) {
					t.Errorf("error %v; want too large", err)
				}
				return
			}
			defer res.Close()
			if c.callErr {
				t.Fatal("CallTool returned a result")
			}
			var out bytes.Buffer
			_, err = res.WriteTo(&out)
			switch {
			case c.ok && err != nil:
				t.Fatalf("WriteTo: %v", err)
			case !c.ok && err == nil:
				t.Fatalf("WriteTo wrote %d bytes without an error", out.Len())
			case c.ok && out.String() != result(len(out.String())-len(result(0))):
				t.Errorf("wrote %.100s…", out.String())
			}
			if strings.HasPrefix(c.name, "events before") && (len(notes) != 1 || !strings.Contains(notes[0], "notifications/message")) {
				t.Errorf("%d notifications; want the log message", len(notes))
			}
			if _, err := res.WriteTo(io.Discard); err == nil {
				t.Error("a second WriteTo did not fail")
			}
		})
	}
}

// BenchmarkCallTool: a 1 MiB result relayed from an upstream process,
// streamed (CallTool and WriteTo) and read whole (Call), as JSON and as
// an event.
func BenchmarkCallTool(b *testing.B) {
	url := startHostileProcess(b)
	p := upstream.NewPool(upstream.PoolOptions{})
	b.Cleanup(p.Close)
	up := hostileUpstream(url)
	ctx := context.Background()
	for _, sse := range []bool{false, true} {
		call := upstream.Call{Name: "huge", Arguments: args(map[string]any{"bytes": 1 << 20, "sse": sse}), ResultType: true}
		b.Run(fmt.Sprintf("sse=%v/streamed", sse), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(1 << 20)
			for b.Loop() {
				if _, err := relay(ctx, p, up, call, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("sse=%v/whole", sse), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(1 << 20)
			for b.Loop() {
				res, err := p.CallTool(ctx, up, call)
				if err != nil {
					b.Fatal(err)
				}
				whole, err := p.ReadAll(ctx, res)
				if err != nil {
					b.Fatal(err)
				}
				io.Discard.Write(whole)
			}
		})
	}
}

// TestCallToolSDKServer: a result of the official SDK's server, over an
// event stream and as JSON, relayed streamed: the same result the SDK's
// own client decodes, its structured content included.
func TestCallToolSDKServer(t *testing.T) {
	text := strings.Repeat("é\"\n", 100<<10) // escapes and UTF-8, past the buffer
	for _, jsonResponse := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", jsonResponse), func(t *testing.T) {
			srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return demo.NewServer("sdk") },
				&mcp.StreamableHTTPOptions{JSONResponse: jsonResponse}))
			t.Cleanup(srv.Close)
			p := upstream.NewPool(upstream.PoolOptions{})
			t.Cleanup(p.Close)
			up := tenant.Upstream{ConfigID: "s1", Name: "SDK", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}
			var out bytes.Buffer
			if _, err := relay(context.Background(), p, up, upstream.Call{Name: "echo", Arguments: args(map[string]any{"text": text}), ResultType: true}, &out); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
				StructuredContent struct {
					Text string `json:"text"`
				} `json:"structuredContent"`
				ResultType string `json:"resultType"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Content) != 1 || got.Content[0].Text != text || got.StructuredContent.Text != text || got.ResultType != "complete" {
				t.Errorf("relayed %.200s…", out.String())
			}
			if bytes.IndexByte(out.Bytes(), '\n') >= 0 {
				t.Error("the relayed result holds a raw newline")
			}
		})
	}
}
