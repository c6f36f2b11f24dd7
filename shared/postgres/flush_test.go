package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestLockFlush: one Flush at a time holds the lock, whatever the
// connection; Close gives it up and may be called twice.
func TestLockFlush(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	first, ok, err := db.LockFlush(ctx)
	if err != nil || !ok {
		t.Fatalf("first lock: ok %v, %v; want the lock", ok, err)
	}
	second, ok, err := db.LockFlush(ctx)
	if err != nil || ok || second != nil {
		t.Fatalf("second lock: %v, ok %v, %v; want none while the first holds it", second, ok, err)
	}
	first.Close()
	first.Close()
	third, ok, err := db.LockFlush(ctx)
	if err != nil || !ok {
		t.Fatalf("lock after Close: ok %v, %v; want it free again", ok, err)
	}
	third.Close()
	if st := db.Stats(); st.Acquired != 0 {
		t.Errorf("%d connections still acquired; want none after Close", st.Acquired)
	}
}

// TestFlushRefused: an entry ID copied twice is refused for its data, and
// the transaction stores nothing; a cancelled context is not a refusal.
func TestFlushRefused(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	f := newFixture(t, db)
	inst := f.instance(t, db, postgres.Selection{ConfigID: f.alphaCfg.ID, Tools: []string{"search"}})
	e := tenant.LogEntry{ID: "entry-1", UserID: f.org.OwnerUserID, InstanceID: inst.ID, Method: "tools/list",
		Status: tenant.StatusSuccess, CreatedAt: time.Now()}
	flush, ok, err := db.LockFlush(ctx)
	if err != nil || !ok {
		t.Fatalf("lock: ok %v, %v", ok, err)
	}
	defer flush.Close()
	tx, err := flush.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := tx.Claim(ctx, []string{"batch-1"}, []int{2})
	if err != nil || !fresh["batch-1"] {
		t.Fatalf("claim: %v, %v; want batch-1 fresh", fresh, err)
	}
	err = tx.CopyEntries(ctx, []tenant.LogEntry{e, e})
	if !postgres.Refused(err) {
		t.Errorf("copying one ID twice: %v; want a refusal", err)
	}
	tx.Rollback()
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM log_flush_batches`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d batches claimed after the rollback (%v); want none", n, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := flush.Begin(cancelled); err == nil || postgres.Refused(err) || postgres.Refused(errors.New("other")) {
		t.Errorf("begin on a cancelled context: %v; want an error that is no refusal", err)
	}
}
