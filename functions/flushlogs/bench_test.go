package flushlogs

import (
	"context"
	"testing"
	"time"
)

// BenchmarkFlush measures how fast a flush moves entries from the
// Firestore emulator into Postgres: each iteration stores 20,000 entries
// in batches of 500 (not timed), then flushes them (timed). It reports
// entries/s and checks that every entry arrived.
//
//	make bench-flush
func BenchmarkFlush(b *testing.B) {
	const perRun, batch = 20000, 500
	w := newWorld(b)
	f := w.flusher(Options{})
	total, runs := 0, 0
	var spent time.Duration
	for b.Loop() {
		b.StopTimer()
		w.write(b, perRun, batch)
		b.StartTimer()
		start := time.Now()
		rep, err := f.Run(context.Background())
		spent += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Entries != perRun {
			b.Fatalf("flushed %d entries; want %d", rep.Entries, perRun)
		}
		total += rep.Entries
		runs++
	}
	b.ReportMetric(float64(total)/spent.Seconds(), "entries/s")
	w.verify(b, total)
}
