package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestOAuthCredentials stores OAuth settings next to a config's headers,
// then a refreshed token: each write keeps what it does not replace, the
// row's updated_at moves, and the stored bytes hold no token in clear.
func TestOAuthCredentials(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	org, err := db.CreateOrganization(ctx, "Acme", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := db.CreateServer(ctx, postgres.Server{OrganizationID: org.ID, Name: "drive",
		Transport: tenant.TransportStreamableHTTP, URL: "https://drive.example/mcp", AuthType: tenant.AuthOAuth}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := db.CreateConfig(ctx, org.ID, srv.ID, "", tenant.Credentials{Headers: map[string]string{"X-Tenant": "t-1"}})
	if err != nil {
		t.Fatal(err)
	}
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	status, err := db.SetOAuth(ctx, cfg.ID, srv.ID, tenant.OAuthCredentials{TokenURL: "https://auth.example/token",
		ClientID: "client-1", ClientSecret: "client-secret-value", Scopes: []string{"read", "write"},
		OAuthToken: tenant.OAuthToken{AccessToken: "access-one", RefreshToken: "refresh-one", TokenType: "Bearer", Expiry: expiry}})
	if err != nil {
		t.Fatal(err)
	}
	if !status.HasClientSecret || !status.HasRefreshToken || status.Expiry == nil || !status.Expiry.Equal(expiry) || status.ClientID != "client-1" {
		t.Errorf("status = %+v", status)
	}
	updatedAt := func() time.Time {
		var at time.Time
		if err := db.Pool.QueryRow(ctx, `SELECT updated_at FROM user_mcp_server_configs WHERE id = $1`, cfg.ID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	before := updatedAt()

	newExpiry := expiry.Add(time.Hour)
	if err := db.SaveOAuthToken(ctx, cfg.ID, tenant.OAuthToken{AccessToken: "access-two", TokenType: "Bearer", Expiry: newExpiry}); err != nil {
		t.Fatal(err)
	}
	creds, err := db.ConfigCredentials(ctx, cfg.ID, srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	o := creds.OAuth
	if o == nil || o.AccessToken != "access-two" || o.RefreshToken != "refresh-one" || !o.Expiry.Equal(newExpiry) ||
		o.ClientSecret != "client-secret-value" || !slices.Equal(o.Scopes, []string{"read", "write"}) {
		t.Errorf("after a refresh without a new refresh token: %+v; want the new access token and the rest kept", o)
	}
	if creds.Headers["X-Tenant"] != "t-1" {
		t.Errorf("headers = %v; want X-Tenant kept", creds.Headers)
	}
	if after := updatedAt(); !after.After(before) {
		t.Errorf("updated_at %v not after %v", after, before)
	}
	var sealed []byte
	if err := db.Pool.QueryRow(ctx, `SELECT encrypted_credentials FROM user_mcp_server_configs WHERE id = $1`, cfg.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"access-two", "refresh-one", "client-secret-value"} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("encrypted_credentials hold %q in clear", secret)
		}
	}
	list, err := db.ListConfigs(ctx, org.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].OAuth == nil || list[0].OAuth.TokenURL != "https://auth.example/token" {
		t.Errorf("config list = %+v; want the OAuth status", list)
	}
}

func TestOAuthCredentialsRefused(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	valid := tenant.OAuthCredentials{TokenURL: "https://auth.example/token", ClientID: "c",
		OAuthToken: tenant.OAuthToken{RefreshToken: "r"}}
	unknown := "00000000-0000-0000-0000-000000000000"
	for _, tt := range []struct {
		name string
		err  func() error
		want string
	}{
		{"not an OAUTH server", func() error {
			_, err := db.SetOAuth(ctx, f.alphaCfg.ID, f.alpha.ID, valid)
			return err
		}, "not OAUTH"},
		{"another server's config", func() error {
			_, err := db.SetOAuth(ctx, f.alphaCfg.ID, f.beta.ID, valid)
			return err
		}, "is not a config of server"},
		{"no token", func() error {
			_, err := db.SetOAuth(ctx, f.alphaCfg.ID, f.alpha.ID, tenant.OAuthCredentials{TokenURL: "https://a/t", ClientID: "c"})
			return err
		}, "access token or a refresh token"},
		{"unknown config", func() error {
			return db.SaveOAuthToken(ctx, unknown, tenant.OAuthToken{AccessToken: "a"})
		}, "not found"},
		{"token for a config without OAuth", func() error {
			return db.SaveOAuthToken(ctx, f.alphaCfg.ID, tenant.OAuthToken{AccessToken: "a"})
		}, "no OAuth settings"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want one containing %q", err, tt.want)
			}
			if tt.want == "not found" && !errors.Is(err, tenant.ErrNotFound) {
				t.Errorf("err = %v; want tenant.ErrNotFound", err)
			}
		})
	}
}
