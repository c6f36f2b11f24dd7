package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Change is one row of the change feed (migration 00004): something an
// operator changed that proxy processes may hold in their warm caches.
type Change struct {
	ID   int64
	Kind string // ChangeKey, ChangeInstance, ChangeServer, ChangeConfig, ChangeGrant or ChangeQuota
	Ref  string // what Kind names: a key hash in hex, or an id
}

// The kinds of change.
const (
	ChangeKey      = "key"      // Ref: the hex SHA-256 hash of an API key
	ChangeInstance = "instance" // Ref: an instance id
	ChangeServer   = "server"   // Ref: a server id
	ChangeConfig   = "config"   // Ref: a config id
	ChangeGrant    = "grant"    // Ref: an OAuth grant id
)

// changesSinceSQL is the one statement a proxy process sends per poll.
// The primary key's index answers it; with nothing new it reads no row.
const changesSinceSQL = `SELECT id, kind, ref FROM config_changes WHERE id > $1 ORDER BY id LIMIT $2`

// ChangesSince returns at most limit changes after the one with id after,
// oldest first. Ids are taken in commit order (record_config_change), so
// a change committed later never gets a smaller id than one returned.
func (db *DB) ChangesSince(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, _ := db.Pool.Query(ctx, changesSinceSQL, after, limit)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Change, error) {
		var c Change
		return c, r.Scan(&c.ID, &c.Kind, &c.Ref)
	})
	if err != nil {
		return nil, fmt.Errorf("read config changes: %w", err)
	}
	return out, nil
}

// LastChange returns the id of the newest change, 0 when there is none: a
// process starts reading the feed after it.
func (db *DB) LastChange(ctx context.Context) (int64, error) {
	var id int64
	if err := db.Pool.QueryRow(ctx, `SELECT COALESCE(max(id), 0) FROM config_changes`).Scan(&id); err != nil {
		return 0, fmt.Errorf("read the last config change: %w", err)
	}
	return id, nil
}

// ChangeRetention is how long FlushLogs keeps the change feed's rows. A
// proxy process that has not read the feed for FeedTrust drops its
// caches instead of reading on (proxy.Handler), so changes it would need
// are never pruned under it.
const (
	ChangeRetention = 24 * time.Hour
	FeedTrust       = ChangeRetention / 2
)

// DeleteChanges deletes at most limit changes recorded before the time
// given and returns how many it deleted.
func (f *Flush) DeleteChanges(ctx context.Context, before time.Time, limit int) (int64, error) {
	tag, err := f.conn.Exec(ctx, `DELETE FROM config_changes WHERE id IN (
    SELECT id FROM config_changes WHERE at < $1 ORDER BY id LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("flush: retention of config changes: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PruneChanges deletes the changes older than keep and returns how many
// went (tests and hand maintenance; FlushLogs uses DeleteChanges).
func (db *DB) PruneChanges(ctx context.Context, keep time.Duration) (int64, error) {
	tag, err := db.Pool.Exec(ctx, `DELETE FROM config_changes WHERE at < now() - $1::interval`, keep.String())
	if err != nil {
		return 0, fmt.Errorf("prune config changes: %w", err)
	}
	return tag.RowsAffected(), nil
}
