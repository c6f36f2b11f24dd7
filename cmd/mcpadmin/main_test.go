package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/demo/demotest"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

const testKey = "test-only-key-32-bytes-long-0000"

// admin runs mcpadmin in process with the given arguments.
func admin(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return adminIn(t, "", args...)
}

// adminIn is admin with stdin.
func adminIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// adminJSON runs a command that must succeed and decodes its JSON output.
func adminJSON(t *testing.T, into any, args ...string) {
	t.Helper()
	code, out, errOut := admin(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("mcpadmin %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("mcpadmin %s: output is not one JSON object: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func setupEnv(t *testing.T) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", url)
	t.Setenv("MCP_ENCRYPTION_KEY", base64.StdEncoding.EncodeToString([]byte(testKey)))
	if code, _, errOut := admin(t, "migrate"); code != 0 {
		t.Fatalf("migrate: %s", errOut)
	}
	return url
}

func TestEndToEnd(t *testing.T) {
	url := setupEnv(t)
	upstream := demotest.StartUpstream(t, "")

	var org struct{ ID, OwnerUserID string }
	var orgOut map[string]any
	adminJSON(t, &orgOut, "org", "create", "--name", "Acme")
	org.ID, org.OwnerUserID = orgOut["id"].(string), orgOut["owner_user_id"].(string)

	var server struct {
		ID    string   `json:"id"`
		Tools []string `json:"tools"`
	}
	adminJSONIn(t, `{"headers": {"X-Demo-Key": "discovery-only"}}`, &server, "server", "create", "--org", org.ID, "--name", "Demo",
		"--transport", "streamable-http", "--url", upstream.URL(), "--auth", "api-key", "--header", "X-Demo-Key", "--secrets-file", "-")
	if !slices.Equal(server.Tools, demo.ToolNames) {
		t.Errorf("discovered tools = %v; want %v", server.Tools, demo.ToolNames)
	}

	var cfg struct {
		ID          string   `json:"id"`
		HeaderNames []string `json:"header_names"`
		KeyID       string   `json:"key_id"`
	}
	adminJSONIn(t, `{"headers": {"X-Demo-Key": "k-123"}}`, &cfg, "config", "create", "--server", server.ID, "--org", org.ID, "--header", "X-Demo-Key")
	if cfg.KeyID != keyring.DefaultKeyID || !slices.Equal(cfg.HeaderNames, []string{"X-Demo-Key"}) {
		t.Errorf("config = %+v", cfg)
	}

	var inst struct {
		ID    string `json:"id"`
		Tools int    `json:"tools"`
	}
	adminJSON(t, &inst, "instance", "create", "--org", org.ID, "--name", "main", "--config", cfg.ID+":echo,add")
	if inst.Tools != 2 {
		t.Errorf("instance tools = %d; want 2", inst.Tools)
	}

	var key struct {
		ID     string `json:"id"`
		Key    string `json:"key"`
		Prefix string `json:"prefix"`
	}
	adminJSON(t, &key, "key", "create", "--instance", inst.ID, "--name", "laptop", "--expires-in", "30d")
	if !strings.HasPrefix(key.Key, "mcpk_") || !strings.HasPrefix(key.Key, key.Prefix) {
		t.Errorf("key = %q with prefix %q", key.Key, key.Prefix)
	}

	// The key resolves to the instance, whose config carries the header.
	ring, _ := keyring.Parse(base64.StdEncoding.EncodeToString([]byte(testKey)))
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url}, ring)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, err := db.LookupAPIKey(context.Background(), tenant.HashKey(key.Key))
	if err != nil {
		t.Fatal(err)
	}
	if k.InstanceID != inst.ID || k.UserID != org.OwnerUserID || k.Check(time.Now()) != nil {
		t.Errorf("key resolves to %+v", k)
	}
	if k.ExpiresAt == nil || k.ExpiresAt.Sub(time.Now()) < 29*24*time.Hour {
		t.Errorf("expires at %v; want about 30 days from now", k.ExpiresAt)
	}
	loaded, err := db.LoadInstanceConfig(context.Background(), inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.Upstreams) != 1 || !slices.Equal(loaded.Upstreams[0].Tools, []string{"add", "echo"}) ||
		loaded.Upstreams[0].Credentials.Headers["X-Demo-Key"] != "k-123" {
		t.Errorf("instance = %+v", loaded)
	}

	// Lists show what was made, without secrets.
	code, table, _ := admin(t, "config", "list", "--org", org.ID)
	if code != 0 || !strings.Contains(table, cfg.ID) || strings.Contains(table, "k-123") {
		t.Errorf("config list (exit %d) must show the config and no secret:\n%s", code, table)
	}
	code, table, _ = admin(t, "key", "list", "--instance", inst.ID)
	if code != 0 || !strings.Contains(table, key.Prefix) || strings.Contains(table, key.Key) {
		t.Errorf("key list (exit %d) must show the prefix and not the key:\n%s", code, table)
	}

	// Rate limits: set, read back with the key and instance, removed.
	var limited map[string]any
	adminJSON(t, &limited, "key", "limit", "--key", key.ID, "--rate", "2.5")
	adminJSON(t, &limited, "instance", "limit", "--instance", inst.ID, "--rate", "50", "--burst", "80")
	k, _ = db.LookupAPIKey(context.Background(), tenant.HashKey(key.Key))
	loaded, _ = db.LoadInstanceConfig(context.Background(), inst.ID)
	if k.RateLimit != (tenant.RateLimit{PerSecond: 2.5, Burst: 3}) || loaded.RateLimit != (tenant.RateLimit{PerSecond: 50, Burst: 80}) {
		t.Errorf("limits: key %+v, instance %+v; want 2.5/s burst 3, 50/s burst 80", k.RateLimit, loaded.RateLimit)
	}
	adminJSON(t, &limited, "key", "limit", "--key", key.ID, "--rate", "0")
	if k, _ = db.LookupAPIKey(context.Background(), tenant.HashKey(key.Key)); k.RateLimit.Limited() {
		t.Errorf("key limit removed, still %+v", k.RateLimit)
	}
	if code, _, stderr := admin(t, "key", "limit", "--key", key.ID, "--rate", "-1"); code != 1 || !strings.Contains(stderr, "not negative") {
		t.Errorf("negative rate: exit %d, %s", code, stderr)
	}

	// Quotas: set, shown by usage against the calls counted.
	var quota struct {
		Quota struct {
			PerDay   int64 `json:"calls_per_day"`
			PerMonth int64 `json:"calls_per_month"`
		} `json:"quota"`
		CallsToday int64 `json:"calls_today"`
	}
	adminJSON(t, &quota, "key", "quota", "--key", key.ID, "--per-day", "1000")
	adminJSON(t, &quota, "org", "quota", "--org", org.ID, "--per-month", "50000")
	if quota.Quota.PerMonth != 50000 || quota.CallsToday != 0 {
		t.Errorf("org quota = %+v", quota)
	}
	if code, table, _ = admin(t, "key", "list", "--instance", inst.ID); code != 0 || !strings.Contains(table, "1000/day, 0/month") {
		t.Errorf("key list (exit %d) must show the key's quota:\n%s", code, table)
	}
	code, table, _ = admin(t, "usage", "--key", key.ID)
	if code != 0 || !strings.Contains(table, "day") || !strings.Contains(table, "1000") || !strings.Contains(table, "ok") {
		t.Errorf("usage --key (exit %d) must show the daily quota:\n%s", code, table)
	}

	// Revoking makes the key unusable.
	var revoked map[string]any
	adminJSON(t, &revoked, "key", "revoke", "--key", key.ID)
	k, _ = db.LookupAPIKey(context.Background(), tenant.HashKey(key.Key))
	if k.Check(time.Now()) != tenant.ErrKeyInactive {
		t.Errorf("revoked key check = %v", k.Check(time.Now()))
	}

	// Deleting the instance hides it from the default list.
	var deleted, list map[string]any
	adminJSON(t, &deleted, "instance", "delete", "--instance", inst.ID)
	adminJSON(t, &list, "instance", "list", "--org", org.ID)
	if n := len(list["instances"].([]any)); n != 0 {
		t.Errorf("%d instances listed after delete; want 0", n)
	}
}

func TestSyncTools(t *testing.T) {
	setupEnv(t)
	upstream := demotest.StartUpstream(t, "")
	var org map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	var server struct {
		ID    string   `json:"id"`
		Tools []string `json:"tools"`
	}
	adminJSON(t, &server, "server", "create", "--org", org["id"].(string), "--name", "late", "--transport", "streamable-http",
		"--url", upstream.URL(), "--no-discover")
	if len(server.Tools) != 0 {
		t.Errorf("tools with --no-discover = %v; want none", server.Tools)
	}
	var res postgres.SyncResult
	adminJSON(t, &res, "server", "sync-tools", "--server", server.ID)
	if !slices.Equal(res.Added, demo.ToolNames) || res.Total != len(demo.ToolNames) {
		t.Errorf("sync = %+v; want all demo tools added", res)
	}
	var tools struct{ Tools []postgres.Tool }
	adminJSON(t, &tools, "tool", "disable", "--server", server.ID, "--name", "fail")
	adminJSON(t, &tools, "tool", "list", "--server", server.ID)
	for _, tl := range tools.Tools {
		if tl.Enabled == (tl.Name == "fail") {
			t.Errorf("tool %s enabled = %v", tl.Name, tl.Enabled)
		}
	}
}

func TestStdioDiscovery(t *testing.T) {
	setupEnv(t)
	bin := demotest.Binary(t)
	var org map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	var server struct {
		Tools []string `json:"tools"`
	}
	adminJSON(t, &server, "server", "create", "--org", org["id"].(string), "--name", "local", "--transport", "stdio",
		"--command", bin, "--arg", "--transport", "--arg", "stdio")
	if !slices.Equal(server.Tools, demo.ToolNames) {
		t.Errorf("stdio tools = %v; want %v", server.Tools, demo.ToolNames)
	}
}

func TestErrors(t *testing.T) {
	setupEnv(t)
	var org map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	orgID := org["id"].(string)
	unknown := "00000000-0000-0000-0000-000000000000"

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown subcommand", []string{"org", "explode"}, 2, `unknown command "org explode"`},
		{"missing flag", []string{"org", "create"}, 2, "--name is required"},
		{"bad transport", []string{"server", "create", "--org", orgID, "--name", "x", "--transport", "carrier-pigeon", "--url", "http://x"}, 2, "unknown transport"},
		{"bad URL", []string{"server", "create", "--org", orgID, "--name", "x", "--transport", "sse", "--url", "not a url"}, 2, "bad URL"},
		{"unreachable upstream", []string{"server", "create", "--org", orgID, "--name", "x", "--transport", "streamable-http", "--url", "http://127.0.0.1:1/mcp"}, 1, "discover tools"},
		{"missing stdio command", []string{"server", "create", "--org", orgID, "--name", "x", "--transport", "stdio", "--command", "no-such-command-here"}, 1, "not found on this machine"},
		{"unknown org", []string{"server", "create", "--org", unknown, "--name", "x", "--transport", "streamable-http", "--url", "http://127.0.0.1:1/", "--no-discover"}, 1, "organization: no such record"},
		{"unknown instance", []string{"key", "create", "--instance", unknown}, 1, "no such record"},
		{"malformed ID", []string{"key", "revoke", "--key", "nope"}, 1, `api key "nope": no such record`},
		{"bad expiry", []string{"key", "create", "--instance", unknown, "--expires-in", "soon"}, 2, "bad duration"},
		{"usage without instance", []string{"usage"}, 2, "--instance is required"},
		{"usage bad grouping", []string{"usage", "--instance", unknown, "--by", "weekday"}, 2, "want tool or hour"},
		{"usage bad since", []string{"usage", "--instance", unknown, "--since", "yesterday"}, 2, "bad duration"},
		{"usage unknown instance", []string{"usage", "--instance", unknown}, 1, "no such record"},
		{"secret not in argv", []string{"config", "create", "--server", unknown, "--org", orgID, "--env", "TOKEN=hunter2"}, 2, "TOKEN=…: a value on the command line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := admin(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestMissingEncryptionKey(t *testing.T) {
	setupEnv(t)
	t.Setenv("MCP_ENCRYPTION_KEY", "")
	var org map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	var server map[string]any
	adminJSON(t, &server, "server", "create", "--org", org["id"].(string), "--name", "x", "--transport", "streamable-http", "--url", "http://127.0.0.1:1/", "--no-discover")
	code, _, errOut := adminIn(t, `{"env": {"A": "b"}}`, "config", "create", "--server", server["id"].(string), "--org", org["id"].(string), "--env", "A")
	if code != 1 || !strings.Contains(errOut, "MCP_ENCRYPTION_KEY") {
		t.Errorf("exit %d, stderr %q; want exit 1 naming MCP_ENCRYPTION_KEY", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	url := setupEnv(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Options{URL: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	org, err := db.CreateOrganization(ctx, "Acme", "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := db.CreateServer(ctx, postgres.Server{OrganizationID: org.ID, Name: "demo", Transport: tenant.TransportStreamableHTTP,
		URL: "http://127.0.0.1:1/mcp"}, []postgres.Tool{{Name: "echo"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := db.CreateConfig(ctx, org.ID, srv.ID, "", tenant.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := db.CreateInstance(ctx, org.ID, "", "main", []postgres.Selection{{ConfigID: cfg.ID, Tools: []string{"echo"}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	for _, r := range []struct {
		hour                 time.Time
		tool, method, status string
		n, dur, maxDur       int
	}{
		{now, "demo__echo", "tools/call", "success", 8, 80, 20},
		{now, "demo__echo", "tools/call", "error", 2, 100, 90},
		{now.Add(-time.Hour), "demo__echo", "tools/call", "success", 5, 50, 15},
		{now, "", "tools/list", "success", 3, 3, 1},
		{now.Add(-72 * time.Hour), "demo__echo", "tools/call", "success", 100, 100, 1}, // before --since
	} {
		errs := 0
		if r.status != "success" {
			errs = r.n
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO mcp_server_request_hourly (hour, mcp_server_instance_id, tool_name, method,
    response_status, request_count, error_count, total_duration_ms, max_duration_ms, input_bytes, output_bytes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 10, 20)`, r.hour, inst.ID, r.tool, r.method, r.status, r.n, errs, r.dur, r.maxDur); err != nil {
			t.Fatal(err)
		}
	}

	var byTool struct {
		Rows  []postgres.UsageRow `json:"rows"`
		Total postgres.UsageRow   `json:"total"`
	}
	adminJSON(t, &byTool, "usage", "--instance", inst.ID, "--since", "24h")
	if len(byTool.Rows) != 2 || byTool.Rows[0].Tool != "demo__echo" || byTool.Rows[0].Requests != 15 || byTool.Rows[0].Errors != 2 ||
		byTool.Rows[0].MaxDurationMs != 90 || byTool.Rows[0].AvgDurationMs != 230.0/15 {
		t.Errorf("by tool: %+v; want demo__echo first with 15 requests, 2 errors, max 90 ms, avg 230/15", byTool.Rows)
	}
	if byTool.Total.Requests != 18 || byTool.Total.InputBytes != 40 {
		t.Errorf("total %+v; want 18 requests and 40 input bytes in the last 24 h", byTool.Total)
	}
	var byHour struct {
		Rows []postgres.UsageRow `json:"rows"`
	}
	adminJSON(t, &byHour, "usage", "--instance", inst.ID, "--since", "7d", "--by", "hour")
	if len(byHour.Rows) != 3 || byHour.Rows[0].Requests != 100 || byHour.Rows[2].Requests != 13 || !byHour.Rows[2].Hour.Equal(now) {
		t.Errorf("by hour: %+v; want 3 hours, oldest first, the current one with 13", byHour.Rows)
	}
	code, out, _ := admin(t, "usage", "--instance", inst.ID)
	if code != 0 || !strings.Contains(out, "TOOL") || !strings.Contains(out, "demo__echo") || !strings.Contains(out, "TOTAL") {
		t.Errorf("table output (exit %d):\n%s", code, out)
	}
}

// oauthFixture is an OAUTH server with a config holding a header.
func oauthFixture(t *testing.T) (url, serverID, configID string) {
	t.Helper()
	url = setupEnv(t)
	var org, server, cfg map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	adminJSON(t, &server, "server", "create", "--org", org["id"].(string), "--name", "drive", "--transport", "streamable-http",
		"--url", "https://drive.example/mcp", "--auth", "oauth", "--no-discover")
	adminJSONIn(t, `{"headers": {"X-Tenant": "t-1"}}`, &cfg, "config", "create", "--server", server["id"].(string), "--org", org["id"].(string), "--header", "X-Tenant")
	return url, server["id"].(string), cfg["id"].(string)
}

// TestConfigOAuth stores OAuth settings and tokens from stdin and from a
// file: sealed with the config's header, which is kept, and never printed.
func TestConfigOAuth(t *testing.T) {
	url, serverID, configID := oauthFixture(t)
	ring, _ := keyring.Parse(base64.StdEncoding.EncodeToString([]byte(testKey)))
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url}, ring)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	flags := []string{"config", "oauth", "--config", configID, "--server", serverID, "--token-url", "https://auth.example/token",
		"--client-id", "client-1", "--scopes", "files.read, files.write"}

	stdin := `{"client_secret":"s3cret-client","access_token":"s3cret-access","refresh_token":"s3cret-refresh","token_type":"Bearer","expires_in":3600,"scope":"files.read"}`
	start := time.Now()
	code, out, errOut := adminIn(t, stdin, append(flags, "--json")...)
	if code != 0 {
		t.Fatalf("config oauth: exit %d: %s", code, errOut)
	}
	var printed struct {
		OAuth postgres.OAuthStatus `json:"oauth"`
	}
	if err := json.Unmarshal([]byte(out), &printed); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if !printed.OAuth.HasRefreshToken || !printed.OAuth.HasClientSecret || printed.OAuth.ClientID != "client-1" {
		t.Errorf("printed %+v", printed.OAuth)
	}
	creds, err := db.ConfigCredentials(context.Background(), configID, serverID)
	if err != nil {
		t.Fatal(err)
	}
	o := creds.OAuth
	if o == nil || o.TokenURL != "https://auth.example/token" || o.ClientID != "client-1" || o.ClientSecret != "s3cret-client" ||
		o.AccessToken != "s3cret-access" || o.RefreshToken != "s3cret-refresh" || o.TokenType != "Bearer" ||
		!slices.Equal(o.Scopes, []string{"files.read", "files.write"}) {
		t.Errorf("stored OAuth = %+v", o)
	}
	if o != nil && (o.Expiry.Before(start.Add(time.Hour-time.Second)) || o.Expiry.After(time.Now().Add(time.Hour))) {
		t.Errorf("expiry %v; want expires_in 3600 s from when the command ran", o.Expiry)
	}
	if creds.Headers["X-Tenant"] != "t-1" {
		t.Errorf("headers = %v; want X-Tenant kept", creds.Headers)
	}

	// New tokens from a file, with an absolute expiry, as a table.
	file := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(file, []byte(`{"access_token":"s3cret-access-2","expiry":"2031-05-06T07:08:09Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = admin(t, append(flags, "--tokens-file", file)...)
	if code != 0 || !strings.Contains(out, "2031-05-06T07:08:09Z") || !strings.Contains(errOut, "No refresh token") {
		t.Errorf("config oauth --tokens-file: exit %d\n%s%s", code, out, errOut)
	}
	if creds, err = db.ConfigCredentials(context.Background(), configID, serverID); err != nil {
		t.Fatal(err)
	}
	if o := creds.OAuth; o == nil || o.AccessToken != "s3cret-access-2" || o.RefreshToken != "" || o.ClientSecret != "" ||
		!o.Expiry.Equal(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)) {
		t.Errorf("stored OAuth after the file = %+v; want the file's tokens only", o)
	}
	code, table, _ := admin(t, "config", "list")
	if code != 0 || !strings.Contains(table, configID) || strings.Contains(table+out, "s3cret") {
		t.Errorf("config list (exit %d) must show the config and no secret:\n%s", code, table)
	}
}

func TestConfigOAuthErrors(t *testing.T) {
	_, serverID, configID := oauthFixture(t)
	flags := func(extra ...string) []string {
		return append([]string{"config", "oauth", "--config", configID, "--server", serverID, "--token-url", "https://auth.example/token",
			"--client-id", "client-1"}, extra...)
	}
	var other map[string]any
	adminJSON(t, &other, "org", "create", "--name", "Other")
	var keyServer map[string]any
	adminJSON(t, &keyServer, "server", "create", "--org", other["id"].(string), "--name", "keyed", "--transport", "streamable-http",
		"--url", "https://keyed.example/mcp", "--auth", "api-key", "--no-discover")
	var keyCfg map[string]any
	adminJSONIn(t, `{"headers": {"X-API-Key": "k"}}`, &keyCfg, "config", "create", "--server", keyServer["id"].(string), "--org", other["id"].(string), "--header", "X-API-Key")
	good := `{"refresh_token":"s3cret-refresh"}`

	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		want  string
	}{
		{"missing client ID", []string{"config", "oauth", "--config", configID, "--server", serverID, "--token-url", "https://a/t"}, good, 2, "--client-id is required"},
		{"secret in a flag", flags("--client-secret", "s3cret-client"), good, 2, "flag provided but not defined"},
		{"plain http token URL", []string{"config", "oauth", "--config", configID, "--server", serverID, "--token-url", "http://auth.example/token", "--client-id", "c"}, good, 2, "want an absolute https URL"},
		{"nothing on stdin", flags(), "", 2, "nothing to read"},
		{"malformed JSON", flags(), `{"access_token": s3cret-access}`, 2, "invalid JSON at byte"},
		{"cut short", flags(), `{"access_token": "s3cret-access"`, 2, "cut short"},
		{"misspelt field", flags(), `{"acces_token":"s3cret-access"}`, 2, `unknown field "acces_token"`},
		{"wrong type", flags(), `{"access_token":"s3cret-access","expires_in":"soon"}`, 2, "expires_in has the wrong type"},
		{"no token", flags(), `{"client_secret":"s3cret-client"}`, 2, "neither access_token nor refresh_token"},
		{"two expiries", flags(), `{"access_token":"s3cret-access","expires_in":60,"expiry":"2031-01-01T00:00:00Z"}`, 2, "not both"},
		{"negative lifetime", flags(), `{"access_token":"s3cret-access","expires_in":-5}`, 2, "positive number"},
		{"two objects", flags(), good + good, 2, "more than one JSON value"},
		{"missing file", flags("--tokens-file", filepath.Join(t.TempDir(), "none.json")), "", 1, "read --tokens-file"},
		{"not an OAUTH server", []string{"config", "oauth", "--config", keyCfg["id"].(string), "--server", keyServer["id"].(string),
			"--token-url", "https://a/t", "--client-id", "c"}, good, 1, "not OAUTH"},
		{"another server", []string{"config", "oauth", "--config", configID, "--server", keyServer["id"].(string),
			"--token-url", "https://a/t", "--client-id", "c"}, good, 1, "is not a config of server"},
		{"unknown config", []string{"config", "oauth", "--config", "00000000-0000-0000-0000-000000000000", "--server", serverID,
			"--token-url", "https://a/t", "--client-id", "c"}, good, 1, "no such record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := adminIn(t, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tt.code, tt.want)
			}
			if strings.Contains(out+errOut, "s3cret") {
				t.Errorf("a secret was echoed:\n%s%s", out, errOut)
			}
		})
	}
}

// TestSyncToolsWithOAuth: an OAUTH server's tools are discovered with the
// access token its config holds; without a config the command says the
// tokens are missing.
func TestSyncToolsWithOAuth(t *testing.T) {
	setupEnv(t)
	inner := demotest.StartUpstream(t, "")
	target, _ := neturl.Parse(inner.URL())
	guarded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret-access" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	t.Cleanup(guarded.Close)

	var org, server, cfg map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	code, _, errOut := admin(t, "server", "create", "--org", org["id"].(string), "--name", "drive", "--transport", "streamable-http",
		"--url", guarded.URL, "--auth", "oauth")
	if code != 2 || !strings.Contains(errOut, "--no-discover") {
		t.Errorf("server create --auth oauth with discovery: exit %d, %q; want a usage error pointing to --no-discover", code, errOut)
	}
	adminJSON(t, &server, "server", "create", "--org", org["id"].(string), "--name", "drive", "--transport", "streamable-http",
		"--url", guarded.URL, "--auth", "oauth", "--no-discover")
	serverID := server["id"].(string)
	adminJSON(t, &cfg, "config", "create", "--server", serverID, "--org", org["id"].(string))
	code, _, errOut = adminIn(t, `{"access_token":"s3cret-access","expires_in":3600}`, "config", "oauth", "--config", cfg["id"].(string),
		"--server", serverID, "--token-url", "https://auth.example/token", "--client-id", "c")
	if code != 0 {
		t.Fatalf("config oauth: exit %d: %s", code, errOut)
	}

	code, _, errOut = admin(t, "server", "sync-tools", "--server", serverID)
	if code != 1 || !strings.Contains(errOut, "no OAuth tokens") || !strings.Contains(errOut, "re-authorisation") {
		t.Errorf("sync-tools without a config: exit %d, %q; want the missing tokens named", code, errOut)
	}
	var res postgres.SyncResult
	adminJSON(t, &res, "server", "sync-tools", "--server", serverID, "--config", cfg["id"].(string))
	if !slices.Equal(res.Added, demo.ToolNames) {
		t.Errorf("sync with the config's token = %+v; want all demo tools", res)
	}
}

// TestSecretsStayOutOfArgv: header and environment values are secrets,
// and argv is visible to every user of the machine (ps) and kept in shell
// history. A NAME=VALUE flag is refused without echoing the value; the
// values come as JSON on stdin or from --secrets-file.
func TestSecretsStayOutOfArgv(t *testing.T) {
	url := setupEnv(t)
	upstream := demotest.StartUpstream(t, "")
	var org, server map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	orgID := org["id"].(string)
	adminJSONIn(t, `{"headers": {"X-Demo-Key": "k-discovery"}, "env": {"DEMO_TOKEN": "t-discovery"}}`, &server, "server", "create",
		"--org", orgID, "--name", "Demo", "--transport", "streamable-http", "--url", upstream.URL(), "--auth", "api-key",
		"--header", "X-Demo-Key", "--env", "DEMO_TOKEN", "--secrets-file", "-")
	serverID := server["id"].(string)

	for _, args := range [][]string{
		{"config", "create", "--server", serverID, "--org", orgID, "--header", "X-Demo-Key=argv-secret-1"},
		{"config", "create", "--server", serverID, "--org", orgID, "--env", "DEMO_TOKEN=argv-secret-1"},
		{"server", "create", "--org", orgID, "--name", "x", "--transport", "streamable-http", "--url", upstream.URL(),
			"--header", "X-Demo-Key=argv-secret-1"},
	} {
		code, out, errOut := admin(t, args...)
		if code != 2 || strings.Contains(out+errOut, "argv-secret-1") || !strings.Contains(errOut, "--secrets-file") {
			t.Errorf("mcpadmin %s: exit %d, %q; want exit 2 pointing at --secrets-file, without the value", args[:2], code, errOut)
		}
	}

	secrets := `{"headers": {"X-Demo-Key": "k-stdin"}, "env": {"DEMO_TOKEN": "t-stdin"}}`
	var fromStdin map[string]any
	adminJSONIn(t, secrets, &fromStdin, "config", "create", "--server", serverID, "--org", orgID,
		"--header", "X-Demo-Key", "--env", "DEMO_TOKEN")
	file := filepath.Join(t.TempDir(), "secrets.json")
	os.WriteFile(file, []byte(`{"headers": {"X-Demo-Key": "k-file"}}`), 0o600)
	var fromFile map[string]any
	adminJSON(t, &fromFile, "config", "create", "--server", serverID, "--org", orgID, "--header", "X-Demo-Key", "--secrets-file", file)

	ring, _ := keyring.Parse(base64.StdEncoding.EncodeToString([]byte(testKey)))
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url}, ring)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tt := range []struct {
		cfg         map[string]any
		header, env string
	}{{fromStdin, "k-stdin", "t-stdin"}, {fromFile, "k-file", ""}} {
		var inst map[string]any
		adminJSON(t, &inst, "instance", "create", "--org", orgID, "--name", "i-"+tt.header, "--config", tt.cfg["id"].(string))
		loaded, err := db.LoadInstanceConfig(context.Background(), inst["id"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if c := loaded.Upstreams[0].Credentials; c.Headers["X-Demo-Key"] != tt.header || c.Env["DEMO_TOKEN"] != tt.env {
			t.Errorf("stored credentials %v, %v; want header %q and env %q", c.Headers, c.Env, tt.header, tt.env)
		}
	}

	for _, tt := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"value missing", `{"headers": {}}`, []string{"--header", "X-Demo-Key"}, `no value for header "X-Demo-Key"`},
		{"value not asked for", `{"headers": {"X-Demo-Key": "k", "X-Other": "o"}}`, []string{"--header", "X-Demo-Key"}, `"X-Other" is not named by --header`},
		{"not JSON", `k-raw-secret`, []string{"--header", "X-Demo-Key"}, "invalid JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := adminIn(t, tt.stdin, append([]string{"config", "create", "--server", serverID, "--org", orgID}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.want) || strings.Contains(errOut, "k-raw-secret") {
				t.Errorf("exit %d, %q; want exit 2 and %q", code, errOut, tt.want)
			}
		})
	}
}

// adminJSONIn is adminJSON with stdin.
func adminJSONIn(t *testing.T, stdin string, into any, args ...string) {
	t.Helper()
	code, out, errOut := adminIn(t, stdin, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("mcpadmin %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("mcpadmin %s: output is not one JSON object: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPlainHTTPServer: a server at a plain http URL other than a loopback
// address is refused before anything is sent to it, with the way to opt
// out; --allow-http on server create and server update set and clear the
// opt-out, and the proxy's view of the server (LoadInstanceConfig)
// follows it.
func TestPlainHTTPServer(t *testing.T) {
	setupEnv(t)
	var org map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	orgID := org["id"].(string)
	create := []string{"server", "create", "--org", orgID, "--name", "plain", "--transport", "streamable-http",
		"--url", "http://upstream.invalid/mcp", "--auth", "api-key", "--header", "X-API-Key", "--secrets-file", "-"}
	const secrets = `{"headers": {"X-API-Key": "hunter2"}}`

	code, _, errOut := adminIn(t, secrets, create...)
	if code != 1 || !strings.Contains(errOut, "upstream plain") || !strings.Contains(errOut, "https") || !strings.Contains(errOut, "--allow-http") {
		t.Errorf("create over plain http: exit %d, stderr %q; want 1 and a refusal naming https and --allow-http", code, errOut)
	}
	if strings.Contains(errOut, "hunter2") {
		t.Errorf("stderr %q holds the header's value", errOut)
	}

	var server postgres.Server
	adminJSONIn(t, secrets, &server, append(create, "--allow-http", "--no-discover")...)
	if !server.AllowHTTP {
		t.Errorf("created with --allow-http: allow_http = false")
	}
	ring, _ := keyring.Parse(base64.StdEncoding.EncodeToString([]byte(testKey)))
	db, err := postgres.Open(context.Background(), postgres.Options{URL: os.Getenv("DATABASE_URL")}, ring)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SyncTools(context.Background(), server.ID, []postgres.Tool{{Name: "echo"}}); err != nil {
		t.Fatal(err)
	}
	var cfg postgres.Config
	adminJSONIn(t, secrets, &cfg, "config", "create", "--org", orgID, "--server", server.ID, "--header", "X-API-Key")
	var inst map[string]any
	adminJSON(t, &inst, "instance", "create", "--org", orgID, "--name", "main", "--config", cfg.ID)
	allowed := func() bool {
		t.Helper()
		loaded, err := db.LoadInstanceConfig(context.Background(), inst["id"].(string))
		if err != nil || len(loaded.Upstreams) != 1 {
			t.Fatalf("load instance: %v, %+v", err, loaded)
		}
		return loaded.Upstreams[0].AllowHTTP
	}
	if !allowed() {
		t.Error("the proxy's upstream of a server created with --allow-http does not allow http")
	}

	var updated postgres.Server
	adminJSON(t, &updated, "server", "update", "--server", server.ID, "--allow-http=false")
	if updated.AllowHTTP || updated.ID != server.ID || updated.URL != server.URL {
		t.Errorf("after update --allow-http=false: %+v; want the same server without allow_http", updated)
	}
	if allowed() {
		t.Error("the proxy's upstream still allows http after update --allow-http=false")
	}
	code, _, errOut = admin(t, "server", "sync-tools", "--server", server.ID, "--config", cfg.ID)
	if want := "server update --server " + server.ID + " --allow-http"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("sync-tools: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}

	if code, _, errOut := admin(t, "server", "update", "--server", server.ID); code != 2 || !strings.Contains(errOut, "--allow-http") {
		t.Errorf("update without a change: exit %d, stderr %q; want 2 naming --allow-http", code, errOut)
	}
}

// TestUsersAndGrants: users are added to an organization; the OAuth grants
// of an instance are listed and revoked.
func TestUsersAndGrants(t *testing.T) {
	url := setupEnv(t)
	var org map[string]any
	adminJSON(t, &org, "org", "create", "--name", "Acme")
	orgID := org["id"].(string)
	var user struct{ ID, Email, Role string }
	adminJSON(t, &user, "user", "add", "--org", orgID, "--name", "Ada", "--email", "ada@example.com")
	if user.Email != "ada@example.com" || user.Role != "MEMBER" {
		t.Errorf("user add: %+v", user)
	}
	if code, _, errOut := admin(t, "user", "add", "--org", orgID, "--name", "Bob", "--role", "king"); code != 1 || errOut == "" {
		t.Errorf("user add with an unknown role: exit %d %q; want 1 and a message", code, errOut)
	}
	var users struct{ Users []struct{ Name string } }
	adminJSON(t, &users, "user", "list", "--org", orgID)
	if len(users.Users) != 2 || users.Users[1].Name != "Ada" {
		t.Errorf("user list: %+v; want the owner and Ada", users)
	}

	upstream := demotest.StartUpstream(t, "")
	var server, cfg, inst struct{ ID string }
	adminJSON(t, &server, "server", "create", "--org", orgID, "--name", "Demo", "--transport", "streamable-http", "--url", upstream.URL())
	adminJSON(t, &cfg, "config", "create", "--server", server.ID, "--org", orgID)
	adminJSON(t, &inst, "instance", "create", "--org", orgID, "--name", "main", "--config", cfg.ID)
	db, err := postgres.Open(context.Background(), postgres.Options{URL: url}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	grantID, err := db.CreateOAuthCode(t.Context(), postgres.NewGrant{ClientID: "https://client.example/meta.json", ClientName: "Example",
		InstanceID: inst.ID, UserID: user.ID, Resource: "https://proxy.example/mcp/" + inst.ID, Scope: "mcp"},
		[32]byte{1}, "https://client.example/cb", strings.Repeat("c", 43), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var grants struct{ Grants []postgres.GrantRow }
	adminJSON(t, &grants, "grant", "list", "--instance", inst.ID)
	if len(grants.Grants) != 1 || grants.Grants[0].ID != grantID || grants.Grants[0].RevokedAt != nil {
		t.Fatalf("grant list: %+v", grants)
	}
	var revoked map[string]any
	adminJSON(t, &revoked, "grant", "revoke", "--grant", grantID)
	g, err := db.LookupOAuthGrant(t.Context(), grantID)
	if err != nil || g.Check(time.Now()) != tenant.ErrGrantRevoked {
		t.Errorf("revoked grant: %v %v", g, err)
	}
	if code, _, _ := admin(t, "grant", "revoke", "--grant", "nope"); code != 1 {
		t.Errorf("grant revoke of a malformed ID: exit %d; want 1", code)
	}
}
