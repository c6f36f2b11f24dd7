package proxy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// TestLogLinesWhileBusy: the proxy's INFO lines wait to be written with
// others (LOG_DELAY) while requests are in flight, and are written when
// the last request ends. Here a call's line is on stderr within the delay
// while a slow call of ten seconds is still in flight, and the slow
// call's own line is there as soon as its answer came, before the
// process is killed.
func TestLogLinesWhileBusy(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	p := startDevserver(t, e, firestoretest.Collection(t), "LOG_DELAY=100ms")
	p.waitServing(t, e.Key)
	before := p.requestLines()

	slowDone := make(chan int, 1)
	go func() {
		code, _ := callTool(p.url, e.Key, "beta__slow", `{"ms":10000}`)
		slowDone <- code
	}()
	// The slow call is in flight once the upstream has it: its first
	// progress is not visible here, so give it time to get there.
	time.Sleep(500 * time.Millisecond)
	if code, ok := callAt(p.url, e.Key, "alpha__echo"); code != http.StatusOK || !ok {
		t.Fatalf("call: HTTP %d, result %v", code, ok)
	}
	if err := wait.Until(context.Background(), 8*time.Second, func() bool { return p.requestLines() > before }); err != nil {
		t.Fatalf("a call's line not written while another call is in flight: %v", err)
	}
	select {
	case code := <-slowDone:
		t.Fatalf("the slow call ended (HTTP %d) before the line came: the test shows nothing", code)
	default:
	}
	if code := <-slowDone; code != http.StatusOK {
		t.Fatalf("slow call: HTTP %d", code)
	}
	// Its answer came: with nothing else in flight, its line was
	// written before the request ended.
	p.kill()
	if got := p.requestLines(); got != before+2 {
		t.Errorf("%d request lines after the two calls; want %d:\n%s", got, before+2, p.stderr.String())
	}
}
