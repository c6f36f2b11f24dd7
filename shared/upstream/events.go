package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"mcpproxy.dev/mcpproxy/shared/budget"
)

// errStreamEnded is the error of an event stream that ended before the
// answer to the call.
var errStreamEnded = errors.New("the stream ended before the answer")

// eventReader reads an event stream one event at a time, as a reader of
// the event's data: the values of its "data:" lines joined by '\n' (what
// a client of the stream sees), then io.EOF at the blank line that ends
// the event. Other fields and comments are skipped; a line's CR before
// its LF is dropped. The lines of one event are bounded by limit bytes,
// however they are spent (a *budget.TooLargeError past it).
type eventReader struct {
	br    *bufio.Reader
	limit int64
	n     int64 // bytes of the current event's lines read
	data  int   // data lines of the current event begun
	mode  int
	join  bool // a '\n' is due before the next data
}

const (
	evEnded     = iota // at the end of an event: io.EOF until next
	evLineStart        // at the start of a line
	evDataValue        // after "data:", before its optional space
	evData             // within a data line's value
	evOther            // within a line of another field, or a comment
)

func newEventReader(br *bufio.Reader, limit int64) *eventReader {
	return &eventReader{br: br, limit: limit, mode: evEnded}
}

// next starts the next event, skipping what is left of the current one.
func (e *eventReader) next() error {
	if e.mode != evEnded {
		var scratch [512]byte
		for {
			_, err := e.Read(scratch[:])
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	e.n, e.data, e.mode, e.join = 0, 0, evLineStart, false
	return nil
}

// hadData reports whether the current event has a data line.
func (e *eventReader) hadData() bool { return e.data > 0 }

// buffered returns what the line reader holds, reading more when it
// holds less than n bytes. At the stream's end mid-event it fails with
// io.ErrUnexpectedEOF; between events, with errStreamEnded.
func (e *eventReader) buffered(n int) ([]byte, error) {
	if e.br.Buffered() < n {
		if _, err := e.br.Peek(n); err != nil && e.br.Buffered() < n {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				if e.n == 0 && e.br.Buffered() == 0 {
					return nil, errStreamEnded
				}
				return nil, io.ErrUnexpectedEOF
			}
			if err != bufio.ErrBufferFull {
				return nil, err
			}
		}
	}
	b, _ := e.br.Peek(e.br.Buffered())
	return b, nil
}

// consume reads n bytes of the current event's lines.
func (e *eventReader) consume(n int) error {
	e.br.Discard(n)
	if e.n += int64(n); e.limit > 0 && e.n > e.limit {
		return &budget.TooLargeError{Limit: e.limit}
	}
	return nil
}

var dataField = []byte("data:")

func (e *eventReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		switch e.mode {
		case evEnded:
			return 0, io.EOF
		case evLineStart:
			b, err := e.buffered(1)
			if err != nil {
				return 0, err
			}
			switch {
			case b[0] == '\n':
				e.mode = evEnded
				if err := e.consume(1); err != nil {
					return 0, err
				}
				return 0, io.EOF
			case b[0] == '\r':
				// Blank too when only CRs come before its LF.
				crs := len(b) - len(bytes.TrimLeft(b, "\r"))
				switch {
				case crs < len(b) && b[crs] == '\n':
					e.mode = evEnded
					if err := e.consume(crs + 1); err != nil {
						return 0, err
					}
					return 0, io.EOF
				case crs < len(b) || len(b) == e.br.Size():
					e.mode = evOther
				default:
					if _, err := e.buffered(len(b) + 1); err != nil {
						return 0, err
					}
				}
			case bytes.HasPrefix(b, dataField):
				e.mode = evDataValue
				if err := e.consume(len(dataField)); err != nil {
					return 0, err
				}
			case len(b) < len(dataField) && bytes.HasPrefix(dataField, b) && bytes.IndexByte(b, '\n') < 0:
				// Too little to tell: a line ends with '\n', so more comes.
				if _, err := e.buffered(len(b) + 1); err != nil {
					return 0, err
				}
			default:
				e.mode = evOther
			}
		case evDataValue:
			b, err := e.buffered(1)
			if err != nil {
				return 0, err
			}
			if b[0] == ' ' {
				if err := e.consume(1); err != nil {
					return 0, err
				}
			}
			e.join = e.data > 0
			e.data++
			e.mode = evData
		case evData:
			if e.join {
				e.join = false
				p[0] = '\n'
				return 1, nil
			}
			b, err := e.buffered(1)
			if err != nil {
				return 0, err
			}
			end := bytes.IndexByte(b, '\n')
			value := b
			if end >= 0 {
				value = bytes.TrimRight(b[:end], "\r")
			} else if v := bytes.TrimRight(b, "\r"); len(v) > 0 {
				// A CR at the end of what is buffered may end the line:
				// held back until what follows it is known.
				value = v
			} else if len(b) == e.br.Size() {
				value = b // a buffer of CRs, not a line's end
			} else {
				if _, err := e.buffered(len(b) + 1); err != nil {
					return 0, err
				}
				continue
			}
			n := copy(p, value)
			if err := e.consume(n); err != nil {
				return 0, err
			}
			if n == len(value) && end >= 0 {
				e.mode = evLineStart
				if err := e.consume(end + 1 - n); err != nil {
					return n, err
				}
			}
			if n > 0 {
				return n, nil
			}
		case evOther:
			b, err := e.buffered(1)
			if err != nil {
				return 0, err
			}
			n := len(b)
			if end := bytes.IndexByte(b, '\n'); end >= 0 {
				n = end + 1
				e.mode = evLineStart
			}
			if err := e.consume(n); err != nil {
				return 0, err
			}
		}
	}
}
