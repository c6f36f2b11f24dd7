package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// The statements of the proxy's OAuth authorization server: registered
// clients, grants, and the hashes of their codes and refresh tokens.

// OAuthClient is a client registered dynamically.
type OAuthClient struct {
	ID           string    `json:"client_id"`
	Name         string    `json:"client_name"`
	RedirectURIs []string  `json:"redirect_uris"`
	CreatedAt    time.Time `json:"created_at"`
}

// CreateOAuthClient registers a client.
func (db *DB) CreateOAuthClient(ctx context.Context, c OAuthClient) (OAuthClient, error) {
	err := db.Pool.QueryRow(ctx, `
INSERT INTO oauth_clients (id, client_name, redirect_uris) VALUES ($1, $2, $3) RETURNING created_at`,
		c.ID, c.Name, c.RedirectURIs).Scan(&c.CreatedAt)
	if err != nil {
		return c, fmt.Errorf("register oauth client: %w", err)
	}
	return c, nil
}

// LookupOAuthClient finds a registered client; tenant.ErrNotFound when
// there is none.
func (db *DB) LookupOAuthClient(ctx context.Context, id string) (OAuthClient, error) {
	c := OAuthClient{ID: id}
	err := db.Pool.QueryRow(ctx, `SELECT client_name, redirect_uris, created_at FROM oauth_clients WHERE id = $1`, id).
		Scan(&c.Name, &c.RedirectURIs, &c.CreatedAt)
	if err != nil {
		return c, fmt.Errorf("look up oauth client: %w", notFoundIfNoRows(err, "oauth client"))
	}
	return c, nil
}

// NewGrant is what a user allowed a client, as the consent page makes it.
type NewGrant struct {
	ClientID   string
	ClientName string
	InstanceID string
	UserID     string
	APIKeyID   string // "" for a grant made by signing in
	Resource   string
	Scope      string
}

// OAuthCode is a redeemed authorization code with its grant.
type OAuthCode struct {
	GrantID       string
	ClientID      string
	Resource      string
	Scope         string
	RedirectURI   string
	CodeChallenge string
	ExpiresAt     time.Time
}

// CreateOAuthCode stores a grant and its authorization code (by hash) in
// one statement, and returns the grant's ID.
func (db *DB) CreateOAuthCode(ctx context.Context, g NewGrant, codeHash [32]byte, redirectURI, challenge string, expires time.Time) (string, error) {
	var id string
	err := db.Pool.QueryRow(ctx, `
WITH g AS (
    INSERT INTO oauth_grants (client_id, client_name, mcp_server_instance_id, user_id, api_key_id, resource, scope)
    VALUES ($1, $2, $3, $4, NULLIF($5, '')::uuid, $6, $7)
    RETURNING id
)
INSERT INTO oauth_codes (code_hash, grant_id, redirect_uri, code_challenge, expires_at)
SELECT $8, g.id, $9, $10, $11 FROM g
RETURNING grant_id::text`,
		g.ClientID, g.ClientName, g.InstanceID, g.UserID, g.APIKeyID, g.Resource, g.Scope,
		codeHash[:], redirectURI, challenge, expires).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("create oauth code: %w", notFoundIfForeignKey(err, "instance, user or key"))
	}
	return id, nil
}

// RedeemOAuthCode marks a code used and returns it. An unknown, expired
// or revoked one is tenant.ErrNotFound; one used before revokes its grant
// and is tenant.ErrReused.
func (db *DB) RedeemOAuthCode(ctx context.Context, codeHash [32]byte, now time.Time) (*OAuthCode, error) {
	var c OAuthCode
	reused := false
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var used, revoked bool
		err := tx.QueryRow(ctx, `
SELECT c.grant_id::text, g.client_id, g.resource, g.scope, c.redirect_uri, c.code_challenge, c.expires_at,
       c.used_at IS NOT NULL, g.revoked_at IS NOT NULL
FROM oauth_codes c JOIN oauth_grants g ON g.id = c.grant_id
WHERE c.code_hash = $1 FOR UPDATE OF c`, codeHash[:]).Scan(
			&c.GrantID, &c.ClientID, &c.Resource, &c.Scope, &c.RedirectURI, &c.CodeChallenge, &c.ExpiresAt, &used, &revoked)
		if err != nil {
			return notFoundIfNoRows(err, "authorization code")
		}
		if used {
			// Committed, not rolled back: the revocation is the point.
			reused = true
			_, err := tx.Exec(ctx, `UPDATE oauth_grants SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, c.GrantID)
			return err
		}
		if revoked || !now.Before(c.ExpiresAt) {
			return fmt.Errorf("authorization code expired or revoked: %w", tenant.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `UPDATE oauth_codes SET used_at = now() WHERE code_hash = $1`, codeHash[:])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redeem oauth code: %w", err)
	}
	if reused {
		return nil, fmt.Errorf("authorization code: %w", tenant.ErrReused)
	}
	return &c, nil
}

// CreateRefreshToken stores a refresh token of a grant by its hash.
func (db *DB) CreateRefreshToken(ctx context.Context, grantID string, tokenHash [32]byte, expires time.Time) error {
	_, err := db.Pool.Exec(ctx, `INSERT INTO oauth_refresh_tokens (token_hash, grant_id, expires_at) VALUES ($1, $2, $3)`,
		tokenHash[:], grantID, expires)
	if err != nil {
		return fmt.Errorf("create refresh token: %w", err)
	}
	return nil
}

// RefreshedGrant is what a refresh token stood for.
type RefreshedGrant struct {
	GrantID  string
	ClientID string
	Resource string
	Scope    string
}

// RotateRefreshToken replaces a refresh token with a new one (by hash) in
// one transaction. An unknown, expired or revoked token is
// tenant.ErrNotFound; a token replaced before revokes its grant, and so
// every token of its family, and is tenant.ErrReused.
func (db *DB) RotateRefreshToken(ctx context.Context, oldHash, newHash [32]byte, now, expires time.Time) (*RefreshedGrant, error) {
	var g RefreshedGrant
	reused := false
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var used, revoked bool
		var exp time.Time
		err := tx.QueryRow(ctx, `
SELECT t.grant_id::text, g.client_id, g.resource, g.scope, t.expires_at, t.used_at IS NOT NULL, g.revoked_at IS NOT NULL
FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id
WHERE t.token_hash = $1 FOR UPDATE OF t`, oldHash[:]).Scan(&g.GrantID, &g.ClientID, &g.Resource, &g.Scope, &exp, &used, &revoked)
		if err != nil {
			return notFoundIfNoRows(err, "refresh token")
		}
		if used {
			// Committed, not rolled back: the revocation is the point.
			reused = true
			_, err := tx.Exec(ctx, `UPDATE oauth_grants SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, g.GrantID)
			return err
		}
		if revoked || !now.Before(exp) {
			return fmt.Errorf("refresh token expired or revoked: %w", tenant.ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `UPDATE oauth_refresh_tokens SET used_at = now() WHERE token_hash = $1`, oldHash[:]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO oauth_refresh_tokens (token_hash, grant_id, expires_at) VALUES ($1, $2, $3)`,
			newHash[:], g.GrantID, expires)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}
	if reused {
		return nil, fmt.Errorf("refresh token: %w", tenant.ErrReused)
	}
	return &g, nil
}

// RevokeRefreshToken revokes the grant of a refresh token, and with it
// the grant's other tokens (RFC 7009 section 2.1). clientID must be the
// grant's client; an unknown token is no error (RFC 7009 section 2.2).
func (db *DB) RevokeRefreshToken(ctx context.Context, tokenHash [32]byte, clientID string) error {
	_, err := db.Pool.Exec(ctx, `
UPDATE oauth_grants SET revoked_at = now()
WHERE id = (SELECT grant_id FROM oauth_refresh_tokens WHERE token_hash = $1) AND client_id = $2 AND revoked_at IS NULL`,
		tokenHash[:], clientID)
	if err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	return nil
}

// RevokeOAuthGrant revokes a grant. clientID "" revokes it whatever its
// client (mcpadmin). Revoking a revoked grant is no error.
func (db *DB) RevokeOAuthGrant(ctx context.Context, grantID, clientID string) error {
	if !validUUID(grantID) {
		return fmt.Errorf("grant %q: %w", grantID, tenant.ErrNotFound)
	}
	tag, err := db.Pool.Exec(ctx, `
UPDATE oauth_grants SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND ($2 = '' OR client_id = $2)`, grantID, clientID)
	if err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("grant %s: %w", grantID, tenant.ErrNotFound)
	}
	return nil
}

// lookupGrantSQL resolves a grant to everything the proxy checks of an
// access token's grant, in one round trip, like lookupKeySQL.
const lookupGrantSQL = `
SELECT g.client_id, g.user_id::text, i.organization_id::text, i.id::text, i.deleted_at IS NOT NULL,
       coalesce(k.id::text, ''), g.revoked_at IS NOT NULL, coalesce(k.is_active, true), k.expires_at
FROM oauth_grants g
JOIN user_mcp_server_instances i ON i.id = g.mcp_server_instance_id
LEFT JOIN mcp_api_keys k ON k.id = g.api_key_id
WHERE g.id = $1`

// LookupOAuthGrant finds a grant; an unknown one is tenant.ErrNotFound.
// Whether it may be used is Grant.Check's answer.
func (db *DB) LookupOAuthGrant(ctx context.Context, grantID string) (*tenant.Grant, error) {
	if !validUUID(grantID) {
		return nil, fmt.Errorf("grant %q: %w", grantID, tenant.ErrNotFound)
	}
	g := tenant.Grant{ID: grantID}
	err := db.Pool.QueryRow(ctx, lookupGrantSQL, grantID).Scan(
		&g.ClientID, &g.Key.UserID, &g.Key.OrganizationID, &g.Key.InstanceID, &g.Key.InstanceGone,
		&g.APIKeyID, &g.Revoked, &g.KeyActive, &g.KeyExpiresAt)
	if err != nil {
		return nil, fmt.Errorf("look up grant: %w", notFoundIfNoRows(err, "grant "+grantID))
	}
	g.Key.ID, g.Key.Active = grantID, true
	return &g, nil
}

// GrantRow is a grant as mcpadmin lists it.
type GrantRow struct {
	ID         string     `json:"id"`
	ClientID   string     `json:"client_id"`
	ClientName string     `json:"client_name"`
	InstanceID string     `json:"instance_id"`
	UserID     string     `json:"user_id"`
	APIKeyID   string     `json:"api_key_id,omitempty"`
	Resource   string     `json:"resource"`
	Scope      string     `json:"scope"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// ListOAuthGrants lists the grants of an instance, newest first.
func (db *DB) ListOAuthGrants(ctx context.Context, instanceID string) ([]GrantRow, error) {
	if !validUUID(instanceID) {
		return nil, fmt.Errorf("instance %q: %w", instanceID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `
SELECT id::text, client_id, client_name, mcp_server_instance_id::text, user_id::text, coalesce(api_key_id::text, ''),
       resource, scope, created_at, revoked_at
FROM oauth_grants WHERE mcp_server_instance_id = $1 ORDER BY created_at DESC, id`, instanceID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GrantRow, error) {
		var g GrantRow
		err := r.Scan(&g.ID, &g.ClientID, &g.ClientName, &g.InstanceID, &g.UserID, &g.APIKeyID, &g.Resource, &g.Scope, &g.CreatedAt, &g.RevokedAt)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	return out, nil
}
