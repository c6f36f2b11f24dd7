package proxy

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// codeQuotaExceeded accompanies HTTP 429 when a key or its organization
// used up a quota; its data names the quota and when it resets.
const (
	codeQuotaExceeded   = -32006
	reasonQuotaExceeded = "quota_exceeded"
)

// QuotaSource is where a process reads the quota blocks in force when it
// starts reading the change feed (postgres.DB.QuotaBlocks). A ChangeFeed
// that is not one leaves quotas to the feed's changes alone.
type QuotaSource interface {
	QuotaBlocks(ctx context.Context) ([]postgres.QuotaBlock, error)
}

// quotaBlocks are the blocks a process knows of, by scope and ID. FlushLogs
// sets them (postgres.FlushTx.AddUsage) and the change feed brings them.
type quotaBlocks struct {
	n  atomic.Int64 // blocks held: 0 keeps the check off the request path
	mu sync.RWMutex
	m  map[string][]postgres.QuotaBlock // by the organization's or key's ID (UUIDs: no two alike)
}

func (q *quotaBlocks) apply(b postgres.QuotaBlock) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil {
		q.m = map[string][]postgres.QuotaBlock{}
	}
	blocks := slices.DeleteFunc(slices.Clone(q.m[b.ID]), func(x postgres.QuotaBlock) bool {
		return x.Scope == b.Scope && x.Period == b.Period
	})
	if b.Quota != 0 {
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		delete(q.m, b.ID)
	} else {
		q.m[b.ID] = blocks
	}
	q.n.Store(int64(len(q.m)))
}

// prune drops the blocks whose period has ended.
func (q *quotaBlocks) prune(now time.Time) {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, blocks := range q.m {
		if blocks = slices.DeleteFunc(blocks, func(b postgres.QuotaBlock) bool { return !now.Before(b.Until) }); len(blocks) == 0 {
			delete(q.m, id)
		} else {
			q.m[id] = blocks
		}
	}
	q.n.Store(int64(len(q.m)))
}

func (q *quotaBlocks) reset(blocks []postgres.QuotaBlock) {
	q.mu.Lock()
	q.m = nil
	q.n.Store(0)
	q.mu.Unlock()
	for _, b := range blocks {
		q.apply(b)
	}
}

// find returns the block of scope and id in force at now, the one that
// lasts longest.
func (q *quotaBlocks) find(scope, id string, now time.Time) (postgres.QuotaBlock, bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	var found postgres.QuotaBlock
	ok := false
	for _, b := range q.m[id] {
		if b.Scope == scope && now.Before(b.Until) && (!ok || b.Until.After(found.Until)) {
			found, ok = b, true
		}
	}
	return found, ok
}

// overQuota refuses a key whose quota, or whose organization's, is used
// up. With no block known to the process it costs one atomic load.
func (h *Handler) overQuota(key *tenant.Key) *rpcError {
	if h.quotas.n.Load() == 0 {
		return nil
	}
	now := h.opts.Now()
	if b, ok := h.quotas.find(postgres.QuotaKey, key.ID, now); ok {
		return quotaError("API key", b, now)
	}
	if b, ok := h.quotas.find(postgres.QuotaOrg, key.OrganizationID, now); ok {
		return quotaError("organization", b, now)
	}
	return nil
}

func quotaError(of string, b postgres.QuotaBlock, now time.Time) *rpcError {
	period := "daily"
	if b.Period == postgres.QuotaMonth {
		period = "monthly"
	}
	secs := max(1, int64(math.Ceil(b.Until.Sub(now).Seconds())))
	resets := b.Until.UTC().Format(time.RFC3339)
	e := newError(http.StatusTooManyRequests, codeQuotaExceeded,
		"the "+period+" quota of this "+of+" ("+strconv.FormatInt(b.Quota, 10)+" calls) is used up; it resets at "+resets)
	e.header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
	e.data = map[string]any{"reason": reasonQuotaExceeded, "quota": of + " calls per " + b.Period, "limit": b.Quota, "resetsAt": resets}
	e.quotaExceeded = true
	return e
}

// loadQuotas reads the blocks in force, when the feed can tell them.
func (h *Handler) loadQuotas(ctx context.Context) error {
	src, ok := h.opts.Feed.(QuotaSource)
	if !ok {
		return nil
	}
	blocks, err := src.QuotaBlocks(ctx)
	if err != nil {
		return err
	}
	h.quotas.reset(blocks)
	return nil
}
