package stack

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/jackc/pgx/v5"
)

// TestPostgresRestart: a stopped server refuses connections and comes back
// on the same port with what was committed.
func TestPostgresRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := OpenToOthers(dir); err != nil {
		t.Fatal(err)
	}
	pg, err := StartPostgres(ctx, PostgresOptions{Dir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	exec := func(sql string) error {
		c, err := pgx.Connect(ctx, pg.URL())
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	port := pg.Port()
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("a stopped Postgres took a query")
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if pg.Port() != port {
		t.Errorf("port after restart = %d; want %d", pg.Port(), port)
	}
	if err := exec("DO $$ BEGIN IF (SELECT n FROM kept) <> 42 THEN RAISE 'lost'; END IF; END $$"); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

// TestPostgresInPrivateFolder: a checkout whose parents the postgres
// user cannot enter (in root's home, in a mktemp -d folder) still gets
// its Postgres, and nothing of it is left after Close.
func TestPostgresInPrivateFolder(t *testing.T) {
	ctx := context.Background()
	private, err := os.MkdirTemp("", "private-checkout-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(private)
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	pg, err := StartPostgres(ctx, PostgresOptions{Dir: filepath.Join(private, "clone", ".devstack"), Logf: t.Logf})
	if err != nil {
		t.Fatalf("Postgres in a folder under %s (mode 0700): %v", private, err)
	}
	c, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		pg.Close()
		t.Fatal(err)
	}
	var one int
	err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
	c.Close(ctx)
	if err != nil || one != 1 {
		t.Errorf("SELECT 1 = %d, %v", one, err)
	}
	data := pg.data
	pg.Close()
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the data folder %s is left after Close (%v)", data, err)
	}
	if fi, err := os.Stat(private); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the private folder's mode is now %v (%v); want it left 0700", fi.Mode().Perm(), err)
	}
}

// TestFirestoreRestart: a restartable emulator keeps its documents across
// Stop and Start, at the same address, and is unreachable in between.
func TestFirestoreRestart(t *testing.T) {
	ctx := context.Background()
	const project = "stack-test"
	fs, err := StartFirestore(ctx, FirestoreOptions{Dir: t.TempDir(), Project: project, Restartable: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	t.Setenv("FIRESTORE_EMULATOR_HOST", fs.Host())
	client, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	doc := client.Collection("c").Doc("kept")
	if _, err := doc.Set(ctx, map[string]any{"n": 42}); err != nil {
		t.Fatal(err)
	}
	host := fs.Host()
	if err := fs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = client.Collection("c").Doc("other").Set(short, map[string]any{"n": 1})
	cancel()
	if err == nil {
		t.Fatal("a stopped emulator took a write")
	}
	if err := fs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if fs.Host() != host {
		t.Errorf("host after restart = %s; want %s", fs.Host(), host)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n, _ := snap.DataAt("n"); n != int64(42) {
		t.Errorf("after restart n = %v; want 42", n)
	}
}
