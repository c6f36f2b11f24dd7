package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// flushLockKey is the advisory lock of the request log flush ("mcpflush").
const flushLockKey int64 = 0x6d6370666c757368

// Flush is one run of the request log flush: a connection of its own that
// holds the flush's session advisory lock, so that one run at a time
// copies, whatever the number of function instances. Its statements run on
// that connection; it is not safe for concurrent use. Close it when done.
type Flush struct {
	conn *pgxpool.Conn
}

// LockFlush takes a connection and tries the flush lock. ok is false, and
// f nil, when another run holds it.
func (db *DB) LockFlush(ctx context.Context) (f *Flush, ok bool, err error) {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("flush: connect to Postgres: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", flushLockKey).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("flush: take the lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return &Flush{conn: conn}, true, nil
}

// Close releases the lock and the connection. It is safe to call twice.
func (f *Flush) Close() {
	if f.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", flushLockKey); err != nil {
		// A session lock lives as long as its connection: close it
		// rather than hand a locked connection back to the pool.
		f.conn.Conn().Close(ctx)
	}
	f.conn.Release()
	f.conn = nil
}

// Begin starts the transaction that copies one group of batches: Claim,
// CopyEntries, AddAggregates and TouchKeys, then Commit. Until Commit
// returns nil none of it is stored.
func (f *Flush) Begin(ctx context.Context) (*FlushTx, error) {
	tx, err := f.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("flush: begin: %w", err)
	}
	return &FlushTx{tx: tx}, nil
}

// FlushTx is the transaction of one group of batches.
type FlushTx struct {
	tx pgx.Tx
}

// Commit stores the group.
func (t *FlushTx) Commit(ctx context.Context) error {
	if err := t.tx.Commit(ctx); err != nil {
		return fmt.Errorf("flush: commit: %w", err)
	}
	return nil
}

// Rollback drops the group unless it was committed; after Commit it does
// nothing, so that it can be deferred.
func (t *FlushTx) Rollback() {
	t.tx.Rollback(context.Background())
}

// Claim records the IDs of batches in the dedupe table, with entries[i]
// the entry count of ids[i], and returns those not recorded before. A
// batch already recorded was copied by an earlier run that stopped before
// deleting it: its entries must not be copied again.
func (t *FlushTx) Claim(ctx context.Context, ids []string, entries []int) (fresh map[string]bool, err error) {
	counts := make([]int32, len(entries))
	for i, n := range entries {
		counts[i] = int32(min(n, 1<<31-1))
	}
	rows, err := t.tx.Query(ctx, `
INSERT INTO log_flush_batches (batch_id, entries)
SELECT * FROM unnest($1::text[], $2::int[])
ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id`, ids, counts)
	if err != nil {
		return nil, fmt.Errorf("flush: record batches: %w", err)
	}
	fresh = map[string]bool{}
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
	"duration_ms", "input_bytes", "output_bytes", "user_agent", "created_at", "oauth_grant_id"}

// CopyEntries adds the entries to the request log with COPY: one round
// trip for thousands of rows, where INSERTs would take one each or a
// statement per few hundred. The entries must be valid (LogEntry.Validate)
// and their IDs new; Postgres refuses the whole copy otherwise (see
// Refused).
func (t *FlushTx) CopyEntries(ctx context.Context, entries []tenant.LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	src := pgx.CopyFromSlice(len(entries), func(i int) ([]any, error) {
		e := &entries[i]
		return []any{e.ID, e.RequestID, e.UserID, nullable(e.OrganizationID), e.InstanceID, nullable(e.APIKeyID),
			e.Method, e.ToolName, e.Transport, e.Status, nullable(e.ErrorCode), nullable(e.ErrorMessage),
			int32(min(e.DurationMs, 1<<31-1)), int32(min(e.InputBytes, 1<<31-1)), int32(min(e.OutputBytes, 1<<31-1)),
			nullable(e.UserAgent), e.CreatedAt, nullable(e.GrantID)}, nil
	})
	if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{"mcp_server_request_logs"}, logColumns, src); err != nil {
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

// AddAggregates adds the entries to the hourly aggregates in one
// statement: the sums are made here, so Postgres upserts one row per
// hour, instance, tool, method and status rather than one per entry.
func (t *FlushTx) AddAggregates(ctx context.Context, entries []tenant.LogEntry) error {
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
	_, err := t.tx.Exec(ctx, `
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

// TouchKeys moves each key's last_used_at forward to the time given,
// never back: batches are not copied in the order their requests were
// made. The key IDs must be UUIDs (tenant.IsUUID); one that is not fails
// the statement, and with it the transaction.
func (t *FlushTx) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	ids, times := make([]string, 0, len(lastUsed)), make([]time.Time, 0, len(lastUsed))
	for id, at := range lastUsed {
		ids, times = append(ids, id), append(times, at)
	}
	_, err := t.tx.Exec(ctx, `
UPDATE mcp_api_keys k SET last_used_at = GREATEST(k.last_used_at, v.at)
FROM unnest($1::text[], $2::timestamptz[]) AS v(id, at)
WHERE k.id = v.id::uuid`, ids, times)
	if err != nil {
		return fmt.Errorf("flush: update last_used_at: %w", err)
	}
	return nil
}

// DeleteLogs deletes at most limit request log rows created before the
// time given, in one statement that holds locks and WAL only for that
// many, and returns how many it deleted.
func (f *Flush) DeleteLogs(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := f.conn.Exec(ctx, `DELETE FROM mcp_server_request_logs WHERE id IN (
    SELECT id FROM mcp_server_request_logs WHERE created_at < $1 LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("flush: retention of request logs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteClaims deletes at most limit rows of the dedupe table recorded
// before the time given and returns how many it deleted. Once a claim is
// gone, a batch document left behind with its ID would be copied again.
func (f *Flush) DeleteClaims(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := f.conn.Exec(ctx, `DELETE FROM log_flush_batches WHERE batch_id IN (
    SELECT batch_id FROM log_flush_batches WHERE flushed_at < $1 LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("flush: retention of copied batch IDs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteOAuthExpired deletes at most limit authorization codes and at
// most limit refresh tokens (by hash) that expired before the time given,
// and returns how many it deleted. Grants stay, revoked or not, for
// mcpadmin grant list.
func (f *Flush) DeleteOAuthExpired(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	for _, sql := range []string{
		`DELETE FROM oauth_codes WHERE code_hash IN (SELECT code_hash FROM oauth_codes WHERE expires_at < $1 LIMIT $2)`,
		`DELETE FROM oauth_refresh_tokens WHERE token_hash IN (SELECT token_hash FROM oauth_refresh_tokens WHERE expires_at < $1 LIMIT $2)`,
	} {
		tag, err := f.conn.Exec(ctx, sql, before, limit)
		if err != nil {
			return n, fmt.Errorf("flush: retention of expired OAuth codes and refresh tokens: %w", err)
		}
		n = max(n, tag.RowsAffected())
	}
	return n, nil
}

// Refused reports whether Postgres refused a statement for its data: a
// data exception (SQLSTATE class 22, such as a NUL byte in text) or an
// integrity constraint violation (class 23, such as a repeated key). The
// same data fails again however often it is retried; other errors (a
// lost connection, a timeout) may pass.
func Refused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}
