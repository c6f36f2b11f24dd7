package upstream

import (
	"bytes"
	"io"
	"net/http"

	"mcpproxy.dev/mcpproxy/shared/budget"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// DefaultMaxMessageBytes bounds one upstream message where no pool says
// otherwise (PoolOptions.MaxMessageBytes).
const DefaultMaxMessageBytes = 16 << 20

// limitMessages bounds what the SDK reads of an upstream's answer: the
// SDK holds a message whole, and reads as much as an upstream sends. A
// JSON body is one message; an event stream's message is one event, which
// ends at a blank line, so a long-lived stream may carry any number of
// them. Past the limit the body fails with a *budget.TooLargeError.
func limitMessages(resp *http.Response, limit int64) {
	resp.Body = &messageLimit{ReadCloser: resp.Body, limit: limit,
		events: wire.MediaType(resp.Header.Get("Content-Type")) == "text/event-stream"}
}

type messageLimit struct {
	io.ReadCloser
	limit  int64
	events bool
	n      int64   // bytes of the current message
	tail   [3]byte // the last bytes read, for a blank line split over reads
	tailN  int
}

func (m *messageLimit) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	chunk := p[:n]
	m.n += int64(n)
	if m.events && n > 0 {
		if end := eventEnd(m.tail[:m.tailN], chunk); end >= 0 {
			m.n = int64(n - end)
		}
		joined := append(m.tail[:m.tailN:m.tailN], chunk[max(0, n-3):]...)
		m.tailN = copy(m.tail[:], joined[max(0, len(joined)-3):])
	}
	if m.n > m.limit {
		return 0, &budget.TooLargeError{Limit: m.limit}
	}
	return n, err
}

// blankLines end an event, whichever line ends the stream uses.
var blankLines = [][]byte{[]byte("\n\n"), []byte("\n\r\n"), []byte("\r\r")}

// eventEnd is the offset in chunk just past its last blank line (an
// event's end), or -1. tail is what came just before chunk, so that a
// blank line split over two reads is seen.
func eventEnd(tail, chunk []byte) int {
	end := -1
	for _, b := range blankLines {
		if i := bytes.LastIndex(chunk, b); i >= 0 {
			end = max(end, i+len(b))
		}
	}
	if end >= 0 {
		return end
	}
	joined := append(tail[:len(tail):len(tail)], chunk[:min(3, len(chunk))]...)
	for _, b := range blankLines {
		if i := bytes.LastIndex(joined, b); i >= 0 && i+len(b) > len(tail) {
			end = max(end, i+len(b)-len(tail))
		}
	}
	return end
}
