package postgres_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/postgres/migrate"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// fixture is an organization with two HTTP servers and their configs.
type fixture struct {
	org              postgres.Organization
	alpha, beta      postgres.Server
	alphaCfg, betaCf postgres.Config
}

func newFixture(t *testing.T, db *postgres.DB) fixture {
	t.Helper()
	ctx := context.Background()
	var f fixture
	var err error
	if f.org, err = db.CreateOrganization(ctx, "Acme", "Ada", "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	tools := func(names ...string) []postgres.Tool {
		var out []postgres.Tool
		for _, n := range names {
			out = append(out, postgres.Tool{Name: n, Description: "does " + n, InputSchema: []byte(`{"type":"object"}`)})
		}
		return out
	}
	if f.alpha, err = db.CreateServer(ctx, postgres.Server{OrganizationID: f.org.ID, Name: "Alpha Search",
		Transport: tenant.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp", AuthType: tenant.AuthAPIKey,
		HeaderNames: []string{"X-Alpha-Key"}}, tools("search", "fetch", "delete")); err != nil {
		t.Fatal(err)
	}
	if f.beta, err = db.CreateServer(ctx, postgres.Server{OrganizationID: f.org.ID, Name: "beta",
		Transport: tenant.TransportStdio, Command: "beta-server", Args: []string{"--flag"}}, tools("echo", "add")); err != nil {
		t.Fatal(err)
	}
	if f.alphaCfg, err = db.CreateConfig(ctx, f.org.ID, f.alpha.ID, "alpha prod",
		tenant.Credentials{Headers: map[string]string{"X-Alpha-Key": "alpha-secret"}}); err != nil {
		t.Fatal(err)
	}
	if f.betaCf, err = db.CreateConfig(ctx, f.org.ID, f.beta.ID, "",
		tenant.Credentials{Env: map[string]string{"BETA_TOKEN": "beta-secret"}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) instance(t *testing.T, db *postgres.DB, sel ...postgres.Selection) postgres.Instance {
	t.Helper()
	inst, err := db.CreateInstance(context.Background(), f.org.ID, f.org.OwnerUserID, "main", sel)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestMigrateFromEmpty(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Options{URL: pgtest.NewDatabase(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	applied, err := migrate.Up(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("no migration applied to an empty database")
	}
	again, err := migrate.Up(ctx, db)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v, %v; want nothing", again, err)
	}
	status, err := migrate.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range status {
		if !m.Applied {
			t.Errorf("migration %d not applied", m.Version)
		}
	}
	rows, _ := db.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'goose_db_version' ORDER BY 1`)
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	want := []string{"config_changes", "log_flush_batches", "mcp_api_keys", "mcp_server_request_hourly", "mcp_server_request_logs", "mcp_servers",
		"oauth_clients", "oauth_codes", "oauth_grants", "oauth_refresh_tokens", "organizations", "quota_blocks", "tools", "usage_calls",
		"user_mcp_server_configs", "user_mcp_server_instances", "user_tool_group_tools", "user_tool_groups", "users"}
	if !slices.Equal(tables, want) {
		t.Errorf("tables = %v; want %v", tables, want)
	}
	// The request log design's five (x, created_at) indexes.
	var indexed []string
	rows, _ = db.Pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE tablename = 'mcp_server_request_logs' AND indexdef LIKE '%, created_at)' ORDER BY 1`)
	for rows.Next() {
		var d string
		rows.Scan(&d)
		indexed = append(indexed, d[strings.LastIndex(d, "(")+1:])
	}
	wantIdx := []string{"mcp_server_instance_id, created_at)", "response_status, created_at)", "tool_name, created_at)", "transport_type, created_at)", "user_id, created_at)"}
	if !slices.Equal(indexed, wantIdx) {
		t.Errorf("request log indexes = %v; want %v", indexed, wantIdx)
	}
}

func TestLookupAPIKey(t *testing.T) {
	ctx := context.Background()
	counter := &pgtest.Counter{}
	db := pgtest.Open(t, counter)
	f := newFixture(t, db)
	inst := f.instance(t, db, postgres.Selection{ConfigID: f.betaCf.ID})
	other := f.instance(t, db, postgres.Selection{ConfigID: f.alphaCfg.ID})

	_, valid, err := db.CreateAPIKey(ctx, inst.ID, "", "laptop", nil)
	if err != nil {
		t.Fatal(err)
	}
	revokedRow, revoked, _ := db.CreateAPIKey(ctx, inst.ID, "", "", nil)
	if err := db.RevokeAPIKey(ctx, revokedRow.ID); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	_, expired, _ := db.CreateAPIKey(ctx, inst.ID, "", "", &past)
	_, onDeleted, _ := db.CreateAPIKey(ctx, other.ID, "", "", nil)
	if err := db.DeleteInstance(ctx, other.ID); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		key      string
		notFound bool
		check    error
	}{
		{"valid", valid, false, nil},
		{"revoked", revoked, false, tenant.ErrKeyInactive},
		{"expired", expired, false, tenant.ErrKeyExpired},
		{"deleted instance", onDeleted, false, tenant.ErrInstanceDeleted},
		{"unknown", "mcpk_unknown-key-000000000000000000000", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counter.Reset()
			k, err := db.LookupAPIKey(ctx, tenant.HashKey(tt.key))
			if got := counter.Count(); got != 1 {
				t.Errorf("queries = %d; want 1: %q", got, counter.Queries())
			}
			if tt.notFound {
				if !errors.Is(err, tenant.ErrNotFound) {
					t.Fatalf("err = %v; want tenant.ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := k.Check(time.Now()); !errors.Is(got, tt.check) {
				t.Errorf("Check() = %v; want %v", got, tt.check)
			}
			if k.OrganizationID != f.org.ID || k.UserID != f.org.OwnerUserID {
				t.Errorf("key org/user = %s/%s; want %s/%s", k.OrganizationID, k.UserID, f.org.ID, f.org.OwnerUserID)
			}
			if k.Prefix != tenant.DisplayPrefix(tt.key) {
				t.Errorf("prefix = %q; want %q", k.Prefix, tenant.DisplayPrefix(tt.key))
			}
		})
	}

	// Only the hash and the prefix are stored, never the key.
	var stored int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM mcp_api_keys WHERE key_prefix = $1 OR encode(key_hash, 'escape') LIKE '%' || $1 || '%'`, valid).Scan(&stored)
	if stored != 0 {
		t.Error("the key is stored in clear")
	}
}

func TestLoadInstanceConfig(t *testing.T) {
	ctx := context.Background()
	counter := &pgtest.Counter{}
	db := pgtest.Open(t, counter)
	f := newFixture(t, db)
	inst := f.instance(t, db,
		postgres.Selection{ConfigID: f.alphaCfg.ID, Tools: []string{"search", "fetch"}},
		postgres.Selection{ConfigID: f.betaCf.ID})

	load := func(t *testing.T) *tenant.Instance {
		t.Helper()
		counter.Reset()
		got, err := db.LoadInstanceConfig(ctx, inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n := counter.Count(); n != 1 {
			t.Errorf("queries = %d; want 1", n)
		}
		return got
	}

	t.Run("distinct upstreams with filtered tools", func(t *testing.T) {
		got := load(t)
		if got.ID != inst.ID || got.OrganizationID != f.org.ID || got.Name != "main" {
			t.Errorf("instance = %+v", got)
		}
		if len(got.Upstreams) != 2 {
			t.Fatalf("upstreams = %d; want 2 (each config once)", len(got.Upstreams))
		}
		a, b := got.Upstreams[0], got.Upstreams[1]
		if a.Name != "Alpha Search" || b.Name != "beta" {
			t.Fatalf("upstream order = %q, %q; want Alpha Search, beta", a.Name, b.Name)
		}
		if !slices.Equal(a.Tools, []string{"fetch", "search"}) {
			t.Errorf("alpha tools = %v; want [fetch search]", a.Tools)
		}
		if !slices.Equal(b.Tools, []string{"add", "echo"}) {
			t.Errorf("beta tools = %v; want [add echo] (all discovered)", b.Tools)
		}
		if a.Credentials.Headers["X-Alpha-Key"] != "alpha-secret" || b.Credentials.Env["BETA_TOKEN"] != "beta-secret" {
			t.Errorf("credentials not decrypted: %+v, %+v", a.Credentials, b.Credentials)
		}
		if a.Transport != tenant.TransportStreamableHTTP || a.URL != "http://127.0.0.1:1/mcp" || a.AuthType != tenant.AuthAPIKey ||
			!slices.Equal(a.HeaderNames, []string{"X-Alpha-Key"}) {
			t.Errorf("alpha = %+v", a)
		}
		if b.Transport != tenant.TransportStdio || b.Command != "beta-server" || !slices.Equal(b.Args, []string{"--flag"}) {
			t.Errorf("beta = %+v", b)
		}
	})

	t.Run("disabled tool", func(t *testing.T) {
		if err := db.SetToolEnabled(ctx, f.alpha.ID, "search", false); err != nil {
			t.Fatal(err)
		}
		defer db.SetToolEnabled(ctx, f.alpha.ID, "search", true)
		if got := load(t).Upstreams[0].Tools; !slices.Equal(got, []string{"fetch"}) {
			t.Errorf("alpha tools = %v; want [fetch]", got)
		}
	})

	t.Run("tool no longer listed by the upstream", func(t *testing.T) {
		res, err := db.SyncTools(ctx, f.beta.ID, []postgres.Tool{{Name: "echo"}, {Name: "multiply"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Added, []string{"multiply"}) || !slices.Equal(res.Missing, []string{"add"}) {
			t.Errorf("sync = %+v; want added [multiply], missing [add]", res)
		}
		if got := load(t).Upstreams[1].Tools; !slices.Equal(got, []string{"echo"}) {
			t.Errorf("beta tools = %v; want [echo]", got)
		}
		// Listed again: back in the group it was selected in.
		if _, err := db.SyncTools(ctx, f.beta.ID, []postgres.Tool{{Name: "echo"}, {Name: "add"}}); err != nil {
			t.Fatal(err)
		}
		if got := load(t).Upstreams[1].Tools; !slices.Equal(got, []string{"add", "echo"}) {
			t.Errorf("beta tools = %v; want [add echo]", got)
		}
	})

	t.Run("disabled tool group", func(t *testing.T) {
		if err := db.SetInstanceToolsEnabled(ctx, inst.ID, false); err != nil {
			t.Fatal(err)
		}
		defer db.SetInstanceToolsEnabled(ctx, inst.ID, true)
		if got := load(t); len(got.Upstreams) != 0 {
			t.Errorf("upstreams = %d; want 0 with the tool group disabled", len(got.Upstreams))
		}
	})

	t.Run("wrong encryption key", func(t *testing.T) {
		other, _ := keyring.Parse("test:" + base64.StdEncoding.EncodeToString(make([]byte, 32)))
		db2, err := postgres.Open(ctx, postgres.Options{URL: db.Pool.Config().ConnString()}, other)
		if err != nil {
			t.Fatal(err)
		}
		defer db2.Close()
		_, err = db2.LoadInstanceConfig(ctx, inst.ID)
		if err == nil || !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("err = %v; want an authentication failure", err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks a credential: %v", err)
		}
	})

	t.Run("deleted or unknown instance", func(t *testing.T) {
		for _, id := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid"} {
			if _, err := db.LoadInstanceConfig(ctx, id); !errors.Is(err, tenant.ErrNotFound) {
				t.Errorf("LoadInstanceConfig(%q) err = %v; want tenant.ErrNotFound", id, err)
			}
		}
		if err := db.DeleteInstance(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.LoadInstanceConfig(ctx, inst.ID); !errors.Is(err, tenant.ErrNotFound) {
			t.Errorf("deleted instance err = %v; want tenant.ErrNotFound", err)
		}
	})
}

func TestCreateInstanceValidates(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	otherOrg, _ := db.CreateOrganization(ctx, "Other", "", "")
	tests := []struct {
		name string
		org  string
		sel  []postgres.Selection
		want string
	}{
		{"unknown tool", f.org.ID, []postgres.Selection{{ConfigID: f.alphaCfg.ID, Tools: []string{"search", "nope"}}}, "has no tool nope"},
		{"unknown config", f.org.ID, []postgres.Selection{{ConfigID: "00000000-0000-0000-0000-000000000000"}}, "not found"},
		{"config of another organization", otherOrg.ID, []postgres.Selection{{ConfigID: f.alphaCfg.ID}}, "another organization"},
		{"no config", f.org.ID, nil, "at least one config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.CreateInstance(ctx, tt.org, "", "x", tt.sel)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want it to contain %q", err, tt.want)
			}
		})
	}
	// A failed create leaves nothing behind.
	var n int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM user_tool_groups`).Scan(&n)
	if n != 0 {
		t.Errorf("%d tool groups left after failed creates; want 0", n)
	}
}

func TestReencryptAfterRotation(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	inst := f.instance(t, db, postgres.Selection{ConfigID: f.alphaCfg.ID})

	rotated, err := keyring.Parse("next:" + base64.StdEncoding.EncodeToString([]byte("next-test-key-32-bytes-long-0000")) + "," + pgtest.KeyringSpec)
	if err != nil {
		t.Fatal(err)
	}
	db2, err := postgres.Open(ctx, postgres.Options{URL: db.Pool.Config().ConnString()}, rotated)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	n, err := db2.ReencryptConfigs(ctx)
	if err != nil || n != 2 {
		t.Fatalf("reencrypt = %d, %v; want 2 configs", n, err)
	}
	configs, _ := db2.ListConfigs(ctx, f.org.ID)
	for _, c := range configs {
		if c.KeyID != "next" {
			t.Errorf("config %s sealed with %q; want next", c.ID, c.KeyID)
		}
	}
	// Only the new key is needed from now on.
	newOnly, _ := keyring.Parse("next:" + base64.StdEncoding.EncodeToString([]byte("next-test-key-32-bytes-long-0000")))
	db3, _ := postgres.Open(ctx, postgres.Options{URL: db.Pool.Config().ConnString()}, newOnly)
	defer db3.Close()
	got, err := db3.LoadInstanceConfig(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Upstreams[0].Credentials.Headers["X-Alpha-Key"] != "alpha-secret" {
		t.Errorf("credentials after rotation = %+v", got.Upstreams[0].Credentials)
	}
}
