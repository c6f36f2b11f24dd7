package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// addUsage counts entries as FlushLogs does, in a flush transaction.
func addUsage(t *testing.T, db *postgres.DB, entries []tenant.LogEntry) {
	t.Helper()
	ctx := context.Background()
	flush, ok, err := db.LockFlush(ctx)
	if err != nil || !ok {
		t.Fatalf("lock flush: %v %v", ok, err)
	}
	defer flush.Close()
	tx, err := flush.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.AddUsage(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// Calls counted by the flush block a key at its daily quota, and its
// organization at its monthly one, until the period ends; the blocks
// reach the change feed; raising a quota lifts the block.
func TestQuotas(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	inst := f.instance(t, db, postgres.Selection{ConfigID: f.alphaCfg.ID})
	row, _, err := db.CreateAPIKey(ctx, inst.ID, "", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetQuota(ctx, postgres.QuotaKey, row.ID, postgres.Quota{PerDay: 3}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetQuota(ctx, postgres.QuotaOrg, f.org.ID, postgres.Quota{PerMonth: 5}); err != nil {
		t.Fatal(err)
	}
	cursor, _ := db.LastChange(ctx)
	entries := func(n int, status string) []tenant.LogEntry {
		var out []tenant.LogEntry
		for i := range n {
			out = append(out, tenant.LogEntry{ID: fmt.Sprint(i), UserID: f.org.OwnerUserID, OrganizationID: f.org.ID, InstanceID: inst.ID,
				APIKeyID: row.ID, Method: "tools/call", Status: status, CreatedAt: time.Now()})
		}
		return out
	}
	addUsage(t, db, entries(2, tenant.StatusSuccess))
	addUsage(t, db, entries(4, tenant.StatusRateLimited)) // not counted
	if blocks, _ := db.QuotaBlocks(ctx); len(blocks) != 0 {
		t.Fatalf("blocks after 2 calls of 3: %+v", blocks)
	}
	addUsage(t, db, entries(1, tenant.StatusError))
	blocks, err := db.QuotaBlocks(ctx)
	if err != nil || len(blocks) != 1 || blocks[0].Scope != postgres.QuotaKey || blocks[0].Period != postgres.QuotaDay || blocks[0].Quota != 3 {
		t.Fatalf("blocks after 3 calls of 3 = %+v, %v; want the key's daily", blocks, err)
	}
	tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	if !blocks[0].Until.Equal(tomorrow) {
		t.Errorf("block until %v; want %v", blocks[0].Until, tomorrow)
	}
	changes, _ := db.ChangesSince(ctx, cursor, 10)
	if len(changes) != 1 || changes[0].Kind != postgres.ChangeQuota {
		t.Fatalf("changes %+v; want one quota change", changes)
	}
	b, err := postgres.ParseQuotaBlock(changes[0].Ref)
	if err != nil || b.ID != row.ID || b.Quota != 3 || !b.Until.Equal(tomorrow) {
		t.Errorf("change %q = %+v, %v", changes[0].Ref, b, err)
	}
	cursor = changes[0].ID

	addUsage(t, db, entries(2, tenant.StatusSuccess)) // the organization's 5th call this month
	u, err := db.QuotaUsage(ctx, postgres.QuotaOrg, f.org.ID)
	if err != nil || u.CallsMonth != 5 || u.Quota.PerMonth != 5 || len(u.Blocks) != 1 || u.Blocks[0].Period != postgres.QuotaMonth {
		t.Errorf("org usage %+v, %v; want 5 of 5 this month, blocked", u, err)
	}

	// A higher quota lifts the key's block, through the feed too.
	if err := db.SetQuota(ctx, postgres.QuotaKey, row.ID, postgres.Quota{PerDay: 100}); err != nil {
		t.Fatal(err)
	}
	u, _ = db.QuotaUsage(ctx, postgres.QuotaKey, row.ID)
	if u.CallsToday != 5 || len(u.Blocks) != 0 {
		t.Errorf("key usage %+v; want 5 today, no block", u)
	}
	changes, _ = db.ChangesSince(ctx, cursor, 10)
	var lifted bool
	for _, c := range changes {
		if c.Kind == postgres.ChangeQuota && strings.HasPrefix(c.Ref, "key:"+row.ID+":day:0:") {
			lifted = true
		}
	}
	if !lifted {
		t.Errorf("no lift in the feed: %+v", changes)
	}
	if err := db.SetQuota(ctx, postgres.QuotaKey, row.ID, postgres.Quota{PerDay: -1}); err == nil {
		t.Errorf("a negative quota accepted")
	}
}
