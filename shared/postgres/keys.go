package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// lookupKeySQL resolves a key hash to everything auth needs in one round
// trip: the key, its user, its instance, the instance's organization and
// whether the instance was deleted.
const lookupKeySQL = `
SELECT k.id::text, k.key_prefix, k.user_id::text, i.organization_id::text,
       i.id::text, k.is_active, k.expires_at, i.deleted_at IS NOT NULL,
       COALESCE(k.rate_limit_per_second, 0), COALESCE(k.rate_limit_burst, 0)
FROM mcp_api_keys k
JOIN user_mcp_server_instances i ON i.id = k.mcp_server_instance_id
WHERE k.key_hash = $1`

// LookupAPIKey finds the key with the given SHA-256 hash. An unknown hash
// is tenant.ErrNotFound; whether a found key may be used is Key.Check's answer.
func (db *DB) LookupAPIKey(ctx context.Context, hash [32]byte) (*tenant.Key, error) {
	var k tenant.Key
	err := db.Pool.QueryRow(ctx, lookupKeySQL, hash[:]).Scan(
		&k.ID, &k.Prefix, &k.UserID, &k.OrganizationID,
		&k.InstanceID, &k.Active, &k.ExpiresAt, &k.InstanceGone, &k.RateLimit.PerSecond, &k.RateLimit.Burst)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("api key: %w", tenant.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("look up api key: %w", err)
	}
	return &k, nil
}

// KeyRow is an API key as the admin CLI lists it.
type KeyRow struct {
	ID         string     `json:"id"`
	InstanceID string     `json:"instance_id"`
	UserID     string     `json:"user_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Active     bool       `json:"active"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	CreatedAt  time.Time  `json:"created_at"`
	// RateLimit and Quota are zero for none.
	RateLimit tenant.RateLimit `json:"rate_limit"`
	Quota     Quota            `json:"quota"`
}

// CreateAPIKey makes a key for an instance and stores only its hash and
// display prefix. The key is returned once. userID "" means the owner of
// the instance's organization.
func (db *DB) CreateAPIKey(ctx context.Context, instanceID, userID, name string, expiresAt *time.Time) (row KeyRow, key string, err error) {
	if !validUUID(instanceID) {
		return row, "", fmt.Errorf("instance %q: %w", instanceID, tenant.ErrNotFound)
	}
	if userID != "" && !validUUID(userID) {
		return row, "", fmt.Errorf("user %q: %w", userID, tenant.ErrNotFound)
	}
	key, prefix, err := tenant.NewKey()
	if err != nil {
		return row, "", fmt.Errorf("create api key: %w", err)
	}
	hash := tenant.HashKey(key)
	// The user must belong to the instance's organization; with no user
	// given, the organization's first owner is taken.
	err = db.Pool.QueryRow(ctx, `
INSERT INTO mcp_api_keys (mcp_server_instance_id, user_id, name, key_hash, key_prefix, expires_at)
SELECT i.id, u.id, $3, $4, $5, $6
FROM user_mcp_server_instances i
JOIN LATERAL (
    SELECT id FROM users
    WHERE organization_id = i.organization_id
      AND (CASE WHEN $2 = '' THEN role = 'OWNER' ELSE id::text = $2 END)
    ORDER BY created_at, id LIMIT 1
) u ON true
WHERE i.id = $1 AND i.deleted_at IS NULL
RETURNING id::text, mcp_server_instance_id::text, user_id::text, name, key_prefix, is_active, expires_at, last_used_at, created_at`,
		instanceID, userID, name, hash[:], prefix, expiresAt,
	).Scan(&row.ID, &row.InstanceID, &row.UserID, &row.Name, &row.Prefix, &row.Active, &row.ExpiresAt, &row.LastUsedAt, &row.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		if userID != "" {
			return row, "", fmt.Errorf("instance %s (live) with user %s of its organization: %w", instanceID, userID, tenant.ErrNotFound)
		}
		return row, "", fmt.Errorf("instance %s (live) with an owner: %w", instanceID, tenant.ErrNotFound)
	}
	if err != nil {
		return row, "", fmt.Errorf("create api key: %w", err)
	}
	return row, key, nil
}

// ListAPIKeys lists the keys of an instance, newest first.
func (db *DB) ListAPIKeys(ctx context.Context, instanceID string) ([]KeyRow, error) {
	if !validUUID(instanceID) {
		return nil, fmt.Errorf("instance %q: %w", instanceID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `
SELECT id::text, mcp_server_instance_id::text, user_id::text, name, key_prefix, is_active, expires_at, last_used_at, created_at,
       COALESCE(rate_limit_per_second, 0), COALESCE(rate_limit_burst, 0), COALESCE(quota_calls_per_day, 0), COALESCE(quota_calls_per_month, 0)
FROM mcp_api_keys WHERE mcp_server_instance_id = $1 ORDER BY created_at DESC, id`, instanceID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KeyRow, error) {
		var k KeyRow
		err := r.Scan(&k.ID, &k.InstanceID, &k.UserID, &k.Name, &k.Prefix, &k.Active, &k.ExpiresAt, &k.LastUsedAt, &k.CreatedAt,
			&k.RateLimit.PerSecond, &k.RateLimit.Burst, &k.Quota.PerDay, &k.Quota.PerMonth)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey deactivates a key. Revoking a revoked key is not an error.
func (db *DB) RevokeAPIKey(ctx context.Context, keyID string) error {
	if !validUUID(keyID) {
		return fmt.Errorf("api key %q: %w", keyID, tenant.ErrNotFound)
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE mcp_api_keys SET is_active = false, updated_at = now() WHERE id = $1`, keyID)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("api key %s: %w", keyID, tenant.ErrNotFound)
	}
	return nil
}

// SetKeyRateLimit sets a key's rate limit; a zero limit removes it. The
// proxies follow within CONFIG_POLL (the change feed).
func (db *DB) SetKeyRateLimit(ctx context.Context, keyID string, l tenant.RateLimit) error {
	if !validUUID(keyID) {
		return fmt.Errorf("api key %q: %w", keyID, tenant.ErrNotFound)
	}
	perSecond, burst, err := limitColumns(l)
	if err != nil {
		return err
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE mcp_api_keys SET rate_limit_per_second = $2, rate_limit_burst = $3, updated_at = now() WHERE id = $1`,
		keyID, perSecond, burst)
	if err != nil {
		return fmt.Errorf("set the rate limit of api key %s: %w", keyID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("api key %s: %w", keyID, tenant.ErrNotFound)
	}
	return nil
}

// limitColumns are a limit's column values: NULLs for none, and a burst
// of at least one second's worth (and 1) when none is given.
func limitColumns(l tenant.RateLimit) (perSecond *float64, burst *int, err error) {
	switch {
	case l.PerSecond < 0 || l.Burst < 0:
		return nil, nil, errors.New("a rate limit is not negative")
	case l.PerSecond == 0 && l.Burst > 0:
		return nil, nil, errors.New("a burst needs a rate")
	case l.PerSecond == 0:
		return nil, nil, nil
	case l.PerSecond > 1e6:
		return nil, nil, errors.New("a rate limit above 1,000,000 a second is no limit")
	}
	if l.Burst == 0 {
		l.Burst = max(1, int(math.Ceil(l.PerSecond)))
	}
	return &l.PerSecond, &l.Burst, nil
}
