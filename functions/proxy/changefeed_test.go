package proxy_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// devservers starts n dev server processes over e's database, each with
// env added to its environment, and returns their /mcp URLs.
func devservers(t *testing.T, e *testenv.Env, n int, env ...string) []string {
	t.Helper()
	coll := firestoretest.Collection(t)
	var urls []string
	for range n {
		p := startDevserver(t, e, coll, env...)
		p.waitServing(t, e.Key)
		urls = append(urls, p.url)
	}
	return urls
}

// callAt calls tool with key through the proxy at url and returns the
// HTTP status and whether the answer is a JSON-RPC result (not an error).
func callAt(url, key, tool string) (int, bool) {
	args := `{"text":"hi"}`
	if strings.HasSuffix(tool, "__add") {
		args = `{"a":1,"b":2}`
	}
	code, raw := callTool(url, key, tool, args)
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	json.Unmarshal(raw, &out)
	return code, code == http.StatusOK && len(out.Result) > 0
}

// callTool calls tool with arguments args (JSON) and key through the
// proxy at url, and returns the HTTP status and the body (its first MiB).
func callTool(url, key, tool, args string) (int, []byte) {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw
}

// refusedEverywhere sends key's call to every process every 50 ms from
// start until each has refused it once, and returns how long after start
// the last one did (fails the test after limit).
func refusedEverywhere(t *testing.T, urls []string, key, tool string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var mu sync.Mutex
	var last time.Duration
	var wg sync.WaitGroup
	for _, url := range urls {
		wg.Go(func() {
			for {
				if _, ok := callAt(url, key, tool); !ok {
					mu.Lock()
					last = max(last, time.Since(start))
					mu.Unlock()
					return
				}
				if time.Since(start) > limit {
					t.Errorf("%s still answers %s with the key %v after the change", url, tool, time.Since(start))
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return last
}

// TestChangeFeedReachesEveryProcess runs three proxy processes (the dev
// server binary, CONFIG_POLL 5 s, CACHE_TTL at its default of an hour)
// over one database and checks that a revoked key, a deleted instance
// and a tool switched off are refused by every process within
// CONFIG_POLL + 1 s, each change at a random point of the processes'
// poll cycles. It reports p50 and max over 20 revocations, and over
// MCP_FEED_ROUNDS (default 2) instance deletions and tool removals:
// BENCHMARKS.md has them over 20 of each (MCP_FEED_ROUNDS=20).
func TestChangeFeedReachesEveryProcess(t *testing.T) {
	const poll = 5 * time.Second
	limit := poll + time.Second
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	const n = 20
	rounds := 2
	if v := os.Getenv("MCP_FEED_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			t.Fatalf("MCP_FEED_ROUNDS=%q: want a count", v)
		}
	}
	keys, ids := make([]string, n), make([]string, n)
	for i := range n {
		row, key, err := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", fmt.Sprintf("revoked-%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[i], ids[i] = key, row.ID
	}
	instances, instanceKeys := make([]string, rounds), make([]string, rounds)
	for i := range rounds {
		inst, err := e.DB.CreateInstance(ctx, e.Seeded.Organization.ID, "", fmt.Sprintf("deleted-%d", i),
			[]postgres.Selection{{ConfigID: e.Seeded.Configs[0].ID, Tools: []string{"echo"}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, instanceKeys[i], err = e.DB.CreateAPIKey(ctx, inst.ID, "", "deleted", nil); err != nil {
			t.Fatal(err)
		}
		instances[i] = inst.ID
	}
	urls := devservers(t, e, 3, fmt.Sprintf("CONFIG_POLL=%s", poll))
	// Every process has every key, and the other instances, warm.
	for _, url := range urls {
		for _, k := range slices.Concat(keys, instanceKeys) {
			if code, ok := callAt(url, k, "alpha__echo"); !ok {
				t.Fatalf("%s: a fresh key got %d", url, code)
			}
		}
		if _, ok := callAt(url, e.Key, "alpha__add"); !ok {
			t.Fatalf("%s: alpha__add refused before it was switched off", url)
		}
	}
	// measure makes change at a random point of the processes' poll
	// cycles, times rounds, and reports how long it took until every
	// process refused tool with key.
	// undo, when set, reverses a change after it was measured.
	measure := func(what string, rounds int, change func(i int) error, key func(i int) string, tool string, undo func() error) {
		var took []time.Duration
		for i := range rounds {
			time.Sleep(rand.N(poll))
			start := time.Now()
			if err := change(i); err != nil {
				t.Fatal(err)
			}
			took = append(took, refusedEverywhere(t, urls, key(i), tool, start, limit))
			if undo != nil {
				if err := undo(); err != nil {
					t.Fatal(err)
				}
			}
		}
		slices.Sort(took)
		p50, worst := took[len(took)/2], took[len(took)-1]
		t.Logf("%s -> refused by all %d processes: p50 %v, max %v over %d (CONFIG_POLL %v)",
			what, len(urls), p50.Round(time.Millisecond), worst.Round(time.Millisecond), len(took), poll)
		if worst > limit {
			t.Errorf("%s took %v to reach every process; want within %v", what, worst, limit)
		}
	}
	measure("key revoke", n, func(i int) error { return e.DB.RevokeAPIKey(ctx, ids[i]) },
		func(i int) string { return keys[i] }, "alpha__echo", nil)
	measure("instance delete", rounds, func(i int) error { return e.DB.DeleteInstance(ctx, instances[i]) },
		func(i int) string { return instanceKeys[i] }, "alpha__echo", nil)
	measure("tool switched off", rounds, func(int) error { return e.DB.SetToolEnabled(ctx, e.Seeded.Servers[0].ID, "add", false) },
		func(int) string { return e.Key }, "alpha__add", func() error {
			// On again, and served by every process, before the next round.
			if err := e.DB.SetToolEnabled(ctx, e.Seeded.Servers[0].ID, "add", true); err != nil {
				return err
			}
			for _, url := range urls {
				if err := wait.Until(ctx, 2*limit, func() bool { _, ok := callAt(url, e.Key, "alpha__add"); return ok }); err != nil {
					return fmt.Errorf("%s: alpha__add not back after it was switched on: %v", url, err)
				}
			}
			return nil
		})
	// The rest of the instance still works everywhere.
	for _, url := range urls {
		if code, ok := callAt(url, e.Key, "alpha__echo"); !ok {
			t.Errorf("%s: alpha__echo got %d after another tool was switched off", url, code)
		}
	}
}

// feedDB opens a handle of its own on e's database, for a process's
// change feed, closed when the test ends.
func feedDB(t *testing.T, e *testenv.Env) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Options{URL: e.DB.Pool.Config().ConnString()}, pgtest.TestKeyring(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// feedProcess is a proxy process over e's database reading the change
// feed from feed every 100 ms, its caches on a TTL of an hour.
func feedProcess(t *testing.T, e *testenv.Env, feed proxy.ChangeFeed, fallback time.Duration) *testenv.Env {
	t.Helper()
	opts := proxy.Options{ConfigPoll: 100 * time.Millisecond, FeedMissedPolls: 3, FeedFallbackTTL: fallback}
	opts.Cache.TTL, opts.Cache.StaleIfError = time.Hour, 10*time.Minute
	if feed != nil {
		opts.Feed = feed
	}
	p := e.Process(t, testenv.Options{Proxy: opts})
	if err := p.Handler.PrimeFeed(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

const echoCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"hi"}}}`

// A key revoked before Postgres fails, once the process has read the
// change, is refused during the outage: stale-if-error has nothing left
// to serve. A process without the feed serves it on (the control).
func TestRevokedKeyNotServedDuringOutage(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	row, revoked, err := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "revoked", nil)
	if err != nil {
		t.Fatal(err)
	}
	withFeed := feedProcess(t, e, feedDB(t, e), time.Minute)
	without := feedProcess(t, e, nil, time.Minute)
	for _, p := range []*testenv.Env{withFeed, without} {
		if resp, _ := p.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + revoked}, echoCall); resp.StatusCode != http.StatusOK {
			t.Fatalf("before the revocation: %d", resp.StatusCode)
		}
	}
	if err := e.DB.RevokeAPIKey(ctx, row.ID); err != nil {
		t.Fatal(err)
	}
	// Requests with the env's key (not the revoked one) keep the
	// processes polling for a few intervals.
	for range 10 {
		withFeed.Post(t, "/mcp", nil, echoCall)
		without.Post(t, "/mcp", nil, echoCall)
		time.Sleep(60 * time.Millisecond)
	}
	e.DB.Close() // the store's Postgres is gone; the feed's handle is not
	if resp, _ := withFeed.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + revoked}, echoCall); resp.StatusCode == http.StatusOK {
		t.Errorf("a key revoked before the outage was served during it")
	}
	if resp, _ := without.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + revoked}, echoCall); resp.StatusCode != http.StatusOK {
		t.Errorf("control: without the feed, got %d; the cached key should be served", resp.StatusCode)
	}
}

// While the feed cannot be read, the caches fall back to a short TTL: a
// change the process cannot learn of reaches it within FeedMissedPolls
// intervals and the fallback TTL, as without the feed.
func TestFeedUnreadableFallsBackToShortTTL(t *testing.T) {
	e := newEnv(t, proxy.Options{})
	ctx := context.Background()
	row, key, err := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	feed := feedDB(t, e)
	p := feedProcess(t, e, feed, time.Second)
	auth := map[string]string{"Authorization": "Bearer " + key}
	if resp, _ := p.Post(t, "/mcp", auth, echoCall); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	feed.Close()
	if err := e.DB.RevokeAPIKey(ctx, row.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		resp, _ := p.Post(t, "/mcp", auth, echoCall)
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Since(start) > 4*time.Second {
			t.Fatalf("the revoked key still served %v after, with the feed unreadable", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("refused %v after the revocation, the feed unreadable", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p.Logs.String(), "change feed not read lately") {
		t.Errorf("no log line of the fallback:\n%s", p.Logs.String())
	}
}

// TestGrantChangesViaFeed: with the change feed and its hour-long cache
// TTL, an OAuth grant revoked (by mcpadmin, by the revocation endpoint,
// by a refresh token used twice) or whose API key is revoked stops its
// access tokens within a few CONFIG_POLL intervals, as a revoked key
// does: not after the hour.
func TestGrantChangesViaFeed(t *testing.T) {
	e, _, _ := oauthEnv(t, proxy.Options{})
	ctx := context.Background()
	opts := proxy.Options{OAuth: e.OAuth, Feed: feedDB(t, e), ConfigPoll: 100 * time.Millisecond, FeedMissedPolls: 3, FeedFallbackTTL: time.Hour}
	opts.Cache.TTL, opts.Cache.StaleIfError = time.Hour, 10*time.Minute
	p := e.Process(t, testenv.Options{Proxy: opts})
	if err := p.Handler.PrimeFeed(ctx); err != nil {
		t.Fatal(err)
	}
	redirect := "http://127.0.0.1/callback"
	client := register(t, p.Proxy.URL, redirect)
	call := func(token string) int {
		resp, _ := p.Post(t, "/mcp", map[string]string{"Authorization": "Bearer " + token}, toolsList)
		return resp.StatusCode
	}
	works := func(what, token string) {
		t.Helper()
		if got := call(token); got != http.StatusOK {
			t.Fatalf("%s: before the change, %d; want 200", what, got)
		}
	}
	refused := func(what, token string) {
		t.Helper()
		start := time.Now()
		for call(token) == http.StatusOK {
			if time.Since(start) > 3*time.Second {
				t.Errorf("%s: the access token still works %v after the change", what, time.Since(start))
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	grantOf := func(token string) string {
		parts := strings.Split(token, ".")
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Grant string `json:"grant_id"`
		}
		json.Unmarshal(raw, &c)
		return c.Grant
	}

	tok := grant(t, p, client, redirect, "/mcp", e.Key)
	works("grant revoke", tok.access)
	if err := e.DB.RevokeOAuthGrant(ctx, grantOf(tok.access), ""); err != nil {
		t.Fatal(err)
	}
	refused("grant revoke", tok.access)

	tok = grant(t, p, client, redirect, "/mcp", e.Key)
	works("revocation endpoint", tok.access)
	if status, _ := postForm(t, p.Proxy.URL+"/oauth/revoke", url.Values{"token": {tok.refresh}, "client_id": {client}}); status != http.StatusOK {
		t.Fatalf("revoke: %d", status)
	}
	refused("revocation endpoint", tok.access)

	tok = grant(t, p, client, redirect, "/mcp", e.Key)
	works("refresh token reuse", tok.access)
	status, out := postForm(t, p.Proxy.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.refresh}, "client_id": {client}})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, out)
	}
	next := out["access_token"].(string)
	works("refresh token reuse", next)
	postForm(t, p.Proxy.URL+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.refresh}, "client_id": {client}})
	refused("refresh token reuse", next)

	row, key2, err := e.DB.CreateAPIKey(ctx, e.Seeded.Instance.ID, "", "bound", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok = grant(t, p, client, redirect, "/mcp", key2)
	works("key revoke", tok.access)
	if err := e.DB.RevokeAPIKey(ctx, row.ID); err != nil {
		t.Fatal(err)
	}
	refused("key revoke", tok.access)
}
