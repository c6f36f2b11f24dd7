package upstream

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"mcpproxy.dev/mcpproxy/shared/budget"
)

// TestLimitMessages: a JSON body is bounded whole, an event stream per
// event, blank lines split over reads and CR LF line ends included.
func TestLimitMessages(t *testing.T) {
	event := func(n int, end string) string { return "data: " + strings.Repeat("x", n) + end }
	for _, tt := range []struct {
		name, contentType, body string
		tooLarge                bool
	}{
		{"small JSON", "application/json", strings.Repeat("j", 90), false},
		{"JSON over the limit", "application/json", strings.Repeat("j", 101), true},
		{"many small events", "text/event-stream", strings.Repeat(event(60, "\n\n"), 50), false},
		{"many small CR LF events", "text/event-stream", strings.Repeat(event(60, "\r\n\r\n"), 50), false},
		{"one event over the limit", "text/event-stream", event(60, "\n\n") + event(120, "\n\n"), true},
		{"one event of many lines over the limit", "text/event-stream", strings.Repeat(event(30, "\n"), 5) + "\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{Header: http.Header{"Content-Type": {tt.contentType}},
				Body: io.NopCloser(iotest.OneByteReader(strings.NewReader(tt.body)))}
			limitMessages(resp, 100)
			got, err := io.ReadAll(resp.Body)
			var tl *budget.TooLargeError
			if tt.tooLarge != errors.As(err, &tl) {
				t.Fatalf("error %v; want too large: %v", err, tt.tooLarge)
			}
			if !tt.tooLarge && string(got) != tt.body {
				t.Errorf("read %d bytes; want %d", len(got), len(tt.body))
			}
		})
	}
}
