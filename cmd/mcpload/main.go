// Command mcpload drives MCP traffic against any MCP URL with real go-sdk
// clients and reports throughput and latency percentiles.
//
//	mcpload --url URL [--key-file FILE] [--clients N] [--duration D | --requests N]
//	        [--mix call=9,list=1] [--tool NAME] [--args JSON]
//	        [--protocol VERSION] [--raw] [--warmup N] [--watch PID,...] [--json]
//
// Each client is one MCP session (Streamable HTTP) that sends its
// requests one after another; N clients run at once. With --raw a client
// is no SDK session but plain HTTP POSTs on one keep-alive connection of
// its own, without initialize (raw.go). The key, if any, is
// read from --key-file or MCP_PROXY_KEY (not a flag: flags show in the
// process list) and sent as "Authorization: Bearer". Latencies go into a
// log-linear histogram (1.6 % resolution); errors are counted by kind.
// --watch names processes on this machine (the proxy, the upstream) whose
// CPU time per request and resident memory are reported for the measured
// part of the run. The exit status is 1 when any request failed, 2 on bad
// usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	url      string
	key      string
	clients  int
	duration time.Duration
	requests int64
	mix      []op // one entry per unit of weight, in a fixed order
	tool     string
	args     map[string]any
	rawArgs  string // args as given
	protocol string
	raw      bool
	warmup   int
	watch    []int
	json     bool
}

// op is one kind of request of the mix.
type op string

const (
	opCall op = "call"
	opList op = "list"
)

func parse(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("mcpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var keyFile, mix, argsJSON, watch string
	fs.StringVar(&c.url, "url", "", "MCP endpoint URL (required)")
	fs.StringVar(&keyFile, "key-file", "", "file holding the API key (else MCP_PROXY_KEY; none sends no key)")
	fs.IntVar(&c.clients, "clients", 1, "concurrent clients, one MCP session each")
	fs.DurationVar(&c.duration, "duration", 0, "how long to run (default 10s unless --requests is given)")
	fs.Int64Var(&c.requests, "requests", 0, "total requests to send, over all clients")
	fs.StringVar(&mix, "mix", "call=1", "weights of the request kinds: call (tools/call) and list (tools/list)")
	fs.StringVar(&c.tool, "tool", "echo", "tool to call")
	fs.StringVar(&argsJSON, "args", `{"text":"hello"}`, "arguments of the call, a JSON object")
	fs.StringVar(&c.protocol, "protocol", "2025-11-25", "MCP protocol version the clients speak")
	fs.BoolVar(&c.raw, "raw", false, "send plain HTTP POSTs, one connection per client, no SDK and no initialize")
	fs.IntVar(&c.warmup, "warmup", 1, "requests each client sends before measuring")
	fs.StringVar(&watch, "watch", "", "process IDs on this machine whose CPU time per request and memory to report")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.url == "" {
		return nil, errors.New("--url is required")
	}
	if c.clients < 1 {
		return nil, errors.New("--clients must be at least 1")
	}
	if c.duration < 0 || c.requests < 0 || c.warmup < 0 {
		return nil, errors.New("--duration, --requests and --warmup cannot be negative")
	}
	if c.duration == 0 && c.requests == 0 {
		c.duration = 10 * time.Second
	}
	var err error
	if c.watch, err = parsePIDs(watch); err != nil {
		return nil, err
	}
	if c.mix, err = parseMix(mix); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(argsJSON), &c.args); err != nil || c.args == nil {
		return nil, fmt.Errorf("--args must be a JSON object")
	}
	c.rawArgs = argsJSON
	c.key = os.Getenv("MCP_PROXY_KEY")
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--key-file: %w", err)
		}
		c.key = strings.TrimSpace(string(b))
	}
	return c, nil
}

// parseMix reads "call=9,list=1" into 9 calls and 1 list per cycle.
func parseMix(s string) ([]op, error) {
	var out []op
	for part := range strings.SplitSeq(s, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(weight)
		if !ok || err != nil || n < 0 || n > 1000 {
			return nil, fmt.Errorf("--mix: %q: want KIND=WEIGHT with a weight from 0 to 1000", part)
		}
		switch o := op(name); o {
		case opCall, opList:
			for range n {
				out = append(out, o)
			}
		default:
			return nil, fmt.Errorf("--mix: unknown kind %q (want call or list)", name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--mix: all weights are zero")
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "mcpload:", err)
		}
		return 2
	}
	r, err := load(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "mcpload:", err)
		return 1
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		r.print(stdout)
	}
	if r.Errors > 0 {
		return 1
	}
	return 0
}

// report is the outcome of a run.
type report struct {
	URL         string           `json:"url"`
	Clients     int              `json:"clients"`
	Protocol    string           `json:"protocol"`
	Raw         bool             `json:"raw,omitempty"`
	Seconds     float64          `json:"seconds"`
	Requests    uint64           `json:"requests"`
	Errors      uint64           `json:"errors"`
	PerSecond   float64          `json:"requestsPerSecond"`
	ByKind      map[op]uint64    `json:"byKind"`
	ErrorKinds  map[string]int64 `json:"errorKinds,omitempty"`
	LatencyMS   latencies        `json:"latencyMs"`
	Processes   []processFigures `json:"processes,omitempty"`
	SampleError string           `json:"sampleError,omitempty"`
}

type latencies struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "url\t%s\n", r.URL)
	how := "go-sdk sessions"
	if r.Raw {
		how = "raw HTTP"
	}
	fmt.Fprintf(tw, "clients\t%d (protocol %s, %s)\n", r.Clients, r.Protocol, how)
	fmt.Fprintf(tw, "requests\t%d in %.2f s: %.1f/s\n", r.Requests, r.Seconds, r.PerSecond)
	kinds := make([]string, 0, len(r.ByKind))
	for k, n := range r.ByKind {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(tw, "mix\t%s\n", strings.Join(kinds, ", "))
	l := r.LatencyMS
	fmt.Fprintf(tw, "latency ms\tp50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	errKinds := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		errKinds = append(errKinds, k)
	}
	sort.Strings(errKinds)
	for _, k := range errKinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, r.ErrorKinds[k])
	}
	if r.SampleError != "" {
		fmt.Fprintf(tw, "first error\t%s\n", r.SampleError)
	}
	for _, p := range r.Processes {
		fmt.Fprintf(tw, "process %d (%s)\tCPU %.0f µs/request (%.0f ms), RSS max %.1f MiB, peak %.1f MiB\n",
			p.PID, p.Name, p.CPUUsPerRequest, p.CPUMs, p.RSSMaxMiB, p.RSSPeakMiB)
	}
	tw.Flush()
}

// bearer adds the key to every request of a client.
type bearer struct {
	base http.RoundTripper
	key  string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.base.RoundTrip(r)
}

// requester is one client: an SDK session, or --raw's plain HTTP.
type requester interface {
	do(ctx context.Context, o op) error
	close()
}

// sdkClient is a client with a go-sdk session.
type sdkClient struct {
	c *config
	s *mcp.ClientSession
}

func (sc sdkClient) close() { sc.s.Close() }

// load runs the clients and gathers their figures.
func load(ctx context.Context, c *config) (*report, error) {
	sessions, err := connect(ctx, c)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup

	w := &workers{c: c, hists: make([]histogram, c.clients), kinds: map[string]int64{}, byKind: map[op]uint64{}}
	for i, s := range sessions { // warm-up, not measured
		for range c.warmup {
			s.do(ctx, c.mix[i%len(c.mix)])
		}
	}
	runCtx := ctx
	if c.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	var watch *watcher
	if len(c.watch) > 0 {
		var err error
		if watch, err = startWatch(c.watch); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	for i, s := range sessions {
		wg.Go(func() { w.client(runCtx, i, s) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all histogram
	for i := range w.hists {
		all.merge(&w.hists[i])
	}
	r := &report{URL: c.url, Clients: c.clients, Protocol: c.protocol, Raw: c.raw, Seconds: elapsed.Seconds(),
		Requests: all.n + uint64(w.errors.Load()), Errors: uint64(w.errors.Load()), ByKind: w.byKind, SampleError: w.sample}
	if len(w.kinds) > 0 {
		r.ErrorKinds = w.kinds
	}
	r.PerSecond = float64(r.Requests) / elapsed.Seconds()
	if watch != nil {
		var err error
		if r.Processes, err = watch.finish(r.Requests); err != nil {
			return nil, err
		}
	}
	r.LatencyMS = latencies{P50: ms(all.quantile(0.50)), P90: ms(all.quantile(0.90)), P99: ms(all.quantile(0.99)),
		P999: ms(all.quantile(0.999)), Max: ms(all.quantile(1))}
	return r, nil
}

// connect makes the clients: SDK sessions, connected at once, or --raw's.
func connect(ctx context.Context, c *config) ([]requester, error) {
	out := make([]requester, c.clients)
	if c.raw {
		for i := range out {
			rc, err := newRawClient(c)
			if err != nil {
				return out, err
			}
			out[i] = rc
		}
		return out, nil
	}
	base := &http.Transport{MaxIdleConnsPerHost: c.clients, MaxIdleConns: c.clients, IdleConnTimeout: 90 * time.Second}
	var rt http.RoundTripper = base
	if c.key != "" {
		rt = bearer{base: base, key: c.key}
	}
	httpClient := &http.Client{Transport: rt}
	var wg sync.WaitGroup
	errs := make([]error, c.clients)
	for i := range out {
		wg.Go(func() {
			t := &mcp.StreamableClientTransport{Endpoint: c.url, HTTPClient: httpClient, MaxRetries: -1, DisableStandaloneSSE: true}
			client := mcp.NewClient(&mcp.Implementation{Name: "mcpload", Version: "1"}, nil)
			s, err := client.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: c.protocol})
			if err == nil {
				out[i] = sdkClient{c: c, s: s}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, fmt.Errorf("connect to %s: %w", c.url, err)
		}
	}
	return out, nil
}

// workers is the shared state of a run's clients.
type workers struct {
	c      *config
	sent   atomic.Int64
	errors atomic.Int64
	hists  []histogram // one per client: no lock on the hot path

	mu     sync.Mutex
	kinds  map[string]int64
	byKind map[op]uint64
	sample string
}

// client sends requests one after another until the run ends.
func (w *workers) client(ctx context.Context, i int, s requester) {
	h := &w.hists[i]
	counts := map[op]uint64{}
	defer func() {
		w.mu.Lock()
		for k, n := range counts {
			w.byKind[k] += n
		}
		w.mu.Unlock()
	}()
	for ctx.Err() == nil {
		// One sequence over all clients picks the kinds, so the mix
		// holds for the run as a whole, whichever client is faster.
		n := w.sent.Add(1)
		if w.c.requests > 0 && n > w.c.requests {
			return
		}
		o := w.c.mix[(n-1)%int64(len(w.c.mix))]
		start := time.Now()
		err := s.do(ctx, o)
		took := time.Since(start)
		if err != nil {
			if ctx.Err() != nil && w.c.requests == 0 {
				return // the run's time ran out mid-request: not an error
			}
			w.fail(err)
			continue
		}
		h.record(took)
		counts[o]++
	}
}

func (sc sdkClient) do(ctx context.Context, o op) error {
	switch o {
	case opList:
		_, err := sc.s.ListTools(ctx, nil)
		return err
	default:
		res, err := sc.s.CallTool(ctx, &mcp.CallToolParams{Name: sc.c.tool, Arguments: sc.c.args})
		if err == nil && res.IsError {
			return errToolResult
		}
		return err
	}
}

var errToolResult = errors.New("the tool answered isError")

// fail counts an error by its kind.
func (w *workers) fail(err error) {
	w.errors.Add(1)
	kind := "transport"
	var jerr *jsonrpc.Error
	var serr *statusError
	switch {
	case errors.Is(err, errToolResult):
		kind = "tool error (isError)"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "timeout"
	case errors.As(err, &jerr):
		kind = fmt.Sprintf("json-rpc %d", jerr.Code)
	case errors.As(err, &serr):
		kind = fmt.Sprintf("http %d", serr.status)
	}
	w.mu.Lock()
	w.kinds[kind]++
	if w.sample == "" {
		w.sample = err.Error()
	}
	w.mu.Unlock()
}
