package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"

	"mcpproxy.dev/mcpproxy/functions/proxy/oauth"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// target is one way to reach the upstream's tools.
type target struct {
	name   string
	url    string
	prefix string // of the tool names: the proxy's namespace
	key    string // the API key the proxy needs; "" for the others
	proc   *proc  // the process between client and upstream; nil for direct
}

// proxyProc is a proxy process and where its request log goes.
type proxyProc struct {
	target
	collection string
	// upstreamProtocol is what it asks upstreams for.
	upstreamProtocol string
}

// load is what the clients of one run send.
type load struct {
	protocol string
	clients  int
	kib      int // of the large tool's result; 0: the echo tool
}

func (l load) tool() (name, args string) {
	if l.kib > 0 {
		return "large", fmt.Sprintf(`{"kib":%d}`, l.kib)
	}
	return "echo", `{"text":"hello"}`
}

// loadReport is the part of mcpload's --json report the benchmark reads.
type loadReport struct {
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	PerSecond   float64 `json:"requestsPerSecond"`
	SampleError string  `json:"sampleError"`
	LatencyMS   struct {
		P50  float64 `json:"p50"`
		P90  float64 `json:"p90"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99.9"`
		Max  float64 `json:"max"`
	} `json:"latencyMs"`
	Processes []struct {
		PID             int     `json:"pid"`
		CPUUsPerRequest float64 `json:"cpuUsPerRequest"`
		RSSMaxMiB       float64 `json:"rssMaxMiB"`
		RSSPeakMiB      float64 `json:"rssPeakMiB"`
	} `json:"processes"`
}

// run is one measured mcpload run.
type runResult struct {
	target string
	load
	round  int
	report loadReport
	// Figures of the target's own process (zero for direct) and of the
	// upstream's.
	cpu, upstreamCPU, rssMax, rssPeak float64
}

// coldStart is one proxy process timed from exec.
type coldStart struct {
	listening, firstCall time.Duration
}

// results is everything one benchmark run measured.
type results struct {
	when      time.Time
	targets   []string
	clients   []int
	protocols []string
	sdk       bool
	runs      []runResult
	// upstreamProtocols: what each proxy target asks upstreams for.
	upstreamProtocols map[string]string
	// large are the targets and runs of the large-result part, at
	// largeClients clients of largeProtocol.
	largeTargets  []string
	large         []int
	largeClients  int
	largeProtocol string

	// Postgres statements sent while the proxies served the measured runs
	// (pg_stat_statements, reset after the warm-up), and the requests
	// they answered over the same span.
	statements      int64
	feedReads       int64 // of the change feed, not counted in statements
	proxies         int
	statementSpan   time.Duration // from the reset to the reading
	statementTexts  []string
	proxiedRequests uint64
	// Batch documents the proxy wrote to Firestore and the entries they
	// hold, over the proxy process's whole life.
	batches, entries int64
	// The proxy's own count of the entries it logged, wrote and dropped,
	// from the line it logs when it shuts down.
	logStats logbuffer.Stats
	// The proxy's resident set: the largest sampled at 80 clients (or
	// the largest client count) and the kernel's high water mark.
	rssAtMost, rssPeak float64
	cold               []coldStart
}

// proxyGOMAXPROCS is what deploy.sh gives the proxy with its default
// PROXY_CPU=1: one P for one vCPU.
const proxyGOMAXPROCS = "GOMAXPROCS=1"

// reverseProxy1P is the bare reverse proxy run with the proxy's
// GOMAXPROCS, so that the goals can also be read like for like.
const reverseProxy1P = "reverseproxy-1p"

func bench(ctx context.Context, o *options, stderr io.Writer) (*results, error) {
	ses, err := newSession(ctx, "mcpbench", stderr)
	if err != nil {
		return nil, err
	}
	defer ses.close()
	logf, dir, encKey, db, launch := ses.logf, ses.dir, ses.encKey, ses.db, ses.launch
	bin := func(name string) string { return filepath.Join(o.bin, name) }

	// A fast upstream: stateless, JSON answers, the go-sdk server.
	up, err := launch("upstream", bin("demo-upstream"), []string{"--transport", "http", "--stateless", "--json", "--addr", "127.0.0.1:0"}, nil)
	if err != nil {
		return nil, err
	}
	upURL, err := up.url(ctx)
	if err != nil {
		return nil, err
	}
	seeded, err := stack.SeedDemo(ctx, db, "Bench", upURL)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	key := seeded.Key
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The bare reverse proxy twice: with Go's default GOMAXPROCS (one per
	// core) and with the proxy's.
	rp, err := launch("reverseproxy", self, []string{"reverseproxy", "-target", upURL}, nil)
	if err != nil {
		return nil, err
	}
	rpURL, err := rp.url(ctx)
	if err != nil {
		return nil, err
	}
	rp1, err := launch(reverseProxy1P, self, []string{"reverseproxy", "-target", upURL}, []string{proxyGOMAXPROCS})
	if err != nil {
		return nil, err
	}
	rp1URL, err := rp1.url(ctx)
	if err != nil {
		return nil, err
	}
	// The proxy as deployed: the Functions Framework binary of the three
	// functions, its request log written to Firestore (the emulator), on
	// one P as deploy.sh runs it on one vCPU, with K_SERVICE set as Cloud
	// Run sets it (the framework would then write an empty line to stdout
	// and stderr after every request; the proxy turns that off at start).
	startProxy := func(name, upstreamProtocol string) (*proxyProc, error) {
		collection := "bench-" + logbuffer.NewID()[:12]
		env := append(proxyEnv(encKey, collection), "UPSTREAM_PROTOCOL_VERSION="+upstreamProtocol)
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		host, port, _ := strings.Cut(addr, ":")
		px, err := launch(name, bin("devserver"), nil, slices.Concat(env, []string{"HOST=" + host, "PORT=" + port}))
		if err != nil {
			return nil, err
		}
		if err := waitListening(ctx, px, addr); err != nil {
			return nil, err
		}
		return &proxyProc{target: target{name: name, url: "http://" + addr + "/mcp", prefix: "demo__", key: key, proc: px},
			collection: collection, upstreamProtocol: upstreamProtocol}, nil
	}
	// The proxy with the default version, then one per other version
	// asked of upstreams.
	proxies := []*proxyProc{}
	for _, v := range slices.Concat([]string{upstream.DefaultProtocolVersion}, o.upstreamProtocols) {
		if slices.ContainsFunc(proxies, func(p *proxyProc) bool { return p.upstreamProtocol == v }) {
			continue
		}
		name := "proxy"
		if len(proxies) > 0 {
			name = proxyFor(v)
		}
		px, err := startProxy(name, v)
		if err != nil {
			return nil, err
		}
		proxies = append(proxies, px)
	}

	direct := target{name: "direct", url: upURL}
	rpT := target{name: "reverseproxy", url: rpURL, proc: rp}
	rp1T := target{name: reverseProxy1P, url: rp1URL, proc: rp1}
	targets := []target{direct, rpT, rp1T}
	res := &results{when: time.Now().UTC(), clients: o.clients, protocols: o.protocols, sdk: o.sdk,
		upstreamProtocols: map[string]string{}, proxies: len(proxies)}
	for _, px := range proxies {
		targets = append(targets, px.target)
		res.upstreamProtocols[px.name] = px.upstreamProtocol
	}
	// The proxy again, with an OAuth access token instead of the key.
	base := strings.TrimSuffix(proxies[0].url, "/mcp")
	token, err := accessToken(ctx, base, key)
	if err != nil {
		return nil, fmt.Errorf("access token of %s: %w", base, err)
	}
	tokenT := proxies[0].target
	tokenT.name, tokenT.key = tokenTarget, token
	targets = append(targets, tokenT)
	for _, t := range targets {
		res.targets = append(res.targets, t.name)
		// Warm caches, sessions and connections; every target must work
		// with every client protocol.
		for _, protocol := range o.protocols {
			if err := warm(ctx, o, t, load{protocol: protocol, clients: 2}, 200); err != nil {
				return nil, err
			}
		}
	}
	if _, err := db.Pool.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return nil, fmt.Errorf("reset pg_stat_statements (devstack loads it; another Postgres needs shared_preload_libraries=pg_stat_statements): %w", err)
	}
	reset := time.Now()

	for round := range o.rounds {
		for _, protocol := range o.protocols {
			for _, clients := range o.clients {
				for i := range targets {
					// Each round starts with another target.
					t := targets[(i+round)%len(targets)]
					logf("round %d/%d: %d clients of %s → %s", round+1, o.rounds, clients, protocol, t.name)
					if err := res.measure(ctx, o, t, up, load{protocol: protocol, clients: clients}, round); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	res.statementSpan = time.Since(reset)
	if err := res.readStatements(ctx, db); err != nil {
		return nil, err
	}

	// SIGTERM makes a proxy write what its request log still holds.
	for _, px := range proxies {
		px.proc.stop(30 * time.Second)
		batches, entries, err := countBatches(ctx, px.collection)
		if err != nil {
			return nil, err
		}
		st, err := shutdownStats(px.proc.log)
		if err != nil {
			return nil, err
		}
		if st.Dropped > 0 || st.Written != st.Appended || st.Written != entries {
			return nil, fmt.Errorf("the request log of %s lost entries: the proxy appended %d, wrote %d, dropped %d; Firestore holds %d",
				px.name, st.Appended, st.Written, st.Dropped, entries)
		}
		res.batches += batches
		res.entries += entries
		res.logStats.Appended += st.Appended
		res.logStats.Written += st.Written
		res.logStats.Dropped += st.Dropped
	}

	if err := res.measureLarge(ctx, o, []target{direct, rpT, rp1T}, up, startProxy, logf); err != nil {
		return nil, err
	}

	for i := range o.cold {
		c, err := timeColdStart(ctx, dir, i, bin("devserver"), proxyEnv(encKey, "bench-cold"), key)
		if err != nil {
			return nil, fmt.Errorf("cold start %d: %w", i+1, err)
		}
		logf("cold start %d: listening after %v, first tools/call answered after %v", i+1, c.listening.Round(time.Millisecond), c.firstCall.Round(time.Millisecond))
		res.cold = append(res.cold, c)
	}
	os.RemoveAll(dir)
	return res, nil
}

// proxyEnv is the environment of a proxy process as deployed.
func proxyEnv(encKey, collection string) []string {
	// The authorization server is on, as deploy.sh runs the proxy, with
	// access tokens that outlive the run.
	return []string{"MCP_ENCRYPTION_KEY=" + encKey, "LOG_LEVEL=INFO", "REQUEST_LOG_COLLECTION=" + collection,
		proxyGOMAXPROCS, "K_SERVICE=mcp-proxy", "OAUTH_SIGNING_KEYS=" + oauth.NewKeySpec("bench"), "OAUTH_ACCESS_TTL=6h"}
}

// proxyFor names the proxy target that asks upstreams for version.
func proxyFor(version string) string { return "proxy-up-" + version }

// measureLarge runs the large-result part: each size against the
// targets, taking turns, with a new proxy process per size so that its
// peak RSS is that size's alone.
func (res *results) measureLarge(ctx context.Context, o *options, targets []target, up *proc,
	startProxy func(name, upstreamProtocol string) (*proxyProc, error), logf func(string, ...any)) error {
	if len(o.large) == 0 {
		return nil
	}
	res.large, res.largeClients = o.large, o.largeClients
	res.largeProtocol = o.protocols[len(o.protocols)-1]
	for _, t := range targets {
		res.largeTargets = append(res.largeTargets, t.name)
	}
	res.largeTargets = append(res.largeTargets, "proxy")
	for _, kib := range o.large {
		px, err := startProxy(fmt.Sprintf("proxy-%dkib", kib), upstream.DefaultProtocolVersion)
		if err != nil {
			return err
		}
		t := px.target
		t.name = "proxy"
		all := append(slices.Clone(targets), t)
		l := load{protocol: res.largeProtocol, clients: o.largeClients, kib: kib}
		for _, t := range all {
			if err := warm(ctx, o, t, l, 4*o.largeClients); err != nil {
				return err
			}
		}
		for round := range o.rounds {
			for i := range all {
				t := all[(i+round)%len(all)]
				logf("large results, round %d/%d: %d KiB to %d clients of %s → %s", round+1, o.rounds, kib, l.clients, l.protocol, t.name)
				if err := res.measure(ctx, o, t, up, l, round); err != nil {
					return err
				}
			}
		}
		px.proc.stop(30 * time.Second)
	}
	return nil
}

// warm sends n requests of l to t, which must all succeed: caches,
// sessions and connections warm.
func warm(ctx context.Context, o *options, t target, l load, n int) error {
	r, err := mcpload(ctx, o, t, l, "--requests", strconv.Itoa(n))
	if err != nil {
		return fmt.Errorf("warm-up of %s (%s): %w", t.name, l.protocol, err)
	}
	if r.Errors > 0 {
		return fmt.Errorf("warm-up of %s (%s): %d errors, first: %s", t.name, l.protocol, r.Errors, r.SampleError)
	}
	return nil
}

// measure runs one load against one target and keeps its figures.
func (res *results) measure(ctx context.Context, o *options, t target, up *proc, l load, round int) error {
	r, err := mcpload(ctx, o, t, l, "--duration", o.duration.String(), "--warmup", "2", "--watch", watchList(t, up))
	if err != nil {
		return fmt.Errorf("%s at %d clients of %s: %w", t.name, l.clients, l.protocol, err)
	}
	if r.Errors > 0 {
		return fmt.Errorf("%s at %d clients of %s: %d of %d requests failed, first: %s", t.name, l.clients, l.protocol, r.Errors, r.Requests, r.SampleError)
	}
	rr := runResult{target: t.name, load: l, round: round, report: *r}
	ps := r.Processes
	if t.proc != nil {
		rr.cpu, rr.rssMax, rr.rssPeak = ps[0].CPUUsPerRequest, ps[0].RSSMaxMiB, ps[0].RSSPeakMiB
		if l.kib > 0 && t.name != "proxy" {
			// A reverse proxy serves every size: its peak since it
			// started is not this size's.
			rr.rssPeak = rr.rssMax
		}
		ps = ps[1:]
	}
	rr.upstreamCPU = ps[0].CPUUsPerRequest
	res.runs = append(res.runs, rr)
	if t.name == "proxy" && l.kib == 0 {
		res.proxiedRequests += r.Requests
		if l.clients == o.clients[len(o.clients)-1] {
			res.rssAtMost = max(res.rssAtMost, rr.rssMax)
		}
		res.rssPeak = max(res.rssPeak, rr.rssPeak)
	} else if strings.HasPrefix(t.name, "proxy-up-") || t.name == tokenTarget {
		res.proxiedRequests += r.Requests
	}
	return nil
}

// readStatements reads what pg_stat_statements counted since its reset.
func (res *results) readStatements(ctx context.Context, db *postgres.DB) error {
	// Only the statements of the proxies' database, and none that makes
	// or drops a database: the tests of other packages, run at the same
	// time by make test, make theirs from it. The proxy does neither.
	rows, err := db.Pool.Query(ctx, `SELECT calls, query FROM pg_stat_statements
		WHERE query NOT ILIKE '%pg_stat_statements%' AND calls > 0
		AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND query !~* '^\s*(CREATE|DROP)\s+DATABASE'`)
	if err != nil {
		return fmt.Errorf("read pg_stat_statements: %w", err)
	}
	for rows.Next() {
		var calls int64
		var query string
		if err := rows.Scan(&calls, &query); err != nil {
			return err
		}
		res.statementTexts = append(res.statementTexts, fmt.Sprintf("%d× %s", calls, strings.Join(strings.Fields(query), " ")))
		if strings.Contains(query, "FROM config_changes") {
			// The change feed's read: one per CONFIG_POLL and process,
			// in the background, whatever the requests.
			res.feedReads += calls
			continue
		}
		res.statements += calls
	}
	return rows.Err()
}

// watchList is the processes mcpload reads: the target's own, then the
// upstream's.
func watchList(t target, up *proc) string {
	if t.proc == nil {
		return strconv.Itoa(up.pid())
	}
	return strconv.Itoa(t.proc.pid()) + "," + strconv.Itoa(up.pid())
}

// mcpload runs the load tool against a target and reads its report.
func mcpload(ctx context.Context, o *options, t target, l load, args ...string) (*loadReport, error) {
	tool, toolArgs := l.tool()
	args = append([]string{"--url", t.url, "--clients", strconv.Itoa(l.clients), "--tool", t.prefix + tool,
		"--args", toolArgs, "--protocol", l.protocol, "--json"}, args...)
	if !o.sdk {
		args = append(args, "--raw")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(o.bin, "mcpload"), args...)
	// The key goes through the environment, not the process list.
	cmd.Env = append(os.Environ(), "MCP_PROXY_KEY="+t.key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r loadReport
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		return nil, fmt.Errorf("mcpload: %v: %s", errors.Join(err, jerr), strings.TrimSpace(stderr.String()))
	}
	return &r, nil
}

// countBatches counts the batch documents of the proxy's request log and
// the entries they hold.
func countBatches(ctx context.Context, collection string) (batches, entries int64, err error) {
	client, err := firestore.NewClient(ctx, os.Getenv("GOOGLE_CLOUD_PROJECT"))
	if err != nil {
		return 0, 0, err
	}
	defer client.Close()
	store := &logbuffer.Firestore{Client: client, Collection: collection}
	n, err := store.Count(ctx)
	if err != nil {
		return 0, 0, err
	}
	all, _, err := store.Oldest(ctx, int(n))
	if err != nil {
		return 0, 0, err
	}
	for _, b := range all {
		entries += int64(b.Count)
	}
	return n, entries, nil
}

// shutdownStats reads the request log figures from the line the proxy
// logs when it has shut down.
func shutdownStats(logPath string) (logbuffer.Stats, error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return logbuffer.Stats{}, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var l struct {
			Message    string          `json:"message"`
			RequestLog logbuffer.Stats `json:"requestLog"`
		}
		if json.Unmarshal(line, &l) == nil && strings.HasPrefix(l.Message, "proxy shut down") {
			if l.Message != "proxy shut down" {
				return l.RequestLog, fmt.Errorf("the proxy: %s", line)
			}
			return l.RequestLog, nil
		}
	}
	return logbuffer.Stats{}, fmt.Errorf("the proxy logged no shutdown line: %s", tail(logPath))
}

// timeColdStart starts a new proxy process and times it from exec to
// listening and to its first successful tools/call (key and config loaded
// from Postgres, upstream session opened).
func timeColdStart(ctx context.Context, dir string, i int, devserver string, env []string, key string) (coldStart, error) {
	addr, err := freeAddr()
	if err != nil {
		return coldStart{}, err
	}
	host, port, _ := strings.Cut(addr, ":")
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"hello"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	var c coldStart
	t0 := time.Now()
	p, err := start(dir, fmt.Sprintf("cold-%d", i+1), devserver, nil, slices.Concat(env, []string{"HOST=" + host, "PORT=" + port}))
	if err != nil {
		return c, err
	}
	defer p.stop(10 * time.Second)
	deadline := t0.Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			return c, fmt.Errorf("not listening within 30 s: %s", tail(p.log))
		}
		if resp, err := client.Get("http://" + addr + "/health"); err == nil {
			resp.Body.Close()
			c.listening = time.Since(t0)
			break
		}
		select {
		case <-p.done:
			return c, fmt.Errorf("the proxy exited: %s", tail(p.log))
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/mcp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "demo__echo")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return c, err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"hello"`)) {
		return c, fmt.Errorf("HTTP %d: %s", resp.StatusCode, out)
	}
	c.firstCall = time.Since(t0)
	return c, nil
}
