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

	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/logbuffer"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// target is one way to reach the upstream's echo tool.
type target struct {
	name string
	url  string
	tool string
	key  string // the API key the proxy needs; "" for the others
	proc *proc  // the process between client and upstream; nil for direct
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
	target  string
	clients int
	round   int
	load    loadReport
	// Figures of the target's own process (zero for direct) and of the
	// upstream's.
	cpu, upstreamCPU, rssMax float64
}

// coldStart is one proxy process timed from exec.
type coldStart struct {
	listening, firstCall time.Duration
}

// results is everything one benchmark run measured.
type results struct {
	when     time.Time
	targets  []string
	clients  []int
	runs     []runResult
	protocol string

	// Postgres statements sent while the proxy served the measured runs
	// (pg_stat_statements, reset after the warm-up), and the requests the
	// proxy answered over the same span.
	statements      int64
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

const loadProtocol = "2026-07-28"

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
	// Run sets it (the framework then writes an empty line to stdout and
	// stderr after every request).
	collection := "bench-" + logbuffer.NewID()[:12]
	proxyEnv := []string{"MCP_ENCRYPTION_KEY=" + encKey, "LOG_LEVEL=INFO", "REQUEST_LOG_COLLECTION=" + collection,
		proxyGOMAXPROCS, "K_SERVICE=mcp-proxy"}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(addr, ":")
	px, err := launch("proxy", bin("devserver"), nil, slices.Concat(proxyEnv, []string{"HOST=" + host, "PORT=" + port}))
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, px, addr); err != nil {
		return nil, err
	}

	targets := []target{
		{name: "direct", url: upURL, tool: "echo"},
		{name: "reverseproxy", url: rpURL, tool: "echo", proc: rp},
		{name: reverseProxy1P, url: rp1URL, tool: "echo", proc: rp1},
		{name: "proxy", url: "http://" + addr + "/mcp", tool: "demo__echo", key: key, proc: px},
	}
	res := &results{when: time.Now().UTC(), clients: o.clients, protocol: loadProtocol}
	for _, t := range targets {
		res.targets = append(res.targets, t.name)
		// Warm caches, sessions and connections; every target must work.
		r, err := mcpload(ctx, o, t, 2, "--requests", "200")
		if err != nil {
			return nil, fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
		if r.Errors > 0 {
			return nil, fmt.Errorf("warm-up of %s: %d errors, first: %s", t.name, r.Errors, r.SampleError)
		}
	}
	if _, err := db.Pool.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return nil, fmt.Errorf("reset pg_stat_statements (devstack loads it; another Postgres needs shared_preload_libraries=pg_stat_statements): %w", err)
	}
	reset := time.Now()

	for round := range o.rounds {
		for _, clients := range o.clients {
			for i := range targets {
				// Each round starts with another target.
				t := targets[(i+round)%len(targets)]
				logf("round %d/%d: %d clients → %s", round+1, o.rounds, clients, t.name)
				if err := res.measure(ctx, o, t, up, clients, round); err != nil {
					return nil, err
				}
			}
		}
	}
	res.statementSpan = time.Since(reset)
	if err := res.readStatements(ctx, db); err != nil {
		return nil, err
	}

	// SIGTERM makes the proxy write what its request log still holds.
	px.stop(30 * time.Second)
	if res.batches, res.entries, err = countBatches(ctx, collection); err != nil {
		return nil, err
	}
	if res.logStats, err = shutdownStats(px.log); err != nil {
		return nil, err
	}
	if st := res.logStats; st.Dropped > 0 || st.Written != st.Appended || st.Written != res.entries {
		return nil, fmt.Errorf("the request log lost entries: the proxy appended %d, wrote %d, dropped %d; Firestore holds %d",
			st.Appended, st.Written, st.Dropped, res.entries)
	}

	for i := range o.cold {
		c, err := timeColdStart(ctx, dir, i, bin("devserver"), proxyEnv, key)
		if err != nil {
			return nil, fmt.Errorf("cold start %d: %w", i+1, err)
		}
		logf("cold start %d: listening after %v, first tools/call answered after %v", i+1, c.listening.Round(time.Millisecond), c.firstCall.Round(time.Millisecond))
		res.cold = append(res.cold, c)
	}
	os.RemoveAll(dir)
	return res, nil
}

// measure runs the load of one target at one client count and keeps its
// figures.
func (res *results) measure(ctx context.Context, o *options, t target, up *proc, clients, round int) error {
	r, err := mcpload(ctx, o, t, clients, "--duration", o.duration.String(), "--warmup", "2",
		"--watch", watchList(t, up))
	if err != nil {
		return fmt.Errorf("%s at %d clients: %w", t.name, clients, err)
	}
	if r.Errors > 0 {
		return fmt.Errorf("%s at %d clients: %d of %d requests failed, first: %s", t.name, clients, r.Errors, r.Requests, r.SampleError)
	}
	rr := runResult{target: t.name, clients: clients, round: round, load: *r}
	ps := r.Processes
	if t.proc != nil {
		rr.cpu, rr.rssMax = ps[0].CPUUsPerRequest, ps[0].RSSMaxMiB
		ps = ps[1:]
	}
	rr.upstreamCPU = ps[0].CPUUsPerRequest
	res.runs = append(res.runs, rr)
	if t.name == "proxy" {
		res.proxiedRequests += r.Requests
		if clients == o.clients[len(o.clients)-1] {
			res.rssAtMost = max(res.rssAtMost, rr.rssMax)
		}
		res.rssPeak = max(res.rssPeak, r.Processes[0].RSSPeakMiB)
	}
	return nil
}

// readStatements reads what pg_stat_statements counted since its reset.
func (res *results) readStatements(ctx context.Context, db *postgres.DB) error {
	rows, err := db.Pool.Query(ctx, `SELECT calls, query FROM pg_stat_statements
		WHERE query NOT ILIKE '%pg_stat_statements%' AND calls > 0`)
	if err != nil {
		return fmt.Errorf("read pg_stat_statements: %w", err)
	}
	for rows.Next() {
		var calls int64
		var query string
		if err := rows.Scan(&calls, &query); err != nil {
			return err
		}
		res.statements += calls
		res.statementTexts = append(res.statementTexts, fmt.Sprintf("%d× %s", calls, strings.Join(strings.Fields(query), " ")))
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
func mcpload(ctx context.Context, o *options, t target, clients int, args ...string) (*loadReport, error) {
	args = append([]string{"--url", t.url, "--clients", strconv.Itoa(clients), "--tool", t.tool,
		"--protocol", loadProtocol, "--json"}, args...)
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
