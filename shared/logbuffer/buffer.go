package logbuffer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Batch is a group of entries written as one document.
type Batch struct {
	// ID names the document. A batch keeps its ID across retries, so that
	// a write that timed out after storing the document is not stored a
	// second time, and the flush copies it once.
	ID        string
	CreatedAt time.Time
	// Entries holds one JSON-encoded tenant.LogEntry per line.
	Entries []byte
	Count   int
	// LastUsed maps each API key ID of the batch to its latest use.
	LastUsed map[string]time.Time
	// Invalid, on a batch read back from the sink, says why its document
	// cannot be read; such a batch has no entries.
	Invalid string
}

// Sink stores batches. Writing a batch whose ID is already stored must
// succeed without storing it twice.
type Sink interface {
	Write(ctx context.Context, b *Batch) error
}

// Options tune a Buffer. Zero values take the defaults named.
type Options struct {
	// BatchEntries is the most entries in a batch, and the count at which
	// a batch is written without waiting for MaxAge. Default 500.
	BatchEntries int
	// BatchBytes bounds the encoded entries of a batch; the default
	// 512 KiB keeps a document well under Firestore's 1 MiB limit.
	BatchBytes int
	// MaxAge is how long an entry may wait for its batch to fill before
	// the batch is written anyway. Default 5 s.
	MaxAge time.Duration
	// MaxBytes bounds what the buffer holds, written or not (entries
	// waiting, batches being retried). An entry that would exceed it is
	// dropped and counted. Default 64 MiB (about 160,000 entries: 80 s of
	// a Firestore outage at 2,000 requests a second). It costs memory only
	// while Firestore is unreachable.
	MaxBytes int
	// WriteTimeout bounds one write. Default 10 s.
	WriteTimeout time.Duration
	// MaxBackoff caps the wait between retries of a failing sink; the
	// first retry waits 250 ms and each next one twice as long. Default 5 s:
	// a write is one small request, and a short cap lets the buffer empty
	// soon after Firestore comes back instead of waiting out a long backoff
	// while it fills.
	MaxBackoff time.Duration
	// Logger receives write failures and drops; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stats are a buffer's figures since it was made.
type Stats struct {
	Depth     int    `json:"depth"` // entries held: waiting, being written or retried
	Bytes     int    `json:"bytes"` // their encoded size
	Appended  int64  `json:"appended"`
	Written   int64  `json:"written"`
	Dropped   int64  `json:"dropped"`
	Batches   int64  `json:"batches"`  // batches written
	Failures  int64  `json:"failures"` // failed writes (each retried)
	LastError string `json:"lastError,omitempty"`
}

type item struct {
	line  []byte
	key   string
	at    time.Time // the entry's time, for LastUsed
	added time.Time // when it was appended, for MaxAge
}

// Buffer collects entries in memory and writes them to a Sink in batches.
// Append never waits for the sink. Writes start from Kick, which the proxy
// calls at the start of a request so that the write overlaps the request
// while the function has CPU, and from a timer for quiet periods; at most
// one write runs at a time, in order, oldest first. Safe for concurrent use.
type Buffer struct {
	sink Sink
	opts Options
	// writer is held by whoever writes: the background write loop or
	// Drain.
	writer chan struct{}

	mu        sync.Mutex
	items     []item   // not yet in a batch, oldest first
	itemBytes int      // their encoded size
	retry     []*Batch // cut but not stored, oldest first
	held      int      // bytes of items, retry and the batch being written
	heldCount int
	notBefore time.Time // no write before this, after a failure
	backoff   time.Duration
	timer     *time.Timer
	timerAt   time.Time
	lastDrop  time.Time
	lastError string

	appended, written, dropped, batches, failures atomic.Int64
}

// New makes a Buffer writing to sink.
func New(sink Sink, opts Options) *Buffer {
	if opts.BatchEntries <= 0 {
		opts.BatchEntries = 500
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 512 << 10
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 5 * time.Second
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Buffer{sink: sink, opts: opts, writer: make(chan struct{}, 1)}
}

// Append adds an entry; it gives e an ID when it has none. It never
// blocks on the sink. When the buffer is full the entry is dropped,
// counted and logged, and Append reports false.
func (b *Buffer) Append(e tenant.LogEntry) bool {
	now := b.opts.Now()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	b.appended.Add(1)
	line := encode(e)
	b.mu.Lock()
	if b.held+len(line) > b.opts.MaxBytes {
		b.mu.Unlock()
		b.drop("buffer full")
		return false
	}
	b.items = append(b.items, item{line: line, key: e.APIKeyID, at: e.CreatedAt.UTC(), added: now})
	b.itemBytes += len(line)
	b.held += len(line)
	b.heldCount++
	if len(b.items) == 1 {
		b.armTimer(now.Add(b.opts.MaxAge))
	}
	b.mu.Unlock()
	return true
}

func (b *Buffer) drop(reason string) {
	n := b.dropped.Add(1)
	now := b.opts.Now()
	b.mu.Lock()
	log := now.Sub(b.lastDrop) >= 10*time.Second
	if log {
		b.lastDrop = now
	}
	b.mu.Unlock()
	if log {
		b.opts.Logger.Error("request log entries dropped", "reason", reason, "droppedTotal", n,
			"maxBytes", b.opts.MaxBytes)
	}
}

// Kick starts writing in the background when a batch is due: full, or
// holding an entry older than MaxAge, or waiting for a retry whose backoff
// has passed. It returns at once. The write goroutine ends when nothing
// more is due.
func (b *Buffer) Kick() {
	b.mu.Lock()
	due := b.due(b.opts.Now())
	b.mu.Unlock()
	if !due {
		return
	}
	select {
	case b.writer <- struct{}{}:
		go b.writeLoop()
	default: // a write is running; it takes what is due when it is done
	}
}

// due reports whether a batch should be written now. b.mu is held.
func (b *Buffer) due(now time.Time) bool {
	if now.Before(b.notBefore) {
		return false
	}
	if len(b.retry) > 0 {
		return true
	}
	return len(b.items) > 0 && (len(b.items) >= b.opts.BatchEntries ||
		b.itemBytes >= b.opts.BatchBytes || now.Sub(b.items[0].added) >= b.opts.MaxAge)
}

func (b *Buffer) writeLoop() {
	defer func() { <-b.writer }()
	for {
		b.mu.Lock()
		var batch *Batch
		if b.due(b.opts.Now()) {
			batch = b.next()
		}
		b.mu.Unlock()
		if batch == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.WriteTimeout)
		err := b.sink.Write(ctx, batch)
		cancel()
		if !b.done(batch, err) {
			return
		}
	}
}

// next takes the batch to write: the oldest one to retry, else a new one
// cut from the oldest entries. b.mu is held.
func (b *Buffer) next() *Batch {
	if len(b.retry) > 0 {
		batch := b.retry[0]
		b.retry = b.retry[1:]
		return batch
	}
	if len(b.items) == 0 {
		return nil
	}
	n, size := 0, 0
	for n < len(b.items) && n < b.opts.BatchEntries && (n == 0 || size+len(b.items[n].line)+1 <= b.opts.BatchBytes) {
		size += len(b.items[n].line) + 1
		n++
	}
	batch := &Batch{ID: newBatchID(), CreatedAt: b.opts.Now().UTC(), Count: n, LastUsed: map[string]time.Time{}}
	var buf bytes.Buffer
	buf.Grow(size)
	for _, it := range b.items[:n] {
		buf.Write(it.line)
		buf.WriteByte('\n')
		if it.key != "" && it.at.After(batch.LastUsed[it.key]) {
			batch.LastUsed[it.key] = it.at
		}
	}
	batch.Entries = buf.Bytes()
	// The lines counted in held gain their newlines in the batch.
	b.held += n
	b.itemBytes -= size - n
	// The rest moves to the front of the same array, which the next
	// batch fills again; what it no longer holds is cleared for the GC.
	rest := copy(b.items, b.items[n:])
	clear(b.items[rest:])
	b.items = b.items[:rest]
	if len(b.items) > 0 {
		b.armTimer(b.items[0].added.Add(b.opts.MaxAge))
	}
	return batch
}

// done records the outcome of writing batch and reports whether the
// writer may go on.
func (b *Buffer) done(batch *Batch, err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.held -= len(batch.Entries)
		b.heldCount -= batch.Count
		b.backoff, b.notBefore = 0, time.Time{}
		b.written.Add(int64(batch.Count))
		b.batches.Add(1)
		return true
	}
	b.failures.Add(1)
	b.lastError = err.Error()
	b.retry = append([]*Batch{batch}, b.retry...)
	b.backoff = min(max(2*b.backoff, 250*time.Millisecond), b.opts.MaxBackoff)
	b.notBefore = b.opts.Now().Add(b.backoff)
	b.armTimer(b.notBefore)
	b.opts.Logger.Warn("request log batch write failed; retrying", "batch", batch.ID, "entries", batch.Count,
		"retryIn", b.backoff.String(), "heldEntries", b.heldCount, "error", err.Error())
	return false
}

// armTimer makes sure a Kick happens by at. b.mu is held.
func (b *Buffer) armTimer(at time.Time) {
	if b.timer != nil && !b.timerAt.IsZero() && !b.timerAt.After(at) {
		return
	}
	b.timerAt = at
	d := at.Sub(b.opts.Now())
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.fire)
		return
	}
	b.timer.Reset(d)
}

func (b *Buffer) fire() {
	b.mu.Lock()
	b.timerAt = time.Time{}
	b.mu.Unlock()
	b.Kick()
	// A kick that found nothing due (the entry was taken meanwhile, or the
	// write loop was busy) must not leave entries without a timer.
	b.mu.Lock()
	if b.timerAt.IsZero() && (len(b.items) > 0 || len(b.retry) > 0) {
		b.armTimer(b.opts.Now().Add(b.opts.MaxAge / 10))
	}
	b.mu.Unlock()
}

// Drain writes everything the buffer holds, full batches or not, ignoring
// backoff, until it is empty or ctx ends. It waits for a running write
// first. It returns an error naming how many entries are left unwritten.
func (b *Buffer) Drain(ctx context.Context) error {
	select {
	case b.writer <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("drain: a write still running: %d entries not written: %w", b.Stats().Depth, ctx.Err())
	}
	defer func() { <-b.writer }()
	for {
		b.mu.Lock()
		batch := b.next()
		b.mu.Unlock()
		if batch == nil {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, b.opts.WriteTimeout)
		err := b.sink.Write(wctx, batch)
		cancel()
		b.done(batch, err)
		if err != nil {
			select {
			case <-ctx.Done():
				return fmt.Errorf("drain: %d entries not written: %w", b.Stats().Depth, errors.Join(ctx.Err(), err))
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// Stats returns the buffer's figures.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	s := Stats{Depth: b.heldCount, Bytes: b.held, LastError: b.lastError}
	b.mu.Unlock()
	s.Appended, s.Written, s.Dropped = b.appended.Load(), b.written.Load(), b.dropped.Load()
	s.Batches, s.Failures = b.batches.Load(), b.failures.Load()
	return s
}

// newBatchID returns a random document ID: 96 bits, hex.
func newBatchID() string {
	var id [12]byte
	rand.Read(id[:])
	return hex.EncodeToString(id[:])
}
