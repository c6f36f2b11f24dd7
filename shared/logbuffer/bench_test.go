package logbuffer

import (
	"context"
	"testing"
)

type nullSink struct{}

func (nullSink) Write(context.Context, *Batch) error { return nil }

// BenchmarkAppend measures what the request path pays per entry: Kick
// and Append, with batches written to a sink that costs nothing.
func BenchmarkAppend(b *testing.B) {
	buf := New(nullSink{}, Options{})
	e := entry(1)
	e.ID = ""
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			buf.Kick()
			buf.Append(e)
		}
	})
}
