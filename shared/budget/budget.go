// Package budget bounds the bytes a process holds for the requests it is
// serving: request bodies and upstream answers, which a client or an
// upstream sizes, not the proxy. Without a bound, eighty concurrent 8 MiB
// results outgrow any function instance's memory, and one tenant's large
// answers would take the instance down for every tenant on it.
//
// A request opens an Account on the process's Budget and closes it when
// its response is written. Every reader of a body or an answer measures
// what it holds with a Meter: the first Peek bytes are charged as they
// come, and a body that grows past them reserves its whole limit (or its
// announced length) at once. All-or-nothing reservations keep two large
// readers from each holding half of what both need: a reader either has
// all its room or waits for it holding only Peek bytes, first come first
// served (golang.org/x/sync/semaphore is FIFO). A reader that waits
// longer than MaxWait fails with ErrBusy, never grows the process.
package budget

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Peek is what a body may hold before it reserves its whole limit: most
// MCP messages are far smaller, and pay nothing more.
const Peek = 64 << 10

// ErrBusy is the error of a reader that waited too long for room.
var ErrBusy = errors.New("the process holds as many bytes in flight as its budget allows")

// TooLargeError is the error of a body or message larger than its limit.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("larger than the limit of %d bytes", e.Limit)
}

// Budget is the room a process has for bytes in flight. It is safe for
// concurrent use. A nil *Budget charges nothing.
type Budget struct {
	sem     *semaphore.Weighted
	size    int64
	maxWait time.Duration
}

// New makes a budget of size bytes; a reader waits at most maxWait for
// room (default 10 s).
func New(size int64, maxWait time.Duration) *Budget {
	if maxWait <= 0 {
		maxWait = 10 * time.Second
	}
	return &Budget{sem: semaphore.NewWeighted(size), size: size, maxWait: maxWait}
}

// Size is the budget's size in bytes.
func (b *Budget) Size() int64 {
	if b == nil {
		return 0
	}
	return b.size
}

// Account is what one request holds of a budget; Close gives it back.
type Account struct {
	b       *Budget
	mu      sync.Mutex
	held    int64 // taken from the budget, prepaid included
	prepaid int64 // taken by Prepay and not yet drawn by a meter
}

// Open opens an account; the caller must Close it.
func (b *Budget) Open() *Account { return &Account{b: b} }

// acquire takes n more bytes, waiting at most the budget's MaxWait.
func (a *Account) acquire(ctx context.Context, n int64) error {
	if a == nil || a.b == nil || n <= 0 {
		return nil
	}
	a.mu.Lock()
	drawn := min(a.prepaid, n)
	a.prepaid -= drawn
	a.mu.Unlock()
	return a.take(ctx, n-drawn)
}

// take takes n bytes from the budget.
func (a *Account) take(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	if n > a.b.size {
		return ErrBusy // could never fit, however long it waited
	}
	if !a.b.sem.TryAcquire(n) {
		if err := a.wait(ctx, n); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.held += n
	a.mu.Unlock()
	return nil
}

// wait takes n bytes when they free, at most MaxWait. (TryAcquire first
// spares the common case a timer; it fails while others wait, so the
// queue stays first come, first served.)
func (a *Account) wait(ctx context.Context, n int64) error {
	wait, cancel := context.WithTimeout(ctx, a.b.maxWait)
	defer cancel()
	if err := a.b.sem.Acquire(wait, n); err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // the request's own end, not the budget's
		}
		return ErrBusy
	}
	return nil
}

// Prepay takes n bytes at once, waiting as a meter does, for what the
// request will hold: its meters draw on them before they take more. A
// request that knows its needs takes them in one step, so that it never
// waits for more while it holds part of the budget: two such requests
// each holding half of what both need would wait on each other.
func (a *Account) Prepay(ctx context.Context, n int64) error {
	if a == nil || a.b == nil {
		return nil
	}
	if err := a.take(ctx, n); err != nil {
		return err
	}
	a.mu.Lock()
	a.prepaid += n
	a.mu.Unlock()
	return nil
}

// Held is what the account holds now.
func (a *Account) Held() int64 {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

// Close gives back everything the account holds. It is safe to call
// twice, and on a nil account.
func (a *Account) Close() {
	if a == nil || a.b == nil {
		return
	}
	a.mu.Lock()
	n := a.held
	a.held, a.prepaid = 0, 0
	a.mu.Unlock()
	if n > 0 {
		a.b.sem.Release(n)
	}
}

type accountKey struct{}

// NewContext returns ctx carrying a.
func NewContext(ctx context.Context, a *Account) context.Context {
	return context.WithValue(ctx, accountKey{}, a)
}

// FromContext is the account ctx carries, or nil (which charges nothing).
func FromContext(ctx context.Context) *Account {
	a, _ := ctx.Value(accountKey{}).(*Account)
	return a
}

// Meter measures one body or message against its limit and charges an
// account for it.
type Meter struct {
	acct    *Account
	limit   int64
	charged int64
	// announced is the length a body announced (Content-Length), or -1.
	announced int64
}

// NewMeter measures a body of at most limit bytes (limit ≤ 0: none) that
// announced its length (or -1), charging acct (nil: nothing).
func NewMeter(acct *Account, limit, announced int64) *Meter {
	return &Meter{acct: acct, limit: limit, announced: announced}
}

// Cover makes sure n bytes are charged, reserving the body's whole room
// once it grows past Peek. It fails with a *TooLargeError past the limit,
// or with ErrBusy when no room frees in time.
func (m *Meter) Cover(ctx context.Context, n int64) error {
	if m.limit > 0 && n > m.limit {
		return &TooLargeError{Limit: m.limit}
	}
	if n <= m.charged {
		return nil
	}
	want := n
	if n > Peek {
		want = max(n, m.room())
	}
	if err := m.acct.acquire(ctx, want-m.charged); err != nil {
		return err
	}
	m.charged = want
	return nil
}

// room is the most the body can need: its announced length when it gave
// one within the limit, else the limit (0 with neither).
func (m *Meter) room() int64 {
	if m.announcedFits() {
		return m.announced
	}
	return max(m.limit, 0)
}

func (m *Meter) announcedFits() bool {
	return m.announced >= 0 && (m.limit <= 0 || m.announced <= m.limit)
}

// ReadAll reads r to its end under the meter: at most the limit, charged
// before it is held. The buffer doubles as it fills, or is made at once
// of the length the body announced.
func (m *Meter) ReadAll(ctx context.Context, r io.Reader) ([]byte, error) {
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			have := int64(len(buf))
			if (m.limit > 0 && have >= m.limit) || (m.announcedFits() && have == m.announced) {
				// Full as announced, or at the limit: one more byte
				// says whether the body ends here.
				more, err := probe(r)
				switch {
				case err == io.EOF:
					return buf, nil
				case err != nil:
					return nil, err
				case m.limit > 0 && have >= m.limit:
					return nil, &TooLargeError{Limit: m.limit}
				}
				m.announced = -1 // it said less than it sent
				buf = append(buf, more)
				continue
			}
			next := m.next(have)
			if err := m.Cover(ctx, next); err != nil {
				return nil, err
			}
			// Capped at what is charged: an allocator's size class may
			// give more.
			buf = slices.Grow(buf, int(next-have))[:have:next]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// next is the capacity to read into after have bytes, never past the
// limit.
func (m *Meter) next(have int64) int64 {
	next := 2 * have // no limit: as it comes
	switch {
	case m.announcedFits() && have < m.announced:
		next = m.announced
	case have < Peek:
		next = min(max(2*have, 4096), Peek)
	case m.room() > have:
		// Doubling, as io.ReadAll does: the whole room is charged at
		// once (Cover), but a buffer of the limit's size for an answer
		// of a megabyte would touch memory the answer never uses.
		next = min(2*have, m.room())
	}
	if m.limit > 0 {
		next = min(next, m.limit)
	}
	return next
}

// probe reads one byte, skipping empty reads.
func probe(r io.Reader) (byte, error) {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return one[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}
