package logging

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

func benchLine(b *testing.B, h slog.Handler) {
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		attrs := []slog.Attr{
			slog.String("method", "tools/call"), slog.String("status", "success"), slog.Int("httpStatus", 200),
			slog.Int64("durationMs", 3), slog.String("requestId", "0123456789abcdef0123456789abcdef"),
			slog.Int("inputBytes", 180), slog.Int("outputBytes", 120), slog.String("keyCache", "hit"),
			slog.String("instance", "3b9d7c1e-9f0e-4e8e-a1a2-6c3d2e1f0a9b"), slog.String("apiKeyId", "3b9d7c1e-9f0e-4e8e-a1a2-6c3d2e1f0a9c"),
			slog.String("configCache", "hit"), slog.String("tool", "demo__echo"), slog.String("upstream", "demo"), slog.String("protocolVersion", "2025-06-18"),
		}
		rec := slog.NewRecord(time.Now(), slog.LevelInfo, "mcp request", 0)
		rec.AddAttrs(attrs...)
		h.Handle(ctx, rec)
	}
}

// BenchmarkRequestLine writes a line like the proxy's per request, against
// slog's JSONHandler as it is, which writes the same line with slog's
// key names.
func BenchmarkRequestLine(b *testing.B) {
	b.Run("cloud", func(b *testing.B) { benchLine(b, New(io.Discard, slog.LevelInfo).Handler()) })
	b.Run("slog", func(b *testing.B) { benchLine(b, slog.NewJSONHandler(io.Discard, nil)) })
}
