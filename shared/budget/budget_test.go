package budget

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

// TestReadAll: bodies around Peek and the limit, with and without an
// announced length (true, short or long), read whole or refused, and
// charged for at most their room.
func TestReadAll(t *testing.T) {
	const limit = 1 << 20
	for _, tt := range []struct {
		name      string
		size      int
		announced int64
		tooLarge  bool
	}{
		{"empty", 0, -1, false},
		{"small", 100, -1, false},
		{"small announced", 100, 100, false},
		{"at Peek", Peek, -1, false},
		{"past Peek", Peek + 1, -1, false},
		{"large announced", 700 << 10, 700 << 10, false},
		{"announced short", 300 << 10, 200 << 10, false},
		{"announced long", 300 << 10, 900 << 10, false},
		{"at the limit", limit, -1, false},
		{"one past the limit", limit + 1, -1, true},
		{"announced past the limit", limit + 1, limit + 1, true},
		{"far past the limit", 5 << 20, -1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := New(8<<20, time.Second)
			acct := b.Open()
			defer acct.Close()
			body := bytes.Repeat([]byte("x"), tt.size)
			got, err := NewMeter(acct, limit, tt.announced).ReadAll(context.Background(), iotest.HalfReader(bytes.NewReader(body)))
			var tl *TooLargeError
			if tt.tooLarge {
				if !errors.As(err, &tl) || tl.Limit != limit {
					t.Fatalf("error %v; want too large", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(body))
			}
			if held := acct.Held(); held < int64(len(got)) || held > max(int64(Peek), tt.announced, limit) {
				t.Errorf("held %d for %d bytes", held, len(got))
			}
			if tt.size <= Peek/2 && tt.announced < 0 && acct.Held() > Peek {
				t.Errorf("a small body held %d", acct.Held())
			}
		})
	}
}

// TestBudgetWaits: a reader that needs room held by another waits for
// it, and fails with ErrBusy when it does not free in time; a closed
// account gives everything back.
func TestBudgetWaits(t *testing.T) {
	b := New(1<<20, 200*time.Millisecond)
	first := b.Open()
	body := bytes.Repeat([]byte("x"), 800<<10)
	if _, err := NewMeter(first, 1<<20, -1).ReadAll(context.Background(), bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	second := b.Open()
	defer second.Close()
	if _, err := NewMeter(second, 1<<20, -1).ReadAll(context.Background(), bytes.NewReader(body)); !errors.Is(err, ErrBusy) {
		t.Fatalf("second reader while the first holds its room: %v; want ErrBusy", err)
	}
	second.Close()
	done := make(chan error, 1)
	go func() {
		_, err := NewMeter(second, 1<<20, -1).ReadAll(context.Background(), bytes.NewReader(body))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	first.Close()
	first.Close() // twice is fine
	if err := <-done; err != nil {
		t.Fatalf("second reader after the first closed: %v", err)
	}
	if _, err := NewMeter(nil, 0, -1).ReadAll(context.Background(), io.LimitReader(zeros{}, 3<<20)); err != nil {
		t.Fatalf("no account, no limit: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestPrepay: a prepaid account's meters draw on what it prepaid and take
// nothing more from the budget until it is used up; Close gives all of
// it back.
func TestPrepay(t *testing.T) {
	b := New(4<<20, 100*time.Millisecond)
	a := b.Open()
	if err := a.Prepay(context.Background(), 3<<20); err != nil {
		t.Fatal(err)
	}
	other := b.Open()
	defer other.Close()
	if err := other.Prepay(context.Background(), 2<<20); !errors.Is(err, ErrBusy) {
		t.Fatalf("second prepay over the budget: %v; want ErrBusy", err)
	}
	body := bytes.Repeat([]byte("x"), 2<<20)
	if _, err := NewMeter(a, 2<<20, int64(len(body))).ReadAll(context.Background(), bytes.NewReader(body)); err != nil {
		t.Fatalf("read within the prepaid room: %v", err)
	}
	if a.Held() != 3<<20 {
		t.Errorf("held %d after reading 2 MiB of 3 MiB prepaid; want 3 MiB", a.Held())
	}
	if _, err := NewMeter(a, 2<<20, int64(len(body))).ReadAll(context.Background(), bytes.NewReader(body)); err != nil {
		t.Fatalf("read past the prepaid room: %v", err)
	}
	if a.Held() != 4<<20 {
		t.Errorf("held %d after 4 MiB read on 3 MiB prepaid; want 4 MiB", a.Held())
	}
	a.Close()
	if err := other.Prepay(context.Background(), 4<<20); err != nil {
		t.Errorf("the whole budget after Close: %v", err)
	}
}
