// Package logcapture keeps what a logger writes, from any goroutine, for a
// test to read.
package logcapture

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that Write and String may use concurrently
// (a logger's handler writes while the test reads). The zero value is
// ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
