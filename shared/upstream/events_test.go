package upstream

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"mcpproxy.dev/mcpproxy/shared/budget"
)

// eventsByLines is how the pool read an event stream before eventReader:
// whole lines, CR and LF trimmed at their end, data lines joined by '\n',
// events without data skipped.
func eventsByLines(stream string) []string {
	var out []string
	var data []string
	had := false
	for _, line := range strings.SplitAfter(stream, "\n") {
		if !strings.HasSuffix(line, "\n") {
			break // an unended line ends nothing
		}
		text := strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(text, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
			had = true
		}
		if text == "" && had {
			out = append(out, strings.Join(data, "\n"))
			data, had = nil, false
		}
	}
	return out
}

// TestEventReader: the data of each event as the pool read it before,
// with the stream read in pieces of every size, and each event bounded.
func TestEventReader(t *testing.T) {
	long := strings.Repeat("L", 40000)
	for _, stream := range []string{
		"data: {\"a\":1}\n\n",
		"event: message\nid: 7\ndata: {\"a\":\ndata:  1}\n\n: comment\n\ndata:x\r\n\r\n",
		"data\ndat\ndata:\n\n",
		"data: " + long + "\r\ndata: " + long + "\n\ndata: tail\n\n",
		"retry: 10\n\n\n\ndata: after empty events\n\n",
		"data: cr\r\r\n\n",
		"data: unended\n",
		"data: " + strings.Repeat("\r", 40) + "x\n\n",
	} {
		want := eventsByLines(stream)
		for _, src := range []func() io.Reader{
			func() io.Reader { return strings.NewReader(stream) },
			func() io.Reader { return iotest.OneByteReader(strings.NewReader(stream)) },
		} {
			got, err := readEvents(newEventReader(bufio.NewReaderSize(src(), 16), 1<<20))
			if !errors.Is(err, errStreamEnded) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%.40q: ended with %v", stream, err)
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%.40q: events %.80q; want %.80q", stream, got, want)
			}
		}
	}

	// Bounded per event, whatever its lines are.
	for _, stream := range []string{
		"data: " + strings.Repeat("x", 200) + "\n\n",
		": " + strings.Repeat("x", 200) + "\n\ndata: 1\n\n",
		strings.Repeat("data: 1\n", 30) + "\n",
	} {
		e := newEventReader(bufio.NewReaderSize(strings.NewReader(stream), 16), 100)
		var err error
		for err == nil {
			if err = e.next(); err == nil {
				_, err = io.ReadAll(e)
			}
		}
		var tl *budget.TooLargeError
		if !errors.As(err, &tl) {
			t.Errorf("%.20q: %v; want too large", stream, err)
		}
	}
}

// readEvents reads every event of e that has data, up to the error that
// ends the stream.
func readEvents(e *eventReader) ([]string, error) {
	var got []string
	for {
		if err := e.next(); err != nil {
			return got, err
		}
		b, err := io.ReadAll(e)
		if err != nil {
			return got, err
		}
		if e.hadData() {
			got = append(got, string(b))
		}
	}
}

// FuzzEvents: eventReader reads any stream as the line-by-line reading it
// replaced, however the stream is cut into reads.
func FuzzEvents(f *testing.F) {
	f.Add("event: message\nid: 7\ndata: {\"a\":\ndata:  1}\n\n: comment\n\ndata:x\r\n\r\n", 3)
	f.Add("data: cr\r\r\n\ndata\ndat\ndata:\n\n", 1)
	f.Fuzz(func(t *testing.T, stream string, chunk int) {
		want := eventsByLines(stream)
		var src io.Reader = strings.NewReader(stream)
		if chunk%3 == 1 {
			src = iotest.OneByteReader(src)
		} else if chunk%3 == 2 {
			src = iotest.HalfReader(src)
		}
		got, err := readEvents(newEventReader(bufio.NewReaderSize(src, 16), 0))
		if !errors.Is(err, errStreamEnded) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%q: ended with %v", stream, err)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%q: events %q; want %q", stream, got, want)
		}
	})
}
