package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/hostile"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// The hostile tenant's rate. The box running the soak has two cores,
// which the well-behaved load already fills (the proxy runs on one P);
// the point is to show that an attack on isolation (parsers, limits,
// budgets, progress routing, key lookups, list handling) costs the
// others nothing beyond the CPU it takes, not that a flood of work slows
// a saturated process, which only scaling out answers. So the tenant
// keeps at most three requests in flight, 15 to 19 attacks a second on
// this machine: 7 to 9 MiB a second of bombs, batches and headers sent
// and about 2 MiB of large results received, and some 10 made-up keys a
// second, well under KEY_LOOKUP_RATE (100), so that its flood never
// takes the lookups of another tenant's cold key.
const (
	hostileWorkers = 3
	hostilePace    = 100 * time.Millisecond // each worker's pause between attacks
)

// hostileTenant is a tenant whose client mixes attacks into its traffic:
// bombs, batches, floods of made-up keys, abused headers, forged
// progress, calls to its own hostile upstream's worst tools and lists
// from upstreams that spoil them. Its upstreams run in the soak's process
// (package hostile); the proxy reaches them over HTTP.
type hostileTenant struct {
	servers  []*http.Server
	urls     map[string]string // server name → URL
	url      string            // the front's /mcp
	key      string
	keyID    string
	instance string
	victim   string // a well-behaved tenant's instance, for cross-instance routes
	client   *http.Client
	seq      atomic.Int64 // picks the next attack over all workers

	mu       sync.Mutex
	traces   map[[16]byte]bool // every trace ID it sent
	attacks  int
	sent     int64 // request bytes, headers included
	received int64 // response body bytes
	kinds    map[string]*kindReport
}

// hostileServers are the tenant's upstreams: the one whose tools
// misbehave, and two whose lists are spoiled.
var hostileServers = []struct {
	name  string
	mode  hostile.Mode
	tools []string
}{
	{"Evil", hostile.Good, hostile.Tools},
	{"Nulls", hostile.Nulls, []string{"echo"}},
	{"Malformed", hostile.Malformed, []string{"echo"}},
}

// startHostile serves the hostile upstreams on loopback ports; close
// stops them.
func startHostile() (*hostileTenant, error) {
	h := &hostileTenant{urls: map[string]string{}, traces: map[[16]byte]bool{}, kinds: map[string]*kindReport{}}
	for _, s := range hostileServers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			h.close()
			return nil, err
		}
		srv := &http.Server{Handler: &hostile.Server{Mode: s.mode}, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln) // ends with close
		h.servers = append(h.servers, srv)
		h.urls[s.name] = "http://" + ln.Addr().String() + "/mcp"
	}
	h.client = &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * hostileWorkers, IdleConnTimeout: 90 * time.Second},
		Timeout:   30 * time.Second,
	}
	return h, nil
}

func (h *hostileTenant) close() {
	for _, s := range h.servers {
		s.Close()
	}
}

// seed creates the hostile tenant: an organization with an instance over
// the three hostile upstreams, and its key. victim is another tenant's
// instance, which the hostile key must not reach.
func (h *hostileTenant) seed(ctx context.Context, db *postgres.DB, victim string) error {
	var servers []stack.Server
	for _, s := range hostileServers {
		var tools []postgres.Tool
		for _, t := range s.tools {
			tools = append(tools, postgres.Tool{Name: t, InputSchema: json.RawMessage(`{"type":"object"}`)})
		}
		servers = append(servers, stack.Server{Server: postgres.Server{Name: s.name, Transport: tenant.TransportStreamableHTTP,
			URL: h.urls[s.name], AuthType: tenant.AuthNone}, Tools: tools, Config: s.name + " config"})
	}
	seeded, err := stack.Seed(ctx, db, stack.Tenant{Organization: "Hostile", OwnerName: "Hostile owner", OwnerEmail: "hostile@example.com",
		Instance: "Hostile instance", Key: "Hostile", Owned: true, Servers: servers})
	if err != nil {
		return fmt.Errorf("seed the hostile tenant: %w", err)
	}
	h.key, h.keyID, h.instance, h.victim = seeded.Key, seeded.KeyID, seeded.Instance.ID, victim
	return nil
}

// phase is a stretch of the run with the hostile tenant attacking or
// quiet; the well-behaved clients' latency is compared between the two.
type phase struct {
	Hostile bool      `json:"hostile"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
}

// phaseSettle is the gap after a hostile phase before the next quiet
// one counts: the buffers of the last attacks are still being freed.
const phaseSettle = 500 * time.Millisecond

// phaseWarmup is the start of the run left out of the comparison: the
// clients connect and the caches fill.
const phaseWarmup = 5 * time.Second

// phaseLength is how long each quiet and each hostile phase lasts: short
// enough that the run holds many of each, so that noise from the rest of
// the machine falls on both alike, and that the short run has some of
// each outside its fault windows.
func phaseLength(d time.Duration) time.Duration {
	return min(10*time.Second, max(2*time.Second, d/30))
}

// run alternates quiet and hostile phases of length block from begin
// until ctx ends, and returns them. A hostile phase ends when its
// attacks have returned; requests still in flight at its end are
// cancelled and not counted.
func (h *hostileTenant) run(ctx context.Context, begin time.Time, block time.Duration) []phase {
	var phases []phase
	quietFrom := begin.Add(phaseWarmup)
	for k := 0; ctx.Err() == nil; k++ {
		end := begin.Add(time.Duration(k+1) * block)
		if k%2 == 0 {
			sleep(ctx, time.Until(end))
			if end = earlier(end, time.Now()); end.After(quietFrom) {
				phases = append(phases, phase{Start: quietFrom, End: end})
			}
			quietFrom = end
			continue
		}
		start := time.Now()
		actx, cancel := context.WithDeadline(ctx, end)
		var wg sync.WaitGroup
		for range hostileWorkers {
			wg.Go(func() {
				for actx.Err() == nil {
					h.attack(actx)
					sleep(actx, hostilePace)
				}
			})
		}
		wg.Wait()
		cancel()
		phases = append(phases, phase{Hostile: true, Start: start, End: time.Now()})
		quietFrom = time.Now().Add(phaseSettle)
	}
	return phases
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// attack runs the next attack of the mix.
func (h *hostileTenant) attack(ctx context.Context) {
	a := attacks[int(h.seq.Add(1)-1)%len(attacks)]
	h.mu.Lock()
	h.attacks++
	h.mu.Unlock()
	a.run(ctx, h, func(ans answer, want bool) {
		if ctx.Err() != nil && ans.err != nil {
			return // cut by the end of the phase, not by the proxy
		}
		h.count(a.kind, ans, want)
	})
}

// answer is what came back for one request of the hostile tenant.
type answer struct {
	status int
	code   int64  // the JSON-RPC error code, 0 for none
	msg    string // the JSON-RPC error message
	result json.RawMessage
	body   []byte
	front  bool // the front answered: no proxy did
	err    error
}

// outcome names an answer for the counts: its status and JSON-RPC code,
// not its message, which may carry sizes and offsets.
func (a answer) outcome() string {
	switch {
	case a.err != nil:
		return "no answer"
	case a.front:
		return fmt.Sprintf("front %d (no proxy)", a.status)
	case a.code != 0:
		return fmt.Sprintf("http %d error %d", a.status, a.code)
	case a.result != nil:
		return fmt.Sprintf("http %d result", a.status)
	}
	return fmt.Sprintf("http %d", a.status)
}

// documented is whether a 5xx or a 429 is one the proxy documents: a
// limit or an outage it tells the client to retry after.
func (a answer) documented() bool {
	switch a.status {
	case http.StatusTooManyRequests:
		return true
	case http.StatusServiceUnavailable:
		return a.msg == "the proxy is shutting down; retry" || a.msg == "cannot check the API key now; retry later" ||
			a.msg == "cannot load the instance configuration now; retry later" ||
			strings.HasPrefix(a.msg, "the proxy holds as many request and result bytes as its memory allows")
	}
	return false
}

// fatal is an answer that fails the run: a 5xx the proxy does not
// document, or the front's, which means no proxy process answered.
func (a answer) fatal() bool {
	return a.err == nil && (a.status >= 500 || a.front) && !a.documented()
}

// kindReport is what one kind of attack got back.
type kindReport struct {
	Kind     string         `json:"kind"`
	Requests int            `json:"requests"`
	Expected int            `json:"expected"` // the refusal or answer the kind should get, or a documented 429/503
	Fatal    int            `json:"fatal"`    // an undocumented 5xx or no proxy
	Outcomes map[string]int `json:"outcomes"`
	// Unexpected are the outcomes that were not expected, with a sample
	// of the message of each.
	Unexpected map[string]string `json:"unexpected,omitempty"`
}

func (h *hostileTenant) count(kind string, a answer, want bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := h.kinds[kind]
	if k == nil {
		k = &kindReport{Kind: kind, Outcomes: map[string]int{}}
		h.kinds[kind] = k
	}
	k.Requests++
	o := a.outcome()
	k.Outcomes[o]++
	switch {
	case a.fatal():
		k.Fatal++
	case want || a.documented():
		k.Expected++
		return
	}
	if k.Unexpected == nil {
		k.Unexpected = map[string]string{}
	}
	if _, ok := k.Unexpected[o]; !ok {
		sample := a.msg
		switch {
		case a.err != nil:
			sample = a.err.Error()
		case sample == "":
			sample = string(a.body[:min(len(a.body), 200)])
		}
		k.Unexpected[o] = firstLine(sample)
	}
}

// request is one POST of the hostile tenant.
type request struct {
	path    string // "" for /mcp
	key     string // "" for the tenant's own; "-" for none
	version string // MCP-Protocol-Version; "" for none
	accept  string // "" for application/json and event streams
	header  http.Header
	body    string
}

// post sends r through the front with a fresh trace ID, and reads the
// answer: a JSON body, or the response in an event stream.
func (h *hostileTenant) post(ctx context.Context, r request) answer {
	path := r.path
	if path == "" {
		path = "/mcp"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(h.url, "/mcp")+path, strings.NewReader(r.body))
	if err != nil {
		return answer{err: err}
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	accept := r.accept
	if accept == "" {
		accept = "application/json, text/event-stream"
	}
	req.Header.Set("Accept", accept)
	switch r.key {
	case "":
		req.Header.Set("Authorization", "Bearer "+h.key)
	case "-":
	default:
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	if r.version != "" {
		req.Header.Set("MCP-Protocol-Version", r.version)
	}
	var trace [16]byte
	var span [8]byte
	rand.Read(trace[:])
	rand.Read(span[:])
	req.Header.Set("traceparent", "00-"+hex.EncodeToString(trace[:])+"-"+hex.EncodeToString(span[:])+"-01")
	size := int64(len(r.body))
	for k, v := range req.Header {
		for _, x := range v {
			size += int64(len(k) + len(x) + 4)
		}
	}
	h.mu.Lock()
	h.traces[trace] = true
	h.sent += size
	h.mu.Unlock()

	resp, err := h.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, front: resp.Header.Get(frontHeader) != ""}
	// The largest answer asked for is a few MiB of text.
	a.body, err = io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	h.mu.Lock()
	h.received += int64(len(a.body))
	h.mu.Unlock()
	if err != nil {
		a.err = err
		return a
	}
	msg := a.body
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "text/event-stream" {
		msg = lastEvent(a.body)
	}
	if len(msg) > 1<<20 {
		// Only the huge tool's results are this large: decoding them
		// would cost the soak's process more than the proxy.
		if bytes.Contains(msg[:64], []byte(`"result":`)) {
			a.result = msg
		}
		return a
	}
	var m struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int64  `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(msg, &m) == nil {
		a.result = m.Result
		if m.Error != nil {
			a.code, a.msg = m.Error.Code, m.Error.Message
		}
	}
	return a
}

// lastEvent is the data of the last event of a stream that carries a
// result or an error: the call's response.
func lastEvent(stream []byte) []byte {
	var last []byte
	for line := range bytes.SplitSeq(stream, []byte("\n")) {
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok && (bytes.Contains(d, []byte(`"result"`)) || bytes.Contains(d, []byte(`"error"`))) {
			last = d
		}
	}
	return last
}

// attackKind is one kind of attack: run sends its requests and reports
// each answer with whether it is the expected one.
type attackKind struct {
	kind string
	run  func(ctx context.Context, h *hostileTenant, report func(a answer, want bool))
}

const (
	ping     = `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	older    = "2025-03-26" // the only version with batches
	newer    = "2025-11-25"
	maxBody  = 4 << 20 // the proxy's MAX_BODY_BYTES default
	pingHead = `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":`
)

// refused is the expected answer to a request the proxy must refuse
// before it does any work: that status and, when code is not 0, that
// JSON-RPC code.
func refused(status int, code int64) func(answer) bool {
	return func(a answer) bool { return a.status == status && (code == 0 || a.code == code) }
}

// ok is the expected answer to a request the proxy must answer.
func ok(a answer) bool { return a.status == http.StatusOK && a.result != nil && a.code == 0 }

// failedCall is the expected answer to a call whose upstream misbehaved:
// a JSON-RPC error, the process unharmed.
func failedCall(a answer) bool { return a.status < 500 && a.code != 0 }

// callBody is a tools/call of the hostile upstream's tool. Its ID is a
// string: the tenant's cancellations name the numeric IDs other clients
// use, and the proxy applies one to the single call of the key with that
// ID, which would otherwise be the tenant's own call now and then.
func callBody(tool, args, meta string) string {
	params := `"name":"evil__` + tool + `","arguments":` + args
	if meta != "" {
		params += `,"_meta":` + meta
	}
	return `{"jsonrpc":"2.0","id":"hostile-call","method":"tools/call","params":{` + params + `}}`
}

// filler is what the large bodies and headers are cut from: built once,
// as building megabytes for each attack would load the soak's own
// process, which also runs the well-behaved clients being measured.
type filler struct {
	open, close, objects string // nested arrays opened, closed; objects opened
	xs                   string // more than MAX_BODY_BYTES of x
	junk                 string // random header text
	batch                string // 50,000 calls
}

var fill = sync.OnceValue(func() *filler {
	return &filler{
		open:    strings.Repeat("[", maxBody),
		close:   strings.Repeat("]", maxBody/2),
		objects: strings.Repeat(`{"a":`, maxBody/5),
		xs:      strings.Repeat("x", maxBody+1<<20),
		junk:    randomString(900 << 10),
		batch:   batchOf(50000, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"evil__echo"}}`),
	}
})

func batchOf(n int, msg string) string {
	return "[" + strings.TrimSuffix(strings.Repeat(msg+",", n), ",") + "]"
}

// randomSize is a size in [lo, hi).
func randomSize(lo, hi int) int {
	var b [4]byte
	rand.Read(b[:])
	return lo + int(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24)%(hi-lo)
}

func randomString(n int) string {
	b := make([]byte, (n*3+3)/4)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// attacks is the hostile tenant's mix, sent round-robin by its workers.
var attacks = []attackKind{
	{"depth bomb (1-4 MiB)", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		room := maxBody - len(pingHead) - 16
		f := fill()
		var body string
		switch n := randomSize(1<<20, room); h.seq.Load() % 3 {
		case 0: // closed arrays
			body = pingHead + f.open[:n/2] + f.close[:n/2] + "}}"
		case 1: // arrays never closed
			body = pingHead + f.open[:n]
		default: // objects never closed
			body = pingHead + f.objects[:n/5*5]
		}
		a := h.post(ctx, request{body: body})
		report(a, refused(400, -32600)(a))
	}},
	{"depth bomb in a batch", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{version: older, body: "[" + pingHead + fill().open[:5000] + fill().close[:5000] + "}}]"})
		report(a, refused(400, -32600)(a))
	}},
	{"batch of 51", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{version: older, body: batchOf(51, ping)})
		report(a, refused(400, -32600)(a))
	}},
	{"batch of 50,000 calls", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{version: older, body: fill().batch})
		report(a, refused(400, -32600)(a))
	}},
	{"batch on 2025-11-25", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{version: newer, body: batchOf(2, ping)})
		report(a, refused(400, -32600)(a))
	}},
	{"body over MAX_BODY_BYTES", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: pingHead + `"` + fill().xs[:maxBody+randomSize(1, 1<<20)] + `"}}`})
		report(a, refused(http.StatusRequestEntityTooLarge, 0)(a))
	}},
	{"malformed keys", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		for i := range 16 {
			key := []string{"not-a-key-" + randomString(12), "mcpk_" + randomString(8), "mcpk_" + randomString(43) + "!",
				randomString(8 << 10), "mcpk_" + strings.Repeat("é", 20)}[i%5]
			a := h.post(ctx, request{key: key, body: ping})
			report(a, refused(http.StatusUnauthorized, 0)(a))
		}
	}},
	{"made-up well-formed keys", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		for range 16 {
			k, _, err := tenant.NewKey()
			if err != nil {
				return
			}
			a := h.post(ctx, request{key: k, body: ping})
			report(a, refused(http.StatusUnauthorized, 0)(a))
		}
	}},
	{"huge header", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		hdr := http.Header{}
		if h.seq.Load()%2 == 0 {
			hdr.Set("X-Junk", fill().junk[:randomSize(256<<10, 900<<10)])
		} else {
			for i := range 3000 {
				hdr.Set(fmt.Sprintf("X-Junk-%d", i), fill().junk[i*100:(i+1)*100])
			}
		}
		a := h.post(ctx, request{header: hdr, body: ping})
		// Answered as if the header were not there, or refused whole
		// (431) by the server in front.
		report(a, ok(a) || a.status == http.StatusRequestHeaderFieldsTooLarge)
	}},
	{"bogus MCP-Protocol-Version", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		v := []string{"1999-01-01", "2025-13-45", "latest", randomString(4 << 10), "9999-12-31"}[h.seq.Load()%5]
		a := h.post(ctx, request{version: v, body: ping})
		// Refused: versions that sort after 2026-07-28 pass the header
		// check as future ones and meet that epoch's rules instead.
		report(a, a.status >= 400 && a.status < 500)
	}},
	{"bogus Mcp-Method and Mcp-Name", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		const v = "2026-07-28"
		meta := fmt.Sprintf(`{%q:%q,%q:{}}`, mcp.MetaKeyProtocolVersion, v, mcp.MetaKeyClientCapabilities)
		hdr := http.Header{}
		if h.seq.Load()%2 == 0 {
			hdr.Set("Mcp-Method", "tools/list")
			hdr.Set("Mcp-Name", "echo")
		} else {
			hdr.Set("Mcp-Method", "tools/call")
			hdr.Set("Mcp-Name", "demo__echo") // another tenant's tool
		}
		a := h.post(ctx, request{version: v, header: hdr, body: callBody("echo", `{"text":"x"}`, meta)})
		report(a, a.status == http.StatusBadRequest)
	}},
	{"another tenant's instance", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		for _, path := range []string{"/mcp/" + h.victim, "/mcp/" + h.victim + "/demo"} {
			a := h.post(ctx, request{path: path, body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`})
			report(a, refused(http.StatusForbidden, 0)(a))
		}
	}},
	{"forged progress from the upstream", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("progress", `{"tokens":["mcp-proxy-progress-1",1,2,"victim-token",{"a":1}]}`, `{"progressToken":"mine"}`)})
		// The stream carries progress for the call's own token only.
		report(a, ok(a) && bytes.Count(a.body, []byte(`"progressToken":`)) == bytes.Count(a.body, []byte(`"progressToken":"mine"`)))
	}},
	{"guessed progress tokens", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("guess", `{"count":200}`, "")})
		report(a, ok(a) && !bytes.Contains(a.body, []byte("notifications/progress")))
	}},
	{"client progress and cancellation", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		// Notifications for the requests other clients likely have in
		// flight: the proxy tracks calls per key.
		for _, body := range []string{
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"mcp-proxy-progress-1","progress":1}}`,
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + fmt.Sprint(h.seq.Load()%20) + `}}`,
		} {
			a := h.post(ctx, request{version: newer, body: body})
			report(a, a.status == http.StatusAccepted)
		}
	}},
	{"huge result (2-4 MiB)", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		n := randomSize(2<<20, 4<<20)
		a := h.post(ctx, request{body: callBody("huge", fmt.Sprintf(`{"bytes":%d,"sse":%v}`, n, h.seq.Load()%2 == 0), "")})
		report(a, ok(a) && len(a.result) > n)
	}},
	{"deep result", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("deep", `{"depth":100000}`, "")})
		report(a, failedCall(a))
	}},
	{"invalid result", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("invalid", `{}`, "")})
		report(a, failedCall(a))
	}},
	{"cut answer", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("cut", `{}`, "")})
		report(a, failedCall(a))
	}},
	{"drip", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("drip", `{"bytes":20,"delayMs":5}`, "")})
		report(a, ok(a))
	}},
	{"elicitation flood", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		a := h.post(ctx, request{body: callBody("flood", `{"count":1000}`, "")})
		report(a, ok(a) || failedCall(a))
	}},
	{"initialize and lists on nulls/malformed", func(ctx context.Context, h *hostileTenant, report func(answer, bool)) {
		path := []string{"/mcp", "/mcp/" + h.instance + "/nulls", "/mcp/" + h.instance + "/malformed"}[h.seq.Load()%3]
		a := h.post(ctx, request{path: path, body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + newer +
			`","capabilities":{},"clientInfo":{"name":"hostile","version":"1"}}}`})
		report(a, ok(a) || failedCall(a))
		for _, l := range []struct{ method, field, name string }{
			{"tools/list", "tools", "name"}, {"prompts/list", "prompts", "name"},
			{"resources/list", "resources", "uri"}, {"resources/templates/list", "resourceTemplates", "uriTemplate"},
		} {
			a := h.post(ctx, request{path: path, version: newer, body: `{"jsonrpc":"2.0","id":2,"method":"` + l.method + `"}`})
			// The good entries, or an error for an upstream whose list
			// cannot be read at all; never a spoiled entry.
			report(a, ok(a) && cleanList(a.result, l.field, l.name) || failedCall(a))
		}
	}},
}

// cleanList reports whether every entry of result's list is an object
// with its name: the proxy left the spoiled ones out.
func cleanList(result json.RawMessage, field, name string) bool {
	var r map[string]json.RawMessage
	var list []json.RawMessage
	if json.Unmarshal(result, &r) != nil || json.Unmarshal(r[field], &list) != nil {
		return false
	}
	for _, e := range list {
		var m map[string]any
		if json.Unmarshal(e, &m) != nil || m == nil {
			return false
		}
		if s, _ := m[name].(string); s == "" {
			return false
		}
	}
	return true
}

// hostileReport is what the hostile tenant did and got.
type hostileReport struct {
	Attacks  int `json:"attacks"`
	Requests int `json:"requests"`
	// Seconds is the time of the hostile phases, which the rates are of.
	Seconds       float64       `json:"seconds"`
	BytesSent     int64         `json:"bytesSent"`
	BytesReceived int64         `json:"bytesReceived"`
	Expected      int           `json:"expected"`
	Fatal         int           `json:"fatal"`
	Rows          int           `json:"rows"` // its log rows: all on its own instance
	Kinds         []*kindReport `json:"kinds"`
}

func (h *hostileTenant) report() *hostileReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := &hostileReport{Attacks: h.attacks, BytesSent: h.sent, BytesReceived: h.received}
	for _, a := range attacks {
		k := h.kinds[a.kind]
		if k == nil {
			k = &kindReport{Kind: a.kind, Outcomes: map[string]int{}}
		}
		rep.Kinds = append(rep.Kinds, k)
		rep.Requests += k.Requests
		rep.Expected += k.Expected
		rep.Fatal += k.Fatal
	}
	return rep
}
