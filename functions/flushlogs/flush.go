package flushlogs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/firestore"

	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Options tune a Flusher. Zero values take the defaults named.
type Options struct {
	// Budget is how long a run may copy before it stops starting new
	// groups; keep it well below the function's timeout. Default 45 s.
	Budget time.Duration
	// GroupSize is how many batch documents one transaction copies.
	// Default 20 (up to 10,000 entries at the buffer's default batch size).
	GroupSize int
	// LogRetention is how long request log rows are kept. Default 90 days.
	LogRetention time.Duration
	// DedupeRetention is how long the IDs of copied batches are kept.
	// A batch document is deleted right after its copy commits, so only a
	// delete that failed for this long could let a copy repeat. Default 14 days.
	DedupeRetention time.Duration
	// RetentionChunk bounds the rows one retention statement deletes, so
	// that no statement holds locks or WAL for long. Default 5,000.
	RetentionChunk int
	// Logger receives the run report and batches set aside; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Report is the outcome of a run, answered as JSON and logged.
type Report struct {
	// Skipped says why the run did nothing (another run held the lock).
	Skipped string `json:"skipped,omitempty"`
	// Batches and Entries count what this run copied.
	Batches int `json:"batches"`
	Entries int `json:"entries"`
	// Duplicates counts batch documents an earlier run had copied but not
	// deleted; they were deleted without a second copy.
	Duplicates int `json:"duplicates"`
	// SetAside counts documents moved aside, whole (they do not decode,
	// or Postgres refuses them) or in part (their invalid entries and
	// lastUsed keys, once the valid ones are copied); EntriesSetAside
	// counts the entry lines among them.
	SetAside        int `json:"setAside"`
	EntriesSetAside int `json:"entriesSetAside"`
	// Remaining is how many batch documents are left; -1 if unknown.
	Remaining int64 `json:"remaining"`
	// LogsDeleted, DedupeDeleted, ChangesDeleted and UsageDeleted count
	// rows removed by retention; OAuthDeleted the expired OAuth codes and
	// refresh tokens (the larger count of the two per step).
	LogsDeleted    int64 `json:"logsDeleted"`
	DedupeDeleted  int64 `json:"dedupeDeleted"`
	OAuthDeleted   int64 `json:"oauthDeleted"`
	ChangesDeleted int64 `json:"changesDeleted"`
	UsageDeleted   int64 `json:"usageDeleted"`
	// BudgetSpent is set when the run stopped because its budget ran out.
	BudgetSpent bool   `json:"budgetSpent,omitempty"`
	DurationMs  int64  `json:"durationMs"`
	Error       string `json:"error,omitempty"`
}

// Flusher copies request log batches from Firestore into Postgres.
type Flusher struct {
	db    *postgres.DB
	store *logbuffer.Firestore
	opts  Options
	// crash, when set, is called at each stage of a group ("copied": in
	// the transaction after the copy; "committed": after the commit,
	// before the documents are deleted). A non-nil error stops the run
	// there, as a crash would. Tests use it.
	crash func(stage string) error
}

// NewFlusher makes a Flusher.
func NewFlusher(db *postgres.DB, store *logbuffer.Firestore, opts Options) *Flusher {
	if opts.Budget <= 0 {
		opts.Budget = 45 * time.Second
	}
	if opts.GroupSize <= 0 {
		opts.GroupSize = 20
	}
	if opts.LogRetention <= 0 {
		opts.LogRetention = 90 * 24 * time.Hour
	}
	if opts.DedupeRetention <= 0 {
		opts.DedupeRetention = 14 * 24 * time.Hour
	}
	if opts.RetentionChunk <= 0 {
		opts.RetentionChunk = 5000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Flusher{db: db, store: store, opts: opts}
}

// Run flushes until no batch is left or the budget is spent, then applies
// retention. Another run holding the lock makes it return at once with
// Skipped set.
func (f *Flusher) Run(ctx context.Context) (rep Report, err error) {
	start := f.opts.Now()
	rep.Remaining = -1
	defer func() { rep.DurationMs = f.opts.Now().Sub(start).Milliseconds() }()

	pg, locked, err := f.db.LockFlush(ctx)
	if err != nil {
		return rep, err
	}
	if !locked {
		rep.Skipped = "another flush is running"
		return rep, nil
	}
	defer pg.Close()

	for {
		if f.opts.Now().Sub(start) >= f.opts.Budget {
			rep.BudgetSpent = true
			break
		}
		batches, refs, err := f.store.Oldest(ctx, f.opts.GroupSize)
		if err != nil {
			return rep, err
		}
		if len(batches) == 0 {
			break
		}
		if err := f.group(ctx, pg, batches, refs, &rep); err != nil {
			return rep, err
		}
		if len(batches) < f.opts.GroupSize {
			break
		}
	}
	if !rep.BudgetSpent {
		if err := f.retention(ctx, pg, start, &rep); err != nil {
			return rep, err
		}
	}
	if n, err := f.store.Count(ctx); err == nil {
		rep.Remaining = n
	} else {
		f.opts.Logger.Warn("cannot count the request log batches left", "error", err.Error())
	}
	return rep, nil
}

// item is a batch document read for copying: its valid entries and
// lastUsed keys, and what of it is set aside once they are copied.
type item struct {
	batch    *logbuffer.Batch
	ref      *firestore.DocumentRef
	entries  []tenant.LogEntry
	lastUsed map[string]time.Time
	badLines [][]byte
	badKeys  map[string]time.Time
	reasons  []string
}

// read splits a batch into what can be copied and what cannot: entry
// lines that do not decode or validate, lastUsed keys that are not UUIDs
// (the uuid cast of TouchKeys would fail the whole group on each run).
func read(b *logbuffer.Batch, ref *firestore.DocumentRef) *item {
	it := &item{batch: b, ref: ref, lastUsed: make(map[string]time.Time, len(b.LastUsed))}
	var rejected []logbuffer.Rejected
	it.entries, rejected = logbuffer.SplitEntries(b.Entries)
	for _, r := range rejected {
		it.badLines = append(it.badLines, r.Line)
		it.reasons = append(it.reasons, r.Reason)
	}
	for key, at := range b.LastUsed {
		if tenant.IsUUID(key) {
			it.lastUsed[key] = at
			continue
		}
		if it.badKeys == nil {
			it.badKeys = map[string]time.Time{}
		}
		it.badKeys[key] = at
		it.reasons = append(it.reasons, fmt.Sprintf("lastUsed key %q is not a UUID", key))
	}
	return it
}

// group copies one group of batches, then deletes their documents. A
// document that does not decode is set aside whole; the invalid entries
// and keys of one that does are set aside once its valid ones are copied.
func (f *Flusher) group(ctx context.Context, pg *postgres.Flush, batches []*logbuffer.Batch, refs []*firestore.DocumentRef, rep *Report) error {
	items := make([]*item, 0, len(batches))
	for i, b := range batches {
		if b.Invalid != "" {
			if err := f.setAside(ctx, refs[i], b.Invalid, 0, rep); err != nil {
				return err
			}
			continue
		}
		items = append(items, read(b, refs[i]))
	}
	return f.copyItems(ctx, pg, items, rep)
}

// copyItems copies items in one transaction. Should Postgres refuse their
// data all the same (a data or constraint error: an entry ID copied
// before, a value validation let through), the same group would fail on
// every run and block the flush: the items are then copied one by one,
// and one that Postgres refuses alone is set aside whole.
func (f *Flusher) copyItems(ctx context.Context, pg *postgres.Flush, items []*item, rep *Report) error {
	if len(items) == 0 {
		return nil
	}
	err := f.copyTx(ctx, pg, items, rep)
	if err == nil || !postgres.Refused(err) {
		return err
	}
	if len(items) > 1 {
		f.opts.Logger.Warn("Postgres refused a group of request log batches; copying them one by one", "error", err.Error())
		for _, it := range items {
			if err := f.copyItems(ctx, pg, []*item{it}, rep); err != nil {
				return err
			}
		}
		return nil
	}
	it := items[0]
	return f.setAside(ctx, it.ref, "refused by Postgres: "+err.Error(), len(it.entries)+len(it.badLines), rep)
}

// copyTx copies the items in one transaction, then deletes their
// documents, or moves what of them is invalid aside. A batch whose ID the
// dedupe table already holds was copied by an earlier run that stopped
// before deleting it.
func (f *Flusher) copyTx(ctx context.Context, pg *postgres.Flush, items []*item, rep *Report) error {
	ids := make([]string, len(items))
	counts := make([]int, len(items))
	for i, it := range items {
		ids[i], counts[i] = it.batch.ID, len(it.entries)
	}
	tx, err := pg.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	fresh, err := tx.Claim(ctx, ids, counts)
	if err != nil {
		return err
	}
	var rows []tenant.LogEntry
	lastUsed := map[string]time.Time{}
	// An entry ID met twice would fail the copy on the primary key: the
	// first is copied, a repeat is set aside with its batch.
	seen := map[string]bool{}
	repeats := map[*item][]tenant.LogEntry{}
	for _, it := range items {
		if !fresh[it.batch.ID] {
			continue
		}
		for _, e := range it.entries {
			if seen[e.ID] {
				repeats[it] = append(repeats[it], e)
				continue
			}
			seen[e.ID] = true
			rows = append(rows, e)
			if e.APIKeyID != "" && e.CreatedAt.After(lastUsed[e.APIKeyID]) {
				lastUsed[e.APIKeyID] = e.CreatedAt
			}
		}
		for key, at := range it.lastUsed {
			if at.After(lastUsed[key]) {
				lastUsed[key] = at
			}
		}
	}
	if err := tx.CopyEntries(ctx, rows); err != nil {
		return err
	}
	if err := f.stage("copied"); err != nil {
		return err
	}
	if err := tx.AddAggregates(ctx, rows); err != nil {
		return err
	}
	if err := tx.TouchKeys(ctx, lastUsed); err != nil {
		return err
	}
	if err := tx.AddUsage(ctx, rows); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	rep.Batches += len(fresh)
	rep.Entries += len(rows)
	rep.Duplicates += len(ids) - len(fresh)
	if err := f.stage("committed"); err != nil {
		return err
	}
	var done []*firestore.DocumentRef
	for _, it := range items {
		lines, reasons := it.badLines, it.reasons
		for _, e := range repeats[it] {
			line, _ := json.Marshal(e)
			lines = append(lines, line)
			reasons = append(reasons, fmt.Sprintf("entry %q repeats an entry copied in the same run", e.ID))
		}
		if len(reasons) == 0 {
			done = append(done, it.ref)
			continue
		}
		f.opts.Logger.Error("request log batch copied in part; setting the rest aside", "batch", it.batch.ID,
			"entriesCopied", len(it.entries)-len(repeats[it]), "entriesSetAside", len(lines),
			"lastUsedKeysSetAside", len(it.badKeys), "reasons", reasons)
		if err := f.store.SetAsidePart(ctx, it.ref, it.batch, lines, it.badKeys, reasons); err != nil {
			return err
		}
		rep.SetAside++
		rep.EntriesSetAside += len(lines)
	}
	return f.store.Delete(ctx, done)
}

// setAside moves a whole batch document aside, counted and logged.
func (f *Flusher) setAside(ctx context.Context, ref *firestore.DocumentRef, reason string, entries int, rep *Report) error {
	f.opts.Logger.Error("request log batch cannot be copied; setting it aside", "batch", ref.ID, "entries", entries, "error", reason)
	if err := f.store.SetAside(ctx, ref, reason); err != nil {
		return err
	}
	rep.SetAside++
	rep.EntriesSetAside += entries
	return nil
}

func (f *Flusher) stage(name string) error {
	if f.crash == nil {
		return nil
	}
	return f.crash(name)
}

// retention deletes request logs, dedupe rows, the change feed's rows and
// daily call counts past their age, a chunk
// per statement, while the budget lasts.
func (f *Flusher) retention(ctx context.Context, pg *postgres.Flush, start time.Time, rep *Report) error {
	now := f.opts.Now()
	jobs := []struct {
		delete func(ctx context.Context, before time.Time, limit int) (int64, error)
		before time.Time
		count  *int64
	}{
		{pg.DeleteLogs, now.Add(-f.opts.LogRetention), &rep.LogsDeleted},
		{pg.DeleteClaims, now.Add(-f.opts.DedupeRetention), &rep.DedupeDeleted},
		{pg.DeleteOAuthExpired, now, &rep.OAuthDeleted},
		{pg.DeleteChanges, now.Add(-postgres.ChangeRetention), &rep.ChangesDeleted},
		{pg.DeleteUsage, now.Add(-postgres.UsageRetention), &rep.UsageDeleted},
	}
	for _, job := range jobs {
		for {
			if f.opts.Now().Sub(start) >= f.opts.Budget {
				rep.BudgetSpent = true
				return nil
			}
			n, err := job.delete(ctx, job.before, f.opts.RetentionChunk)
			if err != nil {
				return err
			}
			*job.count += n
			if n < int64(f.opts.RetentionChunk) {
				break
			}
		}
	}
	return nil
}
