package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// OAuthStatus describes the OAuth settings of a config without a secret.
type OAuthStatus struct {
	TokenURL        string     `json:"token_url"`
	ClientID        string     `json:"client_id"`
	Scopes          []string   `json:"scopes,omitempty"`
	HasClientSecret bool       `json:"has_client_secret"`
	HasRefreshToken bool       `json:"has_refresh_token"`
	Expiry          *time.Time `json:"expiry,omitempty"` // of the stored access token
}

func oauthStatus(o *tenant.OAuthCredentials) *OAuthStatus {
	if o == nil {
		return nil
	}
	s := &OAuthStatus{TokenURL: o.TokenURL, ClientID: o.ClientID, Scopes: o.Scopes,
		HasClientSecret: o.ClientSecret != "", HasRefreshToken: o.RefreshToken != ""}
	if !o.Expiry.IsZero() {
		t := o.Expiry.UTC()
		s.Expiry = &t
	}
	return s
}

// SetOAuth stores the OAuth client settings and tokens of a config of the
// given server, an OAUTH one, keeping its other credentials. The whole
// credential set is sealed again under the primary key.
func (db *DB) SetOAuth(ctx context.Context, configID, serverID string, o tenant.OAuthCredentials) (*OAuthStatus, error) {
	if !validUUID(configID) {
		return nil, fmt.Errorf("config %q: %w", configID, tenant.ErrNotFound)
	}
	if o.TokenURL == "" || o.ClientID == "" {
		return nil, errors.New("OAuth settings need a token URL and a client ID")
	}
	if o.AccessToken == "" && o.RefreshToken == "" {
		return nil, errors.New("OAuth settings need an access token or a refresh token")
	}
	err := db.updateCredentials(ctx, configID, func(server string, auth tenant.AuthType, c *tenant.Credentials) error {
		if server != serverID {
			return fmt.Errorf("config %s is not a config of server %s", configID, serverID)
		}
		if auth != tenant.AuthOAuth {
			return fmt.Errorf("server %s uses auth %s, not OAUTH (create it with --auth oauth)", serverID, auth)
		}
		o.Scopes = slices.Clone(o.Scopes)
		c.OAuth = &o
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set OAuth of config %s: %w", configID, err)
	}
	return oauthStatus(&o), nil
}

// SaveOAuthToken replaces the tokens of a config's OAuth credentials with
// a refreshed set, keeping the client settings and the other credentials.
// An empty refresh token keeps the stored one: token endpoints need not
// send it again.
func (db *DB) SaveOAuthToken(ctx context.Context, configID string, tok tenant.OAuthToken) error {
	if !validUUID(configID) {
		return fmt.Errorf("config %q: %w", configID, tenant.ErrNotFound)
	}
	err := db.updateCredentials(ctx, configID, func(_ string, _ tenant.AuthType, c *tenant.Credentials) error {
		if c.OAuth == nil {
			return errors.New("the config has no OAuth settings")
		}
		if tok.RefreshToken == "" {
			tok.RefreshToken = c.OAuth.RefreshToken
		}
		c.OAuth.OAuthToken = tok
		return nil
	})
	if err != nil {
		return fmt.Errorf("save OAuth token of config %s: %w", configID, err)
	}
	return nil
}

// updateCredentials opens a config's credentials with its row locked,
// lets change edit them, and stores them sealed again, in one
// transaction: two writers (a refresh by the proxy, an operator's new
// tokens) cannot lose each other's other fields.
func (db *DB) updateCredentials(ctx context.Context, configID string, change func(serverID string, auth tenant.AuthType, c *tenant.Credentials) error) error {
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var (
			serverID string
			auth     tenant.AuthType
			sealed   []byte
		)
		err := tx.QueryRow(ctx, `
SELECT c.mcp_server_id::text, s.auth_type, c.encrypted_credentials
FROM user_mcp_server_configs c JOIN mcp_servers s ON s.id = c.mcp_server_id
WHERE c.id = $1 FOR UPDATE OF c`, configID).Scan(&serverID, &auth, &sealed)
		if err != nil {
			return notFoundIfNoRows(err, "config "+configID)
		}
		creds, err := db.openCredentials(configID, sealed)
		if err != nil {
			return err
		}
		if err := change(serverID, auth, &creds); err != nil {
			return err
		}
		if sealed, err = db.sealCredentials(configID, creds); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE user_mcp_server_configs SET encrypted_credentials = $2, updated_at = now() WHERE id = $1`, configID, sealed)
		return err
	})
}
