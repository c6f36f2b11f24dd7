package logbuffer

import (
	"context"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// stored reads every entry of a collection on the emulator and fails on a
// duplicate.
func stored(t *testing.T, f *Firestore) map[string]bool {
	t.Helper()
	batches, _, err := f.Oldest(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, b := range batches {
		es, err := DecodeEntries(b.Entries)
		if err != nil {
			t.Fatalf("batch %s: %v", b.ID, err)
		}
		if len(es) != b.Count {
			t.Errorf("batch %s holds %d entries; count says %d", b.ID, len(es), b.Count)
		}
		for _, e := range es {
			if ids[e.ID] {
				t.Errorf("entry %s stored twice", e.ID)
			}
			ids[e.ID] = true
		}
	}
	return ids
}

func TestFirestoreSink(t *testing.T) {
	ctx := context.Background()
	f := &Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}
	b := New(f, Options{})
	for i := range 30 {
		b.Append(entry(i))
	}
	if err := b.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	batches, refs, err := f.Oldest(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 1 || batches[0].Count != 30 || len(batches[0].LastUsed) != 3 || batches[0].CreatedAt.IsZero() {
		t.Fatalf("stored %d batches, first %+v; want one of 30 entries, 3 keys and a time", len(batches), batches[0])
	}
	// A retried write of a stored batch stores nothing new.
	if err := f.Write(ctx, batches[0]); err != nil {
		t.Errorf("rewrite of a stored batch: %v; want success", err)
	}
	if n, err := f.Count(ctx); err != nil || n != 1 {
		t.Errorf("count = %d, %v; want 1", n, err)
	}
	if err := f.Delete(ctx, refs); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Count(ctx); err != nil || n != 0 {
		t.Errorf("count after delete = %d, %v; want 0", n, err)
	}
}

// TestFirestoreOutage cuts the network to the emulator during traffic:
// every entry accepted while it is down reaches Firestore once it is back,
// and what the bound refused is exactly what the drop counter says.
func TestFirestoreOutage(t *testing.T) {
	host := firestoretest.Host(t)
	relay := firestoretest.NewRelay(t, host)
	coll := firestoretest.Collection(t)
	f := &Firestore{Client: firestoretest.Client(t, relay.Addr()), Collection: coll}
	line := encode(entry(0))
	const bound = 300
	b := New(f, Options{BatchEntries: 50, MaxAge: 50 * time.Millisecond, MaxBytes: bound * (len(line) + 1),
		WriteTimeout: time.Second, MaxBackoff: 300 * time.Millisecond})

	accepted := map[string]bool{}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			e := entry(i)
			if b.Append(e) {
				accepted[e.ID] = true
			}
			b.Kick()
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	send(0, 100)
	wait.For(t, "the first entries to be written", 10*time.Second, func() bool { return b.Stats().Written == 100 })

	relay.Cut()
	send(100, 250) // fewer than the bound: all must survive
	if s := b.Stats(); s.Dropped != 0 {
		t.Fatalf("dropped %d below the bound", s.Dropped)
	}
	send(250, 600) // past the bound
	wait.For(t, "failed writes", 10*time.Second, func() bool { return b.Stats().Failures > 0 })
	dropped := b.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped past the bound")
	}
	relay.Restore()
	wait.For(t, "the backlog to be written after the outage", 10*time.Second, func() bool { return b.Stats().Depth == 0 })

	check := &Firestore{Client: firestoretest.Client(t, host), Collection: coll}
	got := stored(t, check)
	for id := range accepted {
		if !got[id] {
			t.Errorf("accepted entry %s is not in Firestore", id)
		}
	}
	if missing := int64(600 - len(got)); missing != dropped {
		t.Errorf("%d entries missing from Firestore; the drop counter says %d", missing, dropped)
	}
	if s := b.Stats(); s.Appended != 600 || s.Written+s.Dropped != 600 {
		t.Errorf("stats %+v; want 600 appended = written + dropped", s)
	}
}
