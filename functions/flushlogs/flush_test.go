package flushlogs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

var errCrash = errors.New("simulated crash")

// world is a migrated database with one instance and three keys, and a
// Firestore collection of its own.
type world struct {
	db       *postgres.DB
	store    *logbuffer.Firestore
	user     string
	org      string
	instance string
	keys     []string
	n        atomic.Int64
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()
	db := pgtest.Open(t, nil)
	seeded, err := stack.Seed(ctx, db, stack.Tenant{Organization: "flush org", OwnerName: "owner", Instance: "flush instance",
		Key: "key 0", Owned: true, Servers: []stack.Server{{
			Server: postgres.Server{Name: "demo", Transport: tenant.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp"},
			Tools:  []postgres.Tool{{Name: "echo"}}, Select: []string{"echo"}}}})
	if err != nil {
		t.Fatal(err)
	}
	org, inst := seeded.Organization, seeded.Instance
	w := &world{db: db, user: org.OwnerUserID, org: org.ID, instance: inst.ID, keys: []string{seeded.KeyID},
		store: &logbuffer.Firestore{Client: firestoretest.Client(t, firestoretest.Host(t)), Collection: firestoretest.Collection(t)}}
	for i := 1; i < 3; i++ {
		row, _, err := db.CreateAPIKey(ctx, inst.ID, org.OwnerUserID, fmt.Sprintf("key %d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		w.keys = append(w.keys, row.ID)
	}
	return w
}

// entry makes the i-th entry: spread over keys, tools, statuses and three
// hours.
func (w *world) entry(i int) tenant.LogEntry {
	statuses := []string{tenant.StatusSuccess, tenant.StatusSuccess, tenant.StatusError, tenant.StatusTimeout}
	e := tenant.LogEntry{
		UserID: w.user, OrganizationID: w.org, InstanceID: w.instance, APIKeyID: w.keys[i%len(w.keys)],
		Method: "tools/call", ToolName: fmt.Sprintf("demo__tool%d", i%4), Transport: "STREAMABLE_HTTPS",
		Status: statuses[i%len(statuses)], DurationMs: int64(i % 50), InputBytes: 100, OutputBytes: int64(i),
		UserAgent: "flush-test", RequestID: fmt.Sprintf("req-%d", i),
		CreatedAt: time.Now().UTC().Add(-time.Duration(i%3) * time.Hour).Add(-time.Duration(i) * time.Millisecond),
	}
	if i%5 == 0 {
		e.Method, e.ToolName = "tools/list", ""
	}
	if e.Status != tenant.StatusSuccess {
		e.ErrorCode, e.ErrorMessage = "-32603", "upstream failed"
	}
	return e
}

// write stores n entries in Firestore in batches of batchSize.
func (w *world) write(t testing.TB, n, batchSize int) {
	t.Helper()
	b := logbuffer.New(w.store, logbuffer.Options{BatchEntries: batchSize})
	for range n {
		b.Append(w.entry(int(w.n.Add(1))))
	}
	if err := b.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (w *world) flusher(opts Options) *Flusher {
	return NewFlusher(w.db, w.store, opts)
}

func (w *world) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := w.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// verify checks the Postgres side against want entries: that many rows,
// no two with one ID, aggregates equal to the rows, last_used_at the
// latest use per key, and no batch document left.
func (w *world) verify(t testing.TB, want int) {
	t.Helper()
	ctx := context.Background()
	if got := w.count(t, `SELECT count(*) FROM mcp_server_request_logs`); got != int64(want) {
		t.Errorf("%d log rows; want %d", got, want)
	}
	if got := w.count(t, `SELECT count(DISTINCT request_id) FROM mcp_server_request_logs`); got != int64(want) {
		t.Errorf("%d distinct requests; want %d", got, want)
	}
	if got := w.count(t, `SELECT coalesce(sum(request_count), 0) FROM mcp_server_request_hourly`); got != int64(want) {
		t.Errorf("aggregates count %d requests; want %d", got, want)
	}
	mismatch := w.count(t, `
WITH rows AS (
    SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour, mcp_server_instance_id,
           tool_name, method, response_status, count(*) AS n,
           count(*) FILTER (WHERE response_status <> 'success') AS errs, sum(duration_ms) AS dur,
           max(duration_ms) AS maxdur, sum(input_bytes) AS inb, sum(output_bytes) AS outb
    FROM mcp_server_request_logs GROUP BY 1, 2, 3, 4, 5),
aggs AS (
    SELECT hour, mcp_server_instance_id, tool_name, method, response_status, request_count, error_count,
           total_duration_ms, max_duration_ms, input_bytes, output_bytes
    FROM mcp_server_request_hourly)
SELECT count(*) FROM ((SELECT * FROM rows EXCEPT SELECT * FROM aggs) UNION ALL (SELECT * FROM aggs EXCEPT SELECT * FROM rows)) d`)
	if mismatch != 0 {
		t.Errorf("%d aggregate rows differ from the log rows", mismatch)
	}
	if want > 0 {
		stale := w.count(t, `
SELECT count(*) FROM mcp_api_keys k
WHERE k.last_used_at IS DISTINCT FROM (SELECT max(created_at) FROM mcp_server_request_logs l WHERE l.api_key_id = k.id)`)
		if stale != 0 {
			t.Errorf("%d keys whose last_used_at is not their latest use", stale)
		}
	}
	if n, err := w.store.Count(ctx); err != nil || n != 0 {
		t.Errorf("%d batch documents left (%v); want none", n, err)
	}
}

func run(t *testing.T, f *Flusher) Report {
	t.Helper()
	rep, err := f.Run(context.Background())
	if err != nil {
		t.Fatalf("flush: %v (report %+v)", err, rep)
	}
	return rep
}

func TestFlushExactlyOnce(t *testing.T) {
	w := newWorld(t)
	w.write(t, 500, 37) // 14 batches
	rep := run(t, w.flusher(Options{GroupSize: 4}))
	if rep.Batches != 14 || rep.Entries != 500 || rep.Duplicates != 0 || rep.Remaining != 0 || rep.Skipped != "" || rep.DurationMs <= 0 {
		t.Errorf("report %+v; want 14 batches, 500 entries, nothing left", rep)
	}
	w.verify(t, 500)
	again := run(t, w.flusher(Options{GroupSize: 4}))
	if again.Batches != 0 || again.Entries != 0 {
		t.Errorf("second run %+v; want nothing to do", again)
	}
	w.verify(t, 500)
}

func TestFlushCrashAfterCommit(t *testing.T) {
	w := newWorld(t)
	w.write(t, 300, 25) // 12 batches
	f := w.flusher(Options{GroupSize: 5})
	f.crash = func(stage string) error {
		if stage == "committed" {
			return errCrash
		}
		return nil
	}
	if _, err := f.Run(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("run error %v; want the crash", err)
	}
	if got := w.count(t, `SELECT count(*) FROM mcp_server_request_logs`); got != 125 {
		t.Errorf("%d rows after the crash; want the first group's 125", got)
	}
	if n, _ := w.store.Count(context.Background()); n != 12 {
		t.Errorf("%d documents after the crash; want all 12 (none deleted)", n)
	}
	rep := run(t, w.flusher(Options{GroupSize: 5}))
	if rep.Duplicates != 5 || rep.Batches != 7 || rep.Entries != 175 {
		t.Errorf("rerun %+v; want the 5 copied batches skipped and 7 copied", rep)
	}
	w.verify(t, 300)
}

func TestFlushCrashMidGroup(t *testing.T) {
	w := newWorld(t)
	w.write(t, 200, 20) // 10 batches
	f := w.flusher(Options{GroupSize: 4})
	groups := 0
	f.crash = func(stage string) error {
		if stage == "copied" {
			groups++
			if groups == 2 {
				return errCrash
			}
		}
		return nil
	}
	if _, err := f.Run(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("run error %v; want the crash", err)
	}
	if got := w.count(t, `SELECT count(*) FROM mcp_server_request_logs`); got != 80 {
		t.Errorf("%d rows after the crash; want the first group's 80 (the second rolled back)", got)
	}
	if got := w.count(t, `SELECT count(*) FROM log_flush_batches`); got != 4 {
		t.Errorf("%d batches recorded; want 4", got)
	}
	rep := run(t, w.flusher(Options{GroupSize: 4}))
	if rep.Entries != 120 || rep.Duplicates != 0 {
		t.Errorf("rerun %+v; want the other 120 entries", rep)
	}
	w.verify(t, 200)
}

func TestTwoFlushesAtOnce(t *testing.T) {
	w := newWorld(t)
	w.write(t, 400, 20)
	// The second flusher has a pool of its own, as another function
	// instance would.
	other, err := postgres.Open(context.Background(), postgres.Options{URL: w.db.Pool.Config().ConnString()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	inA := make(chan struct{})
	release := make(chan struct{})
	a := w.flusher(Options{GroupSize: 5})
	var once sync.Once
	a.crash = func(stage string) error {
		if stage == "copied" {
			once.Do(func() { close(inA); <-release })
		}
		return nil
	}
	b := NewFlusher(other, w.store, Options{GroupSize: 5})
	var repA Report
	var errA error
	done := make(chan struct{})
	go func() { repA, errA = a.Run(context.Background()); close(done) }()
	<-inA
	repB := run(t, b)
	close(release)
	<-done
	if errA != nil {
		t.Fatal(errA)
	}
	if repB.Skipped == "" || repB.Entries != 0 {
		t.Errorf("second flush %+v; want it skipped while the first holds the lock", repB)
	}
	if repA.Entries != 400 {
		t.Errorf("first flush %+v; want all 400", repA)
	}
	// Both at once again, with nothing held: whatever the interleaving,
	// each entry is copied once.
	w.write(t, 100, 10)
	var wg sync.WaitGroup
	for _, f := range []*Flusher{w.flusher(Options{GroupSize: 2}), NewFlusher(other, w.store, Options{GroupSize: 2})} {
		wg.Go(func() {
			if _, err := f.Run(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	run(t, w.flusher(Options{}))
	w.verify(t, 500)
}

func TestFlushWhileProxyWrites(t *testing.T) {
	w := newWorld(t)
	buf := logbuffer.New(w.store, logbuffer.Options{BatchEntries: 25, MaxAge: 20 * time.Millisecond})
	stop := make(chan struct{})
	var appended atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if buf.Append(w.entry(int(w.n.Add(1)))) {
					appended.Add(1)
				}
				buf.Kick()
				time.Sleep(2 * time.Millisecond) // about 2,000 entries a second in all
			}
		})
	}
	f := w.flusher(Options{GroupSize: 3})
	flushed := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		flushed += run(t, f).Entries
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := buf.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	flushed += run(t, f).Entries
	if s := buf.Stats(); s.Dropped != 0 {
		t.Fatalf("buffer dropped %d", s.Dropped)
	}
	n := int(appended.Load())
	if n < 100 || flushed != n {
		t.Errorf("flushed %d of %d appended; want all, and traffic during the flushes", flushed, n)
	}
	w.verify(t, n)
}

func TestRetention(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	old := logbuffer.New(w.store, logbuffer.Options{BatchEntries: 10})
	for i := range 30 {
		e := w.entry(i)
		e.CreatedAt = time.Now().Add(-100 * 24 * time.Hour)
		old.Append(e)
	}
	if err := old.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	w.write(t, 20, 10)
	f := w.flusher(Options{RetentionChunk: 7})
	// The first run copies, then removes what is past 90 days.
	rep := run(t, f)
	if rep.Entries != 50 || rep.LogsDeleted != 30 {
		t.Errorf("report %+v; want 50 copied and the 30 old ones removed", rep)
	}
	if got := w.count(t, `SELECT count(*) FROM mcp_server_request_logs`); got != 20 {
		t.Errorf("%d rows left; want the 20 recent ones", got)
	}
	if _, err := w.db.Pool.Exec(ctx, `UPDATE log_flush_batches SET flushed_at = now() - interval '15 days' WHERE batch_id IN (SELECT batch_id FROM log_flush_batches LIMIT 3)`); err != nil {
		t.Fatal(err)
	}
	rep = run(t, f)
	if rep.DedupeDeleted != 3 {
		t.Errorf("report %+v; want 3 dedupe rows removed", rep)
	}
	if got := w.count(t, `SELECT count(*) FROM log_flush_batches`); got != 2 {
		t.Errorf("%d dedupe rows left; want 2", got)
	}
}

func TestUndecodableBatchSetAside(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.write(t, 30, 10)
	bad := w.store.Client.Collection(w.store.Collection).Doc("broken")
	if _, err := bad.Create(ctx, map[string]any{"createdAt": time.Now().Add(-time.Hour), "count": 1,
		"entries": []byte("{not json\n"), "lastUsed": map[string]any{}, "format": 1}); err != nil {
		t.Fatal(err)
	}
	future := w.store.Client.Collection(w.store.Collection).Doc("future")
	if _, err := future.Create(ctx, map[string]any{"createdAt": time.Now().Add(-time.Hour), "count": 0,
		"entries": []byte{}, "lastUsed": map[string]any{}, "format": 99}); err != nil {
		t.Fatal(err)
	}
	rep := run(t, w.flusher(Options{}))
	if rep.SetAside != 2 || rep.Entries != 30 {
		t.Errorf("report %+v; want both broken batches set aside and the 30 entries copied", rep)
	}
	other, err := w.store.Client.Collection(w.store.Collection + "Invalid").Doc("future").Get(ctx)
	if err != nil {
		t.Fatalf("the batch of an unknown format is not kept aside: %v", err)
	}
	if reason, _ := other.DataAt("invalidReason"); !strings.Contains(fmt.Sprint(reason), "format 99") {
		t.Errorf("reason %q; want it to name the unknown format", reason)
	}
	aside, err := w.store.Client.Collection(w.store.Collection + "Invalid").Doc("broken").Get(ctx)
	if err != nil {
		t.Fatalf("the broken batch is not kept aside: %v", err)
	}
	if reason, _ := aside.DataAt("invalidReason"); reason == "" || reason == nil {
		t.Error("the set-aside batch carries no reason")
	}
	w.verify(t, 30)
}

func TestHandler(t *testing.T) {
	w := newWorld(t)
	w.write(t, 10, 10)
	f := w.flusher(Options{})
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/flushlogs", nil))
	var rep Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil || rec.Code != http.StatusOK || rep.Entries != 10 {
		t.Errorf("got %d %s; want 200 with a report of 10 entries", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/flushlogs", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE got %d; want 405", rec.Code)
	}
}

// poison stores a batch document as the proxy would, except for what
// spoil does to its entry lines and lastUsed map. It returns the valid
// entries the document holds.
func (w *world) poison(t *testing.T, id string, n int, spoil func(lines [][]byte, lastUsed map[string]any) ([][]byte, map[string]any)) []tenant.LogEntry {
	t.Helper()
	var lines [][]byte
	var valid []tenant.LogEntry
	lastUsed := map[string]any{}
	for range n {
		e := w.entry(int(w.n.Add(1)))
		e.ID = logbuffer.NewID()
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
		valid = append(valid, e)
		if at, ok := lastUsed[e.APIKeyID].(time.Time); !ok || e.CreatedAt.After(at) {
			lastUsed[e.APIKeyID] = e.CreatedAt
		}
	}
	lines, lastUsed = spoil(lines, lastUsed)
	var entries []byte
	for _, l := range lines {
		entries = append(append(entries, l...), '\n')
	}
	_, err := w.store.Client.Collection(w.store.Collection).Doc(id).Create(context.Background(), map[string]any{
		"createdAt": time.Now().Add(-time.Hour), "count": len(lines), "entries": entries, "lastUsed": lastUsed, "format": 1})
	if err != nil {
		t.Fatal(err)
	}
	return valid
}

// TestPoisonedBatchesDoNotBlock: a batch document with a lastUsed key that
// is not a UUID, and one with a NUL byte in an entry, would each fail the
// group's transaction on every run. The valid entries of both are copied
// once; what is invalid is moved aside, counted and logged.
func TestPoisonedBatchesDoNotBlock(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.write(t, 30, 10)
	w.poison(t, "bad-key", 10, func(lines [][]byte, lastUsed map[string]any) ([][]byte, map[string]any) {
		lastUsed["not-a-uuid"] = time.Now()
		return lines, lastUsed
	})
	w.poison(t, "nul-byte", 6, func(lines [][]byte, lastUsed map[string]any) ([][]byte, map[string]any) {
		// The sixth entry's error message holds a NUL, which Postgres
		// text refuses; the sixth entry is left out of the valid ones.
		lines[5] = bytes.Replace(lines[5], []byte(`"errorMessage":"upstream failed"`), []byte(`"errorMessage":"up\u0000stream"`), 1)
		if !bytes.Contains(lines[5], []byte(`\u0000`)) {
			t.Fatalf("entry 6 of nul-byte has no error message to spoil: %s", lines[5])
		}
		return lines, lastUsed
	})
	var logs bytes.Buffer
	f := w.flusher(Options{GroupSize: 3, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	rep, err := f.Run(ctx)
	if err != nil {
		t.Fatalf("flush: %v (report %+v)", err, rep)
	}
	const want = 30 + 10 + 5
	if rep.Entries != want || rep.SetAside != 2 || rep.EntriesSetAside != 1 {
		t.Errorf("report %+v; want %d entries copied, 2 documents set aside in part, 1 entry among them", rep, want)
	}
	for _, tt := range []struct{ doc, reason string }{{"bad-key", "not-a-uuid"}, {"nul-byte", "NUL"}} {
		aside, err := w.store.Client.Collection(w.store.Collection + "Invalid").Doc(tt.doc).Get(ctx)
		if err != nil {
			t.Errorf("%s is not kept aside: %v", tt.doc, err)
			continue
		}
		if reason, _ := aside.DataAt("invalidReason"); !strings.Contains(fmt.Sprint(reason), tt.reason) {
			t.Errorf("%s set aside for %q; want the reason to name %s", tt.doc, reason, tt.reason)
		}
		if !strings.Contains(logs.String(), tt.doc) {
			t.Errorf("the log does not name %s: %s", tt.doc, logs.String())
		}
	}
	if aside, err := w.store.Client.Collection(w.store.Collection + "Invalid").Doc("nul-byte").Get(ctx); err == nil {
		if entries, _ := aside.DataAt("entries"); bytes.Count(entries.([]byte), []byte("\n")) != 1 {
			t.Errorf("nul-byte kept aside %q; want its one bad entry", entries)
		}
	}
	w.verify(t, want)
	// Exactly once: a second run finds nothing.
	if again := run(t, w.flusher(Options{})); again.Entries != 0 || again.SetAside != 0 {
		t.Errorf("second run %+v; want nothing to do", again)
	}
	w.verify(t, want)
}

// TestRefusedBatchesDoNotBlock: what validation cannot see also fails
// the copy: an entry ID that an earlier run copied (the primary key
// refuses it) and one repeated within a group. The first document is set
// aside whole, the repeat alone; everything else is copied once.
func TestRefusedBatchesDoNotBlock(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.write(t, 10, 10)
	run(t, w.flusher(Options{}))
	var copied string
	if err := w.db.Pool.QueryRow(ctx, `SELECT id FROM mcp_server_request_logs LIMIT 1`).Scan(&copied); err != nil {
		t.Fatal(err)
	}
	w.poison(t, "copied-again", 3, func(lines [][]byte, lastUsed map[string]any) ([][]byte, map[string]any) {
		var e tenant.LogEntry
		json.Unmarshal(lines[0], &e)
		e.ID = copied
		lines[0], _ = json.Marshal(e)
		return lines, lastUsed
	})
	w.poison(t, "repeat", 3, func(lines [][]byte, lastUsed map[string]any) ([][]byte, map[string]any) {
		return append(lines, lines[0]), lastUsed
	})
	w.write(t, 20, 10)
	rep := run(t, w.flusher(Options{GroupSize: 5}))
	if rep.Entries != 3+20 || rep.SetAside != 2 || rep.EntriesSetAside != 3+1 {
		t.Errorf("report %+v; want 23 entries copied, copied-again set aside whole (3) and one repeat", rep)
	}
	whole, err := w.store.Client.Collection(w.store.Collection + "Invalid").Doc("copied-again").Get(ctx)
	if err != nil {
		t.Fatalf("copied-again is not kept aside: %v", err)
	}
	if reason, _ := whole.DataAt("invalidReason"); !strings.Contains(fmt.Sprint(reason), "23505") {
		t.Errorf("copied-again set aside for %q; want Postgres's unique violation", reason)
	}
	if _, err := w.store.Client.Collection(w.store.Collection + "Invalid").Doc("repeat").Get(ctx); err != nil {
		t.Errorf("the repeated entry is not kept aside: %v", err)
	}
	w.verify(t, 10+3+20)
}

// TestOAuthRetention: a run deletes the OAuth codes and refresh tokens
// that expired, and keeps the live ones and the grants.
func TestOAuthRetention(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	grant, err := w.db.CreateOAuthCode(ctx, postgres.NewGrant{ClientID: "mcpc_x", InstanceID: w.instance, UserID: w.user,
		Resource: "https://p.example/mcp", Scope: "mcp"}, [32]byte{1}, "https://c.example/cb", strings.Repeat("c", 43), time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.CreateOAuthCode(ctx, postgres.NewGrant{ClientID: "mcpc_x", InstanceID: w.instance, UserID: w.user,
		Resource: "https://p.example/mcp", Scope: "mcp"}, [32]byte{2}, "https://c.example/cb", strings.Repeat("c", 43), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i, expires := range []time.Time{time.Now().Add(-time.Hour), time.Now().Add(-time.Second), time.Now().Add(time.Hour)} {
		if err := w.db.CreateRefreshToken(ctx, grant, [32]byte{byte(10 + i)}, expires); err != nil {
			t.Fatal(err)
		}
	}
	rep := run(t, w.flusher(Options{}))
	if rep.OAuthDeleted != 2 {
		t.Errorf("report %+v; want 2 (the larger of 1 code and 2 refresh tokens)", rep)
	}
	if codes, tokens, grants := w.count(t, `SELECT count(*) FROM oauth_codes`), w.count(t, `SELECT count(*) FROM oauth_refresh_tokens`),
		w.count(t, `SELECT count(*) FROM oauth_grants`); codes != 1 || tokens != 1 || grants != 2 {
		t.Errorf("left %d codes, %d refresh tokens, %d grants; want 1, 1, 2", codes, tokens, grants)
	}
}
