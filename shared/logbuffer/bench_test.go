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

// BenchmarkEncode compares encode with the reflection-driven encoder it
// replaced (reference) on the benchmark's entry.
func BenchmarkEncode(b *testing.B) {
	e := entry(1)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encode(e)
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reference(b, e)
		}
	})
}
