package flushlogs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// lockKey is the Postgres advisory lock of the flush ("mcpflush").
const lockKey int64 = 0x6d6370666c757368

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
	// LogsDeleted and DedupeDeleted count rows removed by retention.
	LogsDeleted   int64 `json:"logsDeleted"`
	DedupeDeleted int64 `json:"dedupeDeleted"`
	// BudgetSpent is set when the run stopped because its budget ran out.
	BudgetSpent bool   `json:"budgetSpent,omitempty"`
	DurationMs  int64  `json:"durationMs"`
	Error       string `json:"error,omitempty"`
}

// Flusher copies request log batches from Firestore into Postgres.
type Flusher struct {
	db    *pgxpool.Pool
	store *logbuffer.Firestore
	opts  Options
	// crash, when set, is called at each stage of a group ("copied": in
	// the transaction after the copy; "committed": after the commit,
	// before the documents are deleted). A non-nil error stops the run
	// there, as a crash would. Tests use it.
	crash func(stage string) error
}

// NewFlusher makes a Flusher.
func NewFlusher(db *pgxpool.Pool, store *logbuffer.Firestore, opts Options) *Flusher {
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

	conn, err := f.db.Acquire(ctx)
	if err != nil {
		return rep, fmt.Errorf("flush: connect to Postgres: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&locked); err != nil {
		return rep, fmt.Errorf("flush: take the lock: %w", err)
	}
	if !locked {
		rep.Skipped = "another flush is running"
		return rep, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
			// A session lock lives as long as its connection: close it
			// rather than hand a locked connection back to the pool.
			conn.Conn().Close(uctx)
		}
	}()

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
		if err := f.group(ctx, conn.Conn(), batches, refs, &rep); err != nil {
			return rep, err
		}
		if len(batches) < f.opts.GroupSize {
			break
		}
	}
	if !rep.BudgetSpent {
		if err := f.retention(ctx, conn.Conn(), start, &rep); err != nil {
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
// (the uuid cast of touchKeys would fail the whole group on each run).
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
func (f *Flusher) group(ctx context.Context, conn *pgx.Conn, batches []*logbuffer.Batch, refs []*firestore.DocumentRef, rep *Report) error {
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
	return f.copyItems(ctx, conn, items, rep)
}

// copyItems copies items in one transaction. Should Postgres refuse their
// data all the same (a data or constraint error: an entry ID copied
// before, a value validation let through), the same group would fail on
// every run and block the flush: the items are then copied one by one,
// and one that Postgres refuses alone is set aside whole.
func (f *Flusher) copyItems(ctx context.Context, conn *pgx.Conn, items []*item, rep *Report) error {
	if len(items) == 0 {
		return nil
	}
	err := f.copyTx(ctx, conn, items, rep)
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || !(strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")) {
		return err
	}
	if len(items) > 1 {
		f.opts.Logger.Warn("Postgres refused a group of request log batches; copying them one by one", "error", err.Error())
		for _, it := range items {
			if err := f.copyItems(ctx, conn, []*item{it}, rep); err != nil {
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
func (f *Flusher) copyTx(ctx context.Context, conn *pgx.Conn, items []*item, rep *Report) error {
	ids := make([]string, len(items))
	counts := make([]int32, len(items))
	for i, it := range items {
		ids[i], counts[i] = it.batch.ID, int32(len(it.entries))
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("flush: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	fresh, err := claim(ctx, tx, ids, counts)
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
	if err := copyRows(ctx, tx, rows); err != nil {
		return err
	}
	if err := f.stage("copied"); err != nil {
		return err
	}
	if err := addAggregates(ctx, tx, rows); err != nil {
		return err
	}
	if err := touchKeys(ctx, tx, lastUsed); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("flush: commit: %w", err)
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

// claim records the batch IDs and returns those not recorded before.
func claim(ctx context.Context, tx pgx.Tx, ids []string, counts []int32) (map[string]bool, error) {
	rows, err := tx.Query(ctx, `
INSERT INTO log_flush_batches (batch_id, entries)
SELECT * FROM unnest($1::text[], $2::int[])
ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id`, ids, counts)
	if err != nil {
		return nil, fmt.Errorf("flush: record batches: %w", err)
	}
	fresh := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("flush: record batches: %w", err)
		}
		fresh[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("flush: record batches: %w", err)
	}
	return fresh, nil
}

var logColumns = []string{"id", "request_id", "user_id", "organization_id", "mcp_server_instance_id", "api_key_id",
	"method", "tool_name", "transport_type", "response_status", "error_code", "error_message",
	"duration_ms", "input_bytes", "output_bytes", "user_agent", "created_at"}

// copyRows loads the entries with COPY: one round trip for thousands of
// rows, where INSERTs would take one each or a statement per few hundred.
func copyRows(ctx context.Context, tx pgx.Tx, entries []tenant.LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	src := pgx.CopyFromSlice(len(entries), func(i int) ([]any, error) {
		e := &entries[i]
		return []any{e.ID, e.RequestID, e.UserID, nullable(e.OrganizationID), e.InstanceID, nullable(e.APIKeyID),
			e.Method, e.ToolName, e.Transport, e.Status, nullable(e.ErrorCode), nullable(e.ErrorMessage),
			int32(min(e.DurationMs, 1<<31-1)), int32(min(e.InputBytes, 1<<31-1)), int32(min(e.OutputBytes, 1<<31-1)),
			nullable(e.UserAgent), e.CreatedAt}, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"mcp_server_request_logs"}, logColumns, src); err != nil {
		return fmt.Errorf("flush: copy request logs: %w", err)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type hourKey struct {
	hour                          time.Time
	instance, tool, method, state string
}

type hourSums struct {
	count, errors, duration, in, out int64
	maxDuration                      int32
}

// addAggregates adds the entries to the hourly aggregates in one
// statement: the sums are made here, so Postgres upserts one row per
// hour, instance, tool, method and status rather than one per entry.
func addAggregates(ctx context.Context, tx pgx.Tx, entries []tenant.LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	sums := map[hourKey]*hourSums{}
	for i := range entries {
		e := &entries[i]
		k := hourKey{e.CreatedAt.UTC().Truncate(time.Hour), e.InstanceID, e.ToolName, e.Method, e.Status}
		s := sums[k]
		if s == nil {
			s = &hourSums{}
			sums[k] = s
		}
		s.count++
		if e.Status != tenant.StatusSuccess {
			s.errors++
		}
		s.duration += e.DurationMs
		s.maxDuration = max(s.maxDuration, int32(min(e.DurationMs, 1<<31-1)))
		s.in += e.InputBytes
		s.out += e.OutputBytes
	}
	n := len(sums)
	hours, instances, tools, methods, states := make([]time.Time, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	counts, errs, durations, maxes, ins, outs := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int32, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	for k, s := range sums {
		hours, instances, tools, methods, states = append(hours, k.hour), append(instances, k.instance), append(tools, k.tool), append(methods, k.method), append(states, k.state)
		counts, errs, durations, maxes, ins, outs = append(counts, s.count), append(errs, s.errors), append(durations, s.duration), append(maxes, s.maxDuration), append(ins, s.in), append(outs, s.out)
	}
	_, err := tx.Exec(ctx, `
INSERT INTO mcp_server_request_hourly AS h (hour, mcp_server_instance_id, tool_name, method, response_status,
    request_count, error_count, total_duration_ms, max_duration_ms, input_bytes, output_bytes)
SELECT hour, instance::uuid, tool, method, state, n, errs, dur, maxdur, inb, outb
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::bigint[], $7::bigint[], $8::bigint[], $9::int[], $10::bigint[], $11::bigint[])
     AS t(hour, instance, tool, method, state, n, errs, dur, maxdur, inb, outb)
ON CONFLICT (mcp_server_instance_id, hour, tool_name, method, response_status) DO UPDATE SET
    request_count     = h.request_count + excluded.request_count,
    error_count       = h.error_count + excluded.error_count,
    total_duration_ms = h.total_duration_ms + excluded.total_duration_ms,
    max_duration_ms   = GREATEST(h.max_duration_ms, excluded.max_duration_ms),
    input_bytes       = h.input_bytes + excluded.input_bytes,
    output_bytes      = h.output_bytes + excluded.output_bytes`,
		hours, instances, tools, methods, states, counts, errs, durations, maxes, ins, outs)
	if err != nil {
		return fmt.Errorf("flush: add hourly aggregates: %w", err)
	}
	return nil
}

// touchKeys moves each key's last_used_at forward, never back: batches
// are not copied in the order their requests were made.
func touchKeys(ctx context.Context, tx pgx.Tx, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	ids, times := make([]string, 0, len(lastUsed)), make([]time.Time, 0, len(lastUsed))
	for id, at := range lastUsed {
		ids, times = append(ids, id), append(times, at)
	}
	_, err := tx.Exec(ctx, `
UPDATE mcp_api_keys k SET last_used_at = GREATEST(k.last_used_at, v.at)
FROM unnest($1::text[], $2::timestamptz[]) AS v(id, at)
WHERE k.id = v.id::uuid`, ids, times)
	if err != nil {
		return fmt.Errorf("flush: update last_used_at: %w", err)
	}
	return nil
}

// retention deletes request logs and dedupe rows past their age, a chunk
// per statement, while the budget lasts.
func (f *Flusher) retention(ctx context.Context, conn *pgx.Conn, start time.Time, rep *Report) error {
	now := f.opts.Now()
	jobs := []struct {
		sql    string
		before time.Time
		count  *int64
	}{
		{`DELETE FROM mcp_server_request_logs WHERE id IN (
    SELECT id FROM mcp_server_request_logs WHERE created_at < $1 LIMIT $2)`, now.Add(-f.opts.LogRetention), &rep.LogsDeleted},
		{`DELETE FROM log_flush_batches WHERE batch_id IN (
    SELECT batch_id FROM log_flush_batches WHERE flushed_at < $1 LIMIT $2)`, now.Add(-f.opts.DedupeRetention), &rep.DedupeDeleted},
	}
	for _, job := range jobs {
		for {
			if f.opts.Now().Sub(start) >= f.opts.Budget {
				rep.BudgetSpent = true
				return nil
			}
			tag, err := conn.Exec(ctx, job.sql, job.before, f.opts.RetentionChunk)
			if err != nil {
				return fmt.Errorf("flush: retention: %w", err)
			}
			*job.count += tag.RowsAffected()
			if tag.RowsAffected() < int64(f.opts.RetentionChunk) {
				break
			}
		}
	}
	return nil
}
