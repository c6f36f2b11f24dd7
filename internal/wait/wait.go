// Package wait polls a condition until it holds: a service that is
// starting, or a background goroutine a test waits for.
package wait

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Until polls ready every 100 ms until it reports true, limit passes or
// ctx ends.
func Until(ctx context.Context, limit time.Duration, ready func() bool) error {
	return poll(ctx, limit, 100*time.Millisecond, ready)
}

// For polls cond every 5 ms and fails the test when it has not held
// within limit; what names the awaited event in the failure.
func For(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	if err := poll(context.Background(), limit, 5*time.Millisecond, cond); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

func poll(ctx context.Context, limit, every time.Duration, ready func() bool) error {
	deadline := time.Now().Add(limit)
	for !ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}
