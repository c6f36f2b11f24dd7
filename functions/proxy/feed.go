package proxy

import (
	"context"
	"encoding/hex"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// ChangeFeed is what the proxy reads of Postgres's change feed
// (shared/postgres/changes.go): the operator's changes, in commit order.
type ChangeFeed interface {
	ChangesSince(ctx context.Context, after int64, limit int) ([]postgres.Change, error)
	LastChange(ctx context.Context) (int64, error)
}

// feedPage is how many changes one statement reads; a process that finds
// more than feedPages of them at once drops its caches instead.
const (
	feedPage  = 500
	feedPages = 20
)

// feed is a process's place in the change feed.
type feed struct {
	cursor  atomic.Int64 // id of the last change applied; -1 before the first read
	lastTry atomic.Int64 // unix nanoseconds of the last poll started
	lastOK  atomic.Int64 // unix nanoseconds of the last poll that succeeded
	polling atomic.Bool
	blind   atomic.Bool // the caches run on FeedFallbackTTL
	polls   atomic.Int64
	errors  atomic.Int64
	applied atomic.Int64 // changes read
}

// PrimeFeed starts the process's reading of the change feed after its
// newest change. It is called once, when the handler is built, before
// anything is cached; without it (or when it fails) the first poll
// starts there and drops what was cached before.
func (h *Handler) PrimeFeed(ctx context.Context) error {
	if h.opts.Feed == nil {
		return nil
	}
	id, err := h.opts.Feed.LastChange(ctx)
	if err != nil {
		return err
	}
	// The blocks read after the cursor: a block set in between comes
	// again with the feed.
	if err := h.loadQuotas(ctx); err != nil {
		return err
	}
	if h.feed.cursor.CompareAndSwap(-1, id) {
		now := h.opts.Now().UnixNano()
		h.feed.lastOK.Store(now)
		h.feed.lastTry.Store(now)
	}
	return nil
}

// maybePollFeed starts a background read of the change feed when the
// last one began CONFIG_POLL ago or more. It runs from the housekeeping
// middleware: only while requests come, never in a request's way.
func (h *Handler) maybePollFeed() {
	if h.opts.Feed == nil {
		return
	}
	now := h.opts.Now().UnixNano()
	last := h.feed.lastTry.Load()
	if now-last < int64(h.opts.ConfigPoll) || !h.feed.lastTry.CompareAndSwap(last, now) {
		return
	}
	// The process may have been idle (or its CPU throttled) since it
	// last read the feed: until it reads it again, its caches hold what
	// they held before the feed, the fallback TTL.
	h.checkBlind(now)
	if !h.feed.polling.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.feed.polling.Store(false)
		h.pollFeed()
	}()
}

// checkBlind switches the key and instance caches to FeedFallbackTTL
// once the feed has not been read for FeedMissedPolls intervals.
func (h *Handler) checkBlind(now int64) {
	if now-h.feed.lastOK.Load() <= int64(h.opts.FeedMissedPolls)*int64(h.opts.ConfigPoll) || h.feed.blind.Swap(true) {
		return
	}
	h.keys.SetShortTTL(h.opts.FeedFallbackTTL)
	h.views.SetShortTTL(h.opts.FeedFallbackTTL)
	h.grants.SetShortTTL(h.opts.FeedFallbackTTL)
	h.log.Warn("change feed not read lately; caches fall back to a short TTL",
		"fallbackTtl", h.opts.FeedFallbackTTL.String(), "sinceLastReadMs", time.Duration(now-h.feed.lastOK.Load()).Milliseconds())
}

// pollFeed reads the changes after the cursor and drops what they name.
func (h *Handler) pollFeed() {
	now := h.opts.Now().UnixNano()
	h.keyBuckets.prune(now)
	h.instanceBuckets.prune(now)
	h.quotas.prune(time.Unix(0, now))
	ctx, cancel := context.WithTimeout(context.Background(), max(h.opts.ConfigPoll, 2*time.Second))
	defer cancel()
	h.feed.polls.Add(1)
	if err := h.readFeed(ctx); err != nil {
		h.feed.errors.Add(1)
		h.checkBlind(h.opts.Now().UnixNano())
		h.log.Warn("change feed read failed", "error", err.Error())
		return
	}
	h.feed.lastOK.Store(h.opts.Now().UnixNano())
	if h.feed.blind.Swap(false) {
		h.keys.SetShortTTL(0)
		h.views.SetShortTTL(0)
		h.grants.SetShortTTL(0)
		h.log.Info("change feed read again; caches back on their TTL")
	}
}

func (h *Handler) readFeed(ctx context.Context) error {
	cursor := h.feed.cursor.Load()
	if cursor < 0 || h.opts.Now().UnixNano()-h.feed.lastOK.Load() > int64(postgres.FeedTrust) {
		// Never read, or not for so long that the changes after the
		// cursor may be pruned (FlushLogs keeps a day of them).
		return h.restartFeed(ctx)
	}
	for range feedPages {
		changes, err := h.opts.Feed.ChangesSince(ctx, cursor, feedPage)
		if err != nil {
			return err
		}
		for _, c := range changes {
			h.applyChange(c)
			cursor = c.ID
		}
		h.feed.applied.Add(int64(len(changes)))
		h.feed.cursor.Store(cursor)
		if len(changes) < feedPage {
			return nil
		}
	}
	// More changes than a process reads in one go (a bulk edit): drop
	// everything rather than apply them page by page.
	return h.restartFeed(ctx)
}

// restartFeed starts reading after the newest change and drops every
// key and instance cached before, which may predate changes not read.
func (h *Handler) restartFeed(ctx context.Context) error {
	id, err := h.opts.Feed.LastChange(ctx)
	if err != nil {
		return err
	}
	if err := h.loadQuotas(ctx); err != nil {
		return err
	}
	h.keys.Purge()
	h.views.Purge()
	h.grants.Purge()
	h.feed.cursor.Store(id)
	h.log.Info("change feed read from its newest change; key and instance caches dropped", "cursor", id)
	return nil
}

// applyChange drops the cache entries a change names. The next request
// that needs one loads it anew; stale-if-error never serves it, since it
// is gone.
func (h *Handler) applyChange(c postgres.Change) {
	switch c.Kind {
	case postgres.ChangeKey:
		hash, err := hex.DecodeString(c.Ref)
		if err != nil || len(hash) != 32 {
			return
		}
		h.keys.Remove(string(hash))
	case postgres.ChangeInstance:
		h.views.Remove(c.Ref)
	case postgres.ChangeGrant:
		h.grants.Remove(c.Ref)
	case postgres.ChangeServer:
		h.views.RemoveIf(func(_ string, v *view) bool {
			return slices.ContainsFunc(v.inst.Upstreams, func(u tenant.Upstream) bool { return u.ServerID == c.Ref })
		})
	case postgres.ChangeQuota:
		if b, err := postgres.ParseQuotaBlock(c.Ref); err == nil {
			h.quotas.apply(b)
		}
	case postgres.ChangeConfig:
		h.views.RemoveIf(func(_ string, v *view) bool {
			return slices.ContainsFunc(v.inst.Upstreams, func(u tenant.Upstream) bool { return u.ConfigID == c.Ref })
		})
	default:
		// A kind this version does not know: drop what may depend on it.
		h.keys.Purge()
		h.views.Purge()
		h.grants.Purge()
	}
}

// feedFigures are the change feed's counts for the process figures.
func (h *Handler) feedFigures() slog.Attr {
	return slog.Group("changeFeed",
		slog.Int64("cursor", h.feed.cursor.Load()), slog.Int64("polls", h.feed.polls.Load()),
		slog.Int64("errors", h.feed.errors.Load()), slog.Int64("changes", h.feed.applied.Load()),
		slog.Bool("fallbackTtl", h.feed.blind.Load()))
}
