package postgres_test

import (
	"context"
	"encoding/hex"
	"slices"
	"testing"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Limits set by the admin come back with the key and the instance the
// proxy loads, and each change reaches the change feed.
func TestRateLimits(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	inst := f.instance(t, db, postgres.Selection{ConfigID: f.alphaCfg.ID})
	row, key, err := db.CreateAPIKey(ctx, inst.ID, "", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	hash := tenant.HashKey(key)
	cursor, _ := db.LastChange(ctx)

	if err := db.SetKeyRateLimit(ctx, row.ID, tenant.RateLimit{PerSecond: 2.5}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetInstanceRateLimit(ctx, inst.ID, tenant.RateLimit{PerSecond: 100, Burst: 300}); err != nil {
		t.Fatal(err)
	}
	k, err := db.LookupAPIKey(ctx, hash)
	if err != nil || k.RateLimit != (tenant.RateLimit{PerSecond: 2.5, Burst: 3}) {
		t.Errorf("key limit %+v, %v; want 2.5/s, burst 3 (one second's worth, rounded up)", k.RateLimit, err)
	}
	i, err := db.LoadInstanceConfig(ctx, inst.ID)
	if err != nil || i.RateLimit != (tenant.RateLimit{PerSecond: 100, Burst: 300}) {
		t.Errorf("instance limit %+v, %v; want 100/s, burst 300", i.RateLimit, err)
	}
	changes, _ := db.ChangesSince(ctx, cursor, 10)
	var got []string
	for _, c := range changes {
		got = append(got, c.Kind+":"+c.Ref)
	}
	if want := []string{"key:" + hex.EncodeToString(hash[:]), "instance:" + inst.ID}; !slices.Equal(got, want) {
		t.Errorf("changes %v; want %v", got, want)
	}

	if err := db.SetKeyRateLimit(ctx, row.ID, tenant.RateLimit{}); err != nil {
		t.Fatal(err)
	}
	if k, _ := db.LookupAPIKey(ctx, hash); k.RateLimit.Limited() {
		t.Errorf("limit removed, still %+v", k.RateLimit)
	}
	for _, bad := range []tenant.RateLimit{{PerSecond: -1}, {Burst: 5}, {PerSecond: 1, Burst: -1}, {PerSecond: 1e7}} {
		if err := db.SetKeyRateLimit(ctx, row.ID, bad); err == nil {
			t.Errorf("limit %+v accepted", bad)
		}
	}
	if err := db.SetInstanceRateLimit(ctx, "00000000-0000-0000-0000-000000000000", tenant.RateLimit{PerSecond: 1}); err == nil {
		t.Errorf("limit of an unknown instance accepted")
	}
}
