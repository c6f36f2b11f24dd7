package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// TestLogLinesWhileBusy: the proxy's INFO lines wait to be written with
// others (LOG_DELAY) while requests are in flight. Here a call's line is
// on stderr within the delay while a slow call of ten seconds is still in
// flight.
func TestLogLinesWhileBusy(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	p := startDevserver(t, e, firestoretest.Collection(t), "LOG_DELAY=100ms")
	p.waitServing(t, e.Key)

	slowDone := make(chan int, 1)
	go func() {
		code, _ := callTool(p.url, e.Key, "beta__slow", `{"ms":10000}`)
		slowDone <- code
	}()
	// The slow call is in flight once the upstream has it: its first
	// progress is not visible here, so give it time to get there.
	time.Sleep(500 * time.Millisecond)
	if code, ok := callAt(p.url, e.Key, "alpha__add"); code != http.StatusOK || !ok {
		t.Fatalf("call: HTTP %d, result %v", code, ok)
	}
	if err := p.waitLine(`"tool":"alpha__add"`, 8*time.Second); err != nil {
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
}

// TestLogLinesWhenIdle: with a delay no line waits out (an hour), a
// call's line is written once the call ends and nothing else is in
// flight: by the last request in flight, not by the delay.
func TestLogLinesWhenIdle(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	p := startDevserver(t, e, firestoretest.Collection(t), "LOG_DELAY=1h")
	p.waitServing(t, e.Key)
	if code, ok := callAt(p.url, e.Key, "alpha__add"); code != http.StatusOK || !ok {
		t.Fatalf("call: HTTP %d, result %v", code, ok)
	}
	// The client has its answer before the handler has ended, which is
	// when the line is written.
	if err := p.waitLine(`"tool":"alpha__add"`, 10*time.Second); err != nil {
		t.Fatalf("an idle process's last line not written: %v", err)
	}
}

// waitLine waits until a line of stderr holds text.
func (p *devProcess) waitLine(text string, limit time.Duration) error {
	return wait.Until(context.Background(), limit, func() bool { return strings.Contains(p.stderr.String(), text) })
}
