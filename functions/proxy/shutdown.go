package proxy

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy/configcache"
	"mcpproxy.dev/mcpproxy/shared/logging"
)

// Shutdown stops taking requests (new ones are answered 503 with
// Retry-After), waits for those being served for up to half of what is
// left of ctx, writes out the request log, and closes the upstream
// sessions. It returns the request log's error when entries could not be
// written before ctx ended.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.drain.Store(true)
	wait := time.Second
	if deadline, ok := ctx.Deadline(); ok {
		wait = time.Until(deadline) / 2
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// The request calling Shutdown (if any) is not waited for.
	for h.inflight.Load() > 0 && waitCtx.Err() == nil {
		select {
		case <-waitCtx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	if n := h.inflight.Load(); n > 0 {
		h.log.Warn("shutting down with requests still in flight", "inflight", n)
	}
	var err error
	if h.opts.RequestLog != nil {
		err = h.opts.RequestLog.Drain(ctx)
	}
	h.pool.Close()
	logging.Flush(h.log)
	return err
}

// maybeLogFigures logs the process figures when FiguresInterval has
// passed since they were last logged. It runs on the request path, so
// that the figures come while the process serves and has CPU.
func (h *Handler) maybeLogFigures() {
	now := h.opts.Now().UnixNano()
	last := h.lastFigures.Load()
	if last == 0 {
		// The first request of the process starts the interval.
		h.lastFigures.CompareAndSwap(0, now)
		return
	}
	if now-last < int64(h.opts.FiguresInterval) || !h.lastFigures.CompareAndSwap(last, now) {
		return
	}
	h.log.LogAttrs(context.Background(), slog.LevelInfo, "process figures", h.figures()...)
}

// figures are the inputs of the operating KPIs: Postgres pool use, cache
// sizes and hit rates, the request log buffer, memory and goroutines.
func (h *Handler) figures() []slog.Attr {
	var attrs []slog.Attr
	if h.opts.DBStats != nil {
		st := h.opts.DBStats()
		attrs = append(attrs, slog.Group("dbPool",
			slog.Int("acquired", int(st.Acquired)), slog.Int("idle", int(st.Idle)),
			slog.Int("total", int(st.Total)), slog.Int("max", int(st.Max)),
			slog.Float64("use", float64(st.Acquired)/float64(max(st.Max, 1))),
			slog.Int64("emptyAcquires", st.EmptyAcquires),
			slog.Int64("acquireWaitMs", st.AcquireWait.Milliseconds())))
	}
	for _, c := range []struct {
		name  string
		stats configcache.Stats
	}{{"keyCache", h.keys.Stats()}, {"configCache", h.views.Stats()}, {"toolsCache", h.tools.Stats()}} {
		st, rate := c.stats, 0.0
		if st.Hits+st.Misses > 0 {
			rate = float64(st.Hits) / float64(st.Hits+st.Misses)
		}
		attrs = append(attrs, slog.Group(c.name, slog.Int("size", st.Size), slog.Int64("hits", st.Hits),
			slog.Int64("misses", st.Misses), slog.Float64("hitRate", rate), slog.Int64("stale", st.Stale),
			slog.Int64("refreshErrors", st.RefreshErrors)))
	}
	if h.opts.Feed != nil {
		attrs = append(attrs, h.feedFigures())
	}
	if h.opts.RequestLog != nil {
		st := h.opts.RequestLog.Stats()
		attrs = append(attrs, slog.Group("requestLog", slog.Int("depth", st.Depth), slog.Int("bytes", st.Bytes),
			slog.Int64("written", st.Written), slog.Int64("dropped", st.Dropped),
			slog.Int64("batches", st.Batches), slog.Int64("failures", st.Failures)))
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	attrs = append(attrs, slog.Int64("heapBytes", int64(m.HeapAlloc)), slog.Int64("sysBytes", int64(m.Sys)),
		slog.Int("goroutines", runtime.NumGoroutine()), slog.Int64("inflight", h.inflight.Load()))
	return attrs
}
