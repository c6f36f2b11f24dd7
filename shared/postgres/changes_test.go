package postgres_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Each operator change that a proxy caches reaches the change feed, in
// the transaction of the change, naming exactly what changed; what the
// proxy does not cache (a key's last use) does not.
func TestChangeFeed(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	inst := f.instance(t, db, postgres.Selection{ConfigID: f.alphaCfg.ID, Tools: []string{"search", "fetch"}})
	row, key, err := db.CreateAPIKey(ctx, inst.ID, "", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	cursor, err := db.LastChange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// since returns what changed after the cursor and moves it.
	since := func(t *testing.T) []string {
		t.Helper()
		changes, err := db.ChangesSince(ctx, cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range changes {
			if c.ID <= cursor {
				t.Errorf("change %d after cursor %d", c.ID, cursor)
			}
			cursor = c.ID
			out = append(out, c.Kind+":"+c.Ref)
		}
		return out
	}
	check := func(t *testing.T, what string, want ...string) {
		t.Helper()
		if got := since(t); !slices.Equal(got, want) {
			t.Errorf("%s: changes %v; want %v", what, got, want)
		}
	}
	hash := tenant.HashKey(key)

	if _, err := db.Pool.Exec(ctx, `UPDATE mcp_api_keys SET last_used_at = now() WHERE id = $1`, row.ID); err != nil {
		t.Fatal(err)
	}
	check(t, "last use recorded")
	if err := db.RevokeAPIKey(ctx, row.ID); err != nil {
		t.Fatal(err)
	}
	check(t, "key revoked", "key:"+hex.EncodeToString(hash[:]))
	if _, err := db.Pool.Exec(ctx, `UPDATE mcp_api_keys SET expires_at = $2 WHERE id = $1`, row.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	check(t, "key expired early", "key:"+hex.EncodeToString(hash[:]))

	if err := db.SetToolEnabled(ctx, f.alpha.ID, "search", false); err != nil {
		t.Fatal(err)
	}
	check(t, "tool switched off", "server:"+f.alpha.ID)
	// A sync that changes nothing the proxy reads records nothing; one
	// that marks tools missing records their server once.
	if _, err := db.SyncTools(ctx, f.alpha.ID, []postgres.Tool{{Name: "search"}, {Name: "fetch"}, {Name: "delete"}}); err != nil {
		t.Fatal(err)
	}
	check(t, "sync without change")
	if _, err := db.SyncTools(ctx, f.alpha.ID, []postgres.Tool{{Name: "search"}}); err != nil {
		t.Fatal(err)
	}
	check(t, "sync with two tools gone", "server:"+f.alpha.ID)

	if err := db.SetInstanceToolsEnabled(ctx, inst.ID, false); err != nil {
		t.Fatal(err)
	}
	check(t, "tool group switched off", "instance:"+inst.ID)
	if _, err := db.SetServerAllowHTTP(ctx, f.alpha.ID, true); err != nil {
		t.Fatal(err)
	}
	check(t, "server changed", "server:"+f.alpha.ID)
	rotated, err := keyring.Parse("next:" + base64.StdEncoding.EncodeToString([]byte("next-test-key-32-bytes-long-0000")) + "," + pgtest.KeyringSpec)
	if err != nil {
		t.Fatal(err)
	}
	db2, err := postgres.Open(ctx, postgres.Options{URL: db.Pool.Config().ConnString()}, rotated)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db2.ReencryptConfigs(ctx); err != nil {
		t.Fatal(err)
	}
	got := since(t)
	slices.Sort(got)
	want := []string{"config:" + f.alphaCfg.ID, "config:" + f.betaCf.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("credentials re-sealed: changes %v; want %v", got, want)
	}
	if err := db.DeleteInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	check(t, "instance deleted", "instance:"+inst.ID)

	// A selection made in one statement is one change of its instance.
	inst2, err := db.CreateInstance(ctx, f.org.ID, "", "second", []postgres.Selection{{ConfigID: f.betaCf.ID}})
	if err != nil {
		t.Fatal(err)
	}
	check(t, "instance created", "instance:"+inst2.ID)

	// A change rolled back leaves nothing.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, `UPDATE user_mcp_server_instances SET deleted_at = now() WHERE id = $1`, inst2.ID)
	tx.Rollback(ctx)
	check(t, "rolled back")

	if last, err := db.LastChange(ctx); err != nil || last != cursor {
		t.Errorf("LastChange = %d, %v; want %d", last, err, cursor)
	}
	if n, err := db.PruneChanges(ctx, 0); err != nil || n == 0 {
		t.Errorf("PruneChanges(0) = %d, %v; want every change gone", n, err)
	}
}
