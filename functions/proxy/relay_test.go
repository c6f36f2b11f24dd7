package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// TestAbandonedUnderFramework: served by the Functions Framework, as
// deployed, a relayed result that is cut off after its first bytes
// still ends the client's response broken. The framework recovers every
// panic, http.ErrAbortHandler included, writes its own text after what
// was sent and ends the response cleanly: a client used to get a whole
// 200 response made of part of the result and that text.
func TestAbandonedUnderFramework(t *testing.T) {
	srv, _ := hostileUpstream(t, hostile.Good)
	e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
		{Name: "Evil", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}, []string{"cut"})})
	// What the Functions Framework (v1.9.2, wrapHTTPFunction with
	// recoverPanic) puts around the function; it exposes no handler to
	// serve in a test.
	framework := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, "A panic occurred during user function execution. Please see logs for more details.\n")
			}
		}()
		e.Handler.ServeHTTP(w, r)
	})
	fw := httptest.NewServer(framework)
	t.Cleanup(fw.Close)
	for _, accept := range []string{"application/json", "application/json, text/event-stream"} {
		req, _ := http.NewRequest(http.MethodPost, fw.URL+"/mcp", strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"evil__cut","arguments":{"bytes":100000}}}`))
		req.Header.Set("Authorization", "Bearer "+e.Key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("Accept %s: a cut-off result ended cleanly, HTTP %d, %d bytes ending %q; want the response broken",
				accept, resp.StatusCode, len(body), body[max(0, len(body)-80):])
		}
	}
}

// TestRelayedResultTimeout: a relayed result whose rest never comes is
// abandoned at the request deadline and logged as a timeout, as an
// answer read whole is, not as the upstream's error.
func TestRelayedResultTimeout(t *testing.T) {
	srv, _ := hostileUpstream(t, hostile.Good)
	e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
		{Name: "Evil", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}, []string{"cut"}),
		Proxy: proxy.Options{RequestTimeout: time.Second}})
	call := func(bytes int) map[string]any {
		_, out := e.Post(t, "/mcp", nil, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"evil__cut","arguments":{"bytes":%d,"hold":true}}}`, bytes))
		return out
	}
	// Within the pool's buffer: read whole, a clean timeout.
	if out := call(1000); rpcCode(out) != -32000 {
		t.Errorf("small answer held open: %.300v; want -32000", out)
	}
	// Relayed: abandoned.
	if out := call(100000); out != nil {
		t.Errorf("large answer held open: %.300v; want the response abandoned", out)
	}
	var statuses []string
	for _, line := range strings.Split(e.Logs.String(), "\n") {
		if strings.Contains(line, `"message":"mcp request"`) {
			var entry struct{ Status string }
			json.Unmarshal([]byte(line), &entry)
			statuses = append(statuses, entry.Status)
		}
	}
	if want := []string{"timeout", "timeout"}; !slices.Equal(statuses, want) {
		t.Errorf("logged statuses %v; want %v", statuses, want)
	}
}

// TestStalledClient: a client that stops reading its answer holds the
// request (its goroutine, its budget account) only until the request
// deadline and the time given to write an answer: then the response is
// abandoned and logged. It used to hold them for as long as it kept the
// connection open.
func TestStalledClient(t *testing.T) {
	srv, _ := hostileUpstream(t, hostile.Good)
	e := testenv.New(t, testenv.Options{Tenant: testenv.Tenant([]postgres.Server{
		{Name: "Evil", Transport: tenant.TransportStreamableHTTP, URL: srv.URL}}, []string{"huge"}),
		// Time enough for the upstream to start its answer on a busy
		// machine: the relay, not the upstream, is to be abandoned.
		Proxy: proxy.Options{RequestTimeout: 4 * time.Second, WriteGrace: time.Second}, Pool: upstream.PoolOptions{MaxMessageBytes: 64 << 20}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.Proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// More than the loopback's socket buffers take, never read.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"evil__huge","arguments":{"bytes":33554432}}}`
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		strings.TrimPrefix(e.Proxy.URL, "http://"), e.Key, len(body), body)
	wait.For(t, "the stalled request to end", 20*time.Second, func() bool {
		return strings.Contains(e.Logs.String(), `"message":"mcp request"`)
	})
	if logs := e.Logs.String(); !strings.Contains(logs, `"relayed result abandoned"`) {
		t.Errorf("no log line of the abandoned result: %.2000s", logs)
	}
}
