package rendezvous

import (
	"context"

	"cloud.google.com/go/firestore"
)

// StallListener makes s's listeners never deliver a snapshot, as the
// emulator's listener now and then fails to deliver its first one.
func StallListener(s *Store) {
	s.snapshots = func(ctx context.Context, _ *firestore.DocumentRef) snapshotIterator {
		return stalled{ctx}
	}
}

type stalled struct{ ctx context.Context }

func (s stalled) Next() (*firestore.DocumentSnapshot, error) {
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

func (stalled) Stop() {}
