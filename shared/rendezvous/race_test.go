package rendezvous_test

import (
	"context"
	"testing"
	"time"
)

// TestAnswerAtOnce writes answers while the waiter is still setting up
// its listener, within 0 to 14 ms of its start: every one is delivered.
// (On the emulator a listener missed about one in a hundred of these, and
// a create that met a read of the document failed now and then.)
func TestAnswerAtOnce(t *testing.T) {
	for name, s := range stores(t) {
		for i := range 150 {
			id := newID()
			done := make(chan error, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			go func() { _, err := s.Wait(ctx, id, "k"); done <- err }()
			time.Sleep(time.Duration(i%15) * time.Millisecond)
			if err := s.Answer(context.Background(), id, "k", []byte(`{}`), time.Now().Add(time.Minute)); err != nil {
				t.Fatalf("%s, answer %d: %v", name, i, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("%s, answer %d after %d ms: %v", name, i, i%15, err)
			}
			cancel()
		}
	}
}
