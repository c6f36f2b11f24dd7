package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Quota is calls a day and a month (UTC) of an organization or an API
// key; 0 is no quota.
type Quota struct {
	PerDay   int64 `json:"calls_per_day"`
	PerMonth int64 `json:"calls_per_month"`
}

// Quota scopes and periods.
const (
	QuotaOrg   = "org"
	QuotaKey   = "key"
	QuotaDay   = "day"
	QuotaMonth = "month"
)

// QuotaBlock says that an organization or a key used up a quota: its calls
// are refused until Until, the end of the quota's UTC day or month.
type QuotaBlock struct {
	Scope  string    `json:"scope"`  // QuotaOrg or QuotaKey
	ID     string    `json:"id"`     // the organization's or the key's
	Period string    `json:"period"` // QuotaDay or QuotaMonth
	Quota  int64     `json:"quota"`  // 0: the block is lifted
	Until  time.Time `json:"until"`
}

// Ref is the block as the change feed carries it:
// scope:id:period:quota:until (unix seconds); quota 0 lifts the block.
func (b QuotaBlock) Ref() string {
	return b.Scope + ":" + b.ID + ":" + b.Period + ":" + strconv.FormatInt(b.Quota, 10) + ":" + strconv.FormatInt(b.Until.Unix(), 10)
}

// ParseQuotaBlock reads a change feed's ref of kind ChangeQuota.
func ParseQuotaBlock(ref string) (QuotaBlock, error) {
	f := strings.Split(ref, ":")
	if len(f) != 5 || (f[0] != QuotaOrg && f[0] != QuotaKey) || (f[2] != QuotaDay && f[2] != QuotaMonth) {
		return QuotaBlock{}, fmt.Errorf("bad quota change %q", ref)
	}
	q, err1 := strconv.ParseInt(f[3], 10, 64)
	until, err2 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return QuotaBlock{}, fmt.Errorf("bad quota change %q: %w", ref, err)
	}
	return QuotaBlock{Scope: f[0], ID: f[1], Period: f[2], Quota: q, Until: time.Unix(until, 0).UTC()}, nil
}

// ChangeQuota is the change feed's kind for a quota block set or lifted;
// its Ref is QuotaBlock.Ref.
const ChangeQuota = "quota"

// evaluateQuotasSQL records a block for each key ($1) and organization
// ($2) whose calls of the UTC day or month (usage_calls) reached its
// quota, and a change feed row for each block new or moved.
const evaluateQuotasSQL = `
WITH n AS (
    SELECT (now() AT TIME ZONE 'UTC')::date AS today, date_trunc('month', now() AT TIME ZONE 'UTC')::date AS month_start
), used AS (
    SELECT u.scope, u.id, sum(u.calls) FILTER (WHERE u.day = n.today) AS day_calls, sum(u.calls) AS month_calls
    FROM usage_calls u, n
    WHERE u.day >= n.month_start
      AND ((u.scope = 'key' AND u.id = ANY($1::uuid[])) OR (u.scope = 'org' AND u.id = ANY($2::uuid[])))
    GROUP BY u.scope, u.id
), limits AS (
    SELECT 'key' AS scope, id, quota_calls_per_day AS per_day, quota_calls_per_month AS per_month
    FROM mcp_api_keys WHERE id = ANY($1::uuid[])
    UNION ALL
    SELECT 'org', id, quota_calls_per_day, quota_calls_per_month FROM organizations WHERE id = ANY($2::uuid[])
), over AS (
    SELECT l.scope, l.id, 'day' AS period, l.per_day AS quota, (n.today + 1)::timestamp AT TIME ZONE 'UTC' AS until
    FROM limits l JOIN used u USING (scope, id), n WHERE l.per_day IS NOT NULL AND u.day_calls >= l.per_day
    UNION ALL
    SELECT l.scope, l.id, 'month', l.per_month, (n.month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC'
    FROM limits l JOIN used u USING (scope, id), n WHERE l.per_month IS NOT NULL AND u.month_calls >= l.per_month
), ins AS (
    INSERT INTO quota_blocks AS b (scope, id, period, quota, until) SELECT scope, id, period, quota, until FROM over
    ON CONFLICT (scope, id, period) DO UPDATE SET quota = excluded.quota, until = excluded.until
    WHERE b.until IS DISTINCT FROM excluded.until OR b.quota <> excluded.quota
    RETURNING scope, id, period, quota, until
)
SELECT record_config_change('quota', scope || ':' || id::text || ':' || period || ':' || quota::text || ':' || extract(epoch FROM until)::bigint::text)
FROM ins`

// AddUsage counts the entries' calls per key and organization and UTC
// day, in the flush's transaction, and blocks those that reached a quota.
// Calls refused over a rate limit or a quota are not counted.
func (t *FlushTx) AddUsage(ctx context.Context, entries []tenant.LogEntry) error {
	type dayKey struct {
		scope, id string
		day       time.Time
	}
	calls := map[dayKey]int64{}
	keys, orgs := map[string]bool{}, map[string]bool{}
	for i := range entries {
		e := &entries[i]
		if e.Status == tenant.StatusRateLimited || e.Status == tenant.StatusQuotaExceeded {
			continue
		}
		day := e.CreatedAt.UTC().Truncate(24 * time.Hour)
		if tenant.IsUUID(e.APIKeyID) {
			calls[dayKey{QuotaKey, e.APIKeyID, day}]++
			keys[e.APIKeyID] = true
		}
		if tenant.IsUUID(e.OrganizationID) {
			calls[dayKey{QuotaOrg, e.OrganizationID, day}]++
			orgs[e.OrganizationID] = true
		}
	}
	if len(calls) == 0 {
		return nil
	}
	scopes, ids, days, counts := []string{}, []string{}, []string{}, []int64{}
	for k, n := range calls {
		scopes, ids, days, counts = append(scopes, k.scope), append(ids, k.id), append(days, k.day.Format(time.DateOnly)), append(counts, n)
	}
	if _, err := t.tx.Exec(ctx, `
INSERT INTO usage_calls AS u (scope, id, day, calls)
SELECT scope, id::uuid, day::date, n FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS t(scope, id, day, n)
ON CONFLICT (scope, id, day) DO UPDATE SET calls = u.calls + excluded.calls`, scopes, ids, days, counts); err != nil {
		return fmt.Errorf("flush: add usage: %w", err)
	}
	if _, err := t.tx.Exec(ctx, evaluateQuotasSQL, setKeys(keys), setKeys(orgs)); err != nil {
		return fmt.Errorf("flush: evaluate quotas: %w", err)
	}
	return nil
}

func setKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// SetQuota sets the quota of an organization (QuotaOrg) or a key
// (QuotaKey); zeros remove it. The blocks of the scope are lifted and
// evaluated again under the new quota, in the same transaction, and the
// proxies follow within CONFIG_POLL (the change feed).
func (db *DB) SetQuota(ctx context.Context, scope, id string, q Quota) error {
	if q.PerDay < 0 || q.PerMonth < 0 {
		return errors.New("a quota is not negative")
	}
	table := map[string]string{QuotaOrg: "organizations", QuotaKey: "mcp_api_keys"}[scope]
	if table == "" {
		return fmt.Errorf("unknown quota scope %q", scope)
	}
	if !validUUID(id) {
		return fmt.Errorf("%s %q: %w", scope, id, tenant.ErrNotFound)
	}
	null := func(n int64) *int64 {
		if n == 0 {
			return nil
		}
		return &n
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+table+` SET quota_calls_per_day = $2, quota_calls_per_month = $3, updated_at = now() WHERE id = $1`,
			id, null(q.PerDay), null(q.PerMonth))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s %s: %w", scope, id, tenant.ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `
WITH gone AS (DELETE FROM quota_blocks WHERE scope = $1 AND id = $2 RETURNING scope, id, period)
SELECT record_config_change('quota', scope || ':' || id::text || ':' || period || ':0:0') FROM gone`, scope, id); err != nil {
			return err
		}
		keys, orgs := []string{}, []string{}
		if scope == QuotaKey {
			keys = append(keys, id)
		} else {
			orgs = append(orgs, id)
		}
		_, err = tx.Exec(ctx, evaluateQuotasSQL, keys, orgs)
		return err
	})
	if err != nil {
		return fmt.Errorf("set quota of %s %s: %w", scope, id, err)
	}
	return nil
}

// QuotaBlocks returns the blocks in force: a proxy process loads them when
// it starts reading the change feed.
func (db *DB) QuotaBlocks(ctx context.Context) ([]QuotaBlock, error) {
	rows, _ := db.Pool.Query(ctx, `SELECT scope, id::text, period, quota, until FROM quota_blocks WHERE until > now()`)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (QuotaBlock, error) {
		var b QuotaBlock
		return b, r.Scan(&b.Scope, &b.ID, &b.Period, &b.Quota, &b.Until)
	})
	if err != nil {
		return nil, fmt.Errorf("read quota blocks: %w", err)
	}
	return out, nil
}

// QuotaUse is an organization's or a key's use against its quota.
type QuotaUse struct {
	Scope       string       `json:"scope"`
	ID          string       `json:"id"`
	Quota       Quota        `json:"quota"`
	CallsToday  int64        `json:"calls_today"`
	CallsMonth  int64        `json:"calls_this_month"`
	DayResets   time.Time    `json:"day_resets_at"`
	MonthResets time.Time    `json:"month_resets_at"`
	Blocks      []QuotaBlock `json:"blocks,omitempty"`
}

// QuotaUsage reports an organization's or a key's calls of the UTC day
// and month, as far as FlushLogs has counted them, against its quota.
func (db *DB) QuotaUsage(ctx context.Context, scope, id string) (QuotaUse, error) {
	u := QuotaUse{Scope: scope, ID: id}
	table := map[string]string{QuotaOrg: "organizations", QuotaKey: "mcp_api_keys"}[scope]
	if table == "" || !validUUID(id) {
		return u, fmt.Errorf("%s %q: %w", scope, id, tenant.ErrNotFound)
	}
	var day, month *int64
	err := db.Pool.QueryRow(ctx, `
SELECT q.quota_calls_per_day, q.quota_calls_per_month,
       COALESCE((SELECT sum(calls) FROM usage_calls WHERE scope = $1 AND id = $2 AND day = (now() AT TIME ZONE 'UTC')::date), 0)::bigint,
       COALESCE((SELECT sum(calls) FROM usage_calls WHERE scope = $1 AND id = $2 AND day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date), 0)::bigint,
       ((now() AT TIME ZONE 'UTC')::date + 1)::timestamp AT TIME ZONE 'UTC',
       (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
FROM `+table+` q WHERE q.id = $2`, scope, id).Scan(&day, &month, &u.CallsToday, &u.CallsMonth, &u.DayResets, &u.MonthResets)
	if err != nil {
		return u, notFoundIfNoRows(err, scope+" "+id)
	}
	if day != nil {
		u.Quota.PerDay = *day
	}
	if month != nil {
		u.Quota.PerMonth = *month
	}
	rows, _ := db.Pool.Query(ctx, `SELECT scope, id::text, period, quota, until FROM quota_blocks WHERE scope = $1 AND id = $2 AND until > now() ORDER BY period`, scope, id)
	u.Blocks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (QuotaBlock, error) {
		var b QuotaBlock
		return b, r.Scan(&b.Scope, &b.ID, &b.Period, &b.Quota, &b.Until)
	})
	return u, err
}

// UsageRetention is how long FlushLogs keeps the daily call counts: the
// current month's and the last whole one's.
const UsageRetention = 62 * 24 * time.Hour

// DeleteUsage deletes at most limit daily call counts of days before the
// time given, and the quota blocks whose period ended, and returns how
// many counts it deleted.
func (f *Flush) DeleteUsage(ctx context.Context, before time.Time, limit int) (int64, error) {
	if _, err := f.conn.Exec(ctx, `DELETE FROM quota_blocks WHERE until < now()`); err != nil {
		return 0, fmt.Errorf("flush: retention of quota blocks: %w", err)
	}
	tag, err := f.conn.Exec(ctx, `DELETE FROM usage_calls WHERE (scope, id, day) IN (
    SELECT scope, id, day FROM usage_calls WHERE day < $1::date LIMIT $2)`, before.UTC().Format(time.DateOnly), limit)
	if err != nil {
		return 0, fmt.Errorf("flush: retention of call counts: %w", err)
	}
	return tag.RowsAffected(), nil
}
