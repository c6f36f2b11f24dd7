package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// report is the outcome of a run.
type report struct {
	Seconds float64 `json:"seconds"`
	Clients int     `json:"clients"`
	Tenants int     `json:"tenants"` // well-behaved ones
	// Operations are the clients' calls, lists and (re)connections.
	Operations int `json:"operations"`
	OpErrors   int `json:"operationErrors"`
	// Requests are the HTTP POSTs, each with its own trace ID.
	Requests  int `json:"requests"`
	Responses int `json:"responses"` // answered by the proxy
	// Expected are the responses that must have exactly one log row;
	// UnloggedByDesign are answers given before the key was resolved.
	Expected         int `json:"expectedRows"`
	UnloggedByDesign int `json:"unloggedByDesign"`
	NoResponse       int `json:"noResponse"` // front 502 or transport error
	Rows             int `json:"rows"`
	Lost             int `json:"lost"`
	Duplicated       int `json:"duplicated"` // request IDs with more than one row
	Extra            int `json:"extra"`      // rows whose request ID no client sent
	// Misattributed are rows of a request on another tenant's instance
	// than the one whose key sent it.
	Misattributed int `json:"misattributed"`
	// LoggedWithoutAnswer are requests without a response that the proxy
	// logged anyway (it answered, the answer did not arrive); allowed.
	LoggedWithoutAnswer int `json:"loggedWithoutAnswer"`
	// UnloggedButLogged are answers judged unlogged by design that have a
	// row; allowed, but they would mean the rule above is off.
	UnloggedButLogged   int             `json:"unloggedButLogged"`
	AggregateMismatches int             `json:"aggregateMismatches"`
	LastUsedAt          time.Time       `json:"lastUsedAt"`
	MaxCreatedAt        time.Time       `json:"maxCreatedAt"`
	Dropped             int64           `json:"droppedByProxies"`
	Proxies             int             `json:"proxies"`
	Flushes             *flushStats     `json:"flushes"`
	Windows             []*windowReport `json:"windows"`
	// ErrorSeconds counts operation errors by the second of the run
	// they started in.
	ErrorSeconds map[int]int `json:"errorSeconds"`
	// Progress is the progress notifications the well-behaved clients
	// got without asking for any.
	Progress  int64          `json:"progressReceived"`
	Latency   *latencyReport `json:"latency"`
	Hostile   *hostileReport `json:"hostile,omitempty"`
	Processes []procReport   `json:"proxyProcesses"`
	Failures  []string       `json:"failures,omitempty"`
}

// latencyReport compares the well-behaved clients' operations in the
// quiet phases with those in the hostile tenant's, outside the fault
// windows and their recovery.
type latencyReport struct {
	Quiet   phaseLatency `json:"quiet"`
	Hostile phaseLatency `json:"hostile"`
	// Ratio is the hostile phases' p99 over the quiet ones'; the run
	// fails above Limit.
	Ratio float64 `json:"p99Ratio"`
	Limit float64 `json:"p99Limit"`
}

type phaseLatency struct {
	Phases     int     `json:"phases"`
	Seconds    float64 `json:"seconds"`
	Operations int     `json:"operations"`
	PerSecond  float64 `json:"operationsPerSecond"`
	Errors     int     `json:"errors"`
	P50        float64 `json:"p50Ms"`
	P99        float64 `json:"p99Ms"`
}

// minSamples is the fewest operations a phase kind needs for its p99
// to mean something.
const minSamples = 500

// procReport is one proxy process: how it ended and what it held.
type procReport struct {
	Name    string  `json:"name"`
	Pid     int     `json:"pid"`
	Exit    int     `json:"exit"`
	Status  string  `json:"status"` // how it exited, as the OS tells it
	Crashed bool    `json:"crashed"`
	At      float64 `json:"exitedAtSeconds"`
	PeakRSS int64   `json:"peakRssBytes"`
	Panics  int     `json:"panics"`
}

// windowReport is a fault window with the operations that overlap it,
// and those that started in the few seconds after it (recovery).
type windowReport struct {
	window
	From, To    float64        `json:"-"` // seconds since the start
	Ops         int            `json:"operations"`
	Errors      map[string]int `json:"errors"`
	After       int            `json:"operationsAfter"`
	ErrorsAfter map[string]int `json:"errorsAfter"`
}

// afterWindow is how long after a component is back its recovery is
// counted with its window.
const afterWindow = 5 * time.Second

// check compares what the clients saw with what Postgres holds.
func check(ctx context.Context, e *env, l *load, windows []*window, phases []phase, begin time.Time, elapsed time.Duration, p99Limit float64) (*report, error) {
	rep := &report{Seconds: elapsed.Seconds(), Tenants: len(e.tenants), Proxies: len(e.proxies), ErrorSeconds: map[int]int{}, Progress: l.progress.Load()}
	fail := func(format string, args ...any) { rep.Failures = append(rep.Failures, fmt.Sprintf(format, args...)) }

	db, err := pgx.Connect(ctx, e.pg.URL())
	if err != nil {
		return nil, err
	}
	defer db.Close(ctx)
	// Every request ID the tenants sent, with the instance its rows
	// must be on.
	owner := map[[16]byte]string{}
	for _, c := range l.clients {
		for _, a := range c.rec.attempts {
			owner[a.trace] = e.tenants[c.tenant].Instance.ID
		}
	}
	hostileInstance := ""
	if e.hostile != nil {
		hostileInstance = e.hostile.instance
		rep.Hostile = e.hostile.report()
		for t := range e.hostile.traces {
			owner[t] = hostileInstance
		}
	}
	rowsByTrace := map[[16]byte]int{}
	rows, err := db.Query(ctx, `SELECT request_id, mcp_server_instance_id::text, count(*) FROM mcp_server_request_logs GROUP BY 1, 2`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, instance string
		var n int
		if err := rows.Scan(&id, &instance, &n); err != nil {
			return nil, err
		}
		rep.Rows += n
		if rep.Hostile != nil && instance == hostileInstance {
			// Its rows need not be exact (a batch is a row per
			// message, under the batch's request ID).
			rep.Hostile.Rows += n
		}
		var t [16]byte
		if b, err := hex.DecodeString(id); err == nil && len(b) == 16 {
			copy(t[:], b)
		}
		switch want, ok := owner[t]; {
		case ok && want != instance:
			rep.Misattributed += n
		case ok:
			rowsByTrace[t] += n
		case instance != hostileInstance:
			rep.Extra += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	for _, c := range l.clients {
		for _, a := range c.rec.attempts {
			rep.Requests++
			n := rowsByTrace[a.trace]
			if n > 1 {
				rep.Duplicated++
			}
			switch {
			case a.result != fromProxy:
				rep.NoResponse++
				if n == 1 {
					rep.LoggedWithoutAnswer++
				}
			case a.unlogged:
				rep.Responses++
				rep.UnloggedByDesign++
				if n == 1 {
					rep.UnloggedButLogged++
				}
			default:
				rep.Responses++
				rep.Expected++
				if n == 0 {
					rep.Lost++
				}
			}
		}
	}

	// The hourly aggregates must be the rows grouped as the flush groups
	// them (by UTC hour).
	if err := db.QueryRow(ctx, `
WITH g AS (
    SELECT date_trunc('hour', created_at, 'UTC') AS hour, mcp_server_instance_id, tool_name, method, response_status,
           count(*) AS n, count(*) FILTER (WHERE response_status <> 'success') AS errs,
           sum(duration_ms) AS dur, max(duration_ms) AS maxdur, sum(input_bytes) AS inb, sum(output_bytes) AS outb
    FROM mcp_server_request_logs GROUP BY 1, 2, 3, 4, 5)
SELECT count(*) FROM g FULL JOIN mcp_server_request_hourly h
    USING (hour, mcp_server_instance_id, tool_name, method, response_status)
WHERE g.n IS DISTINCT FROM h.request_count OR g.errs IS DISTINCT FROM h.error_count
   OR g.dur IS DISTINCT FROM h.total_duration_ms OR g.maxdur IS DISTINCT FROM h.max_duration_ms
   OR g.inb IS DISTINCT FROM h.input_bytes OR g.outb IS DISTINCT FROM h.output_bytes`).Scan(&rep.AggregateMismatches); err != nil {
		return nil, fmt.Errorf("compare the hourly aggregates: %w", err)
	}

	// The flush moves last_used_at of each key to its latest entry.
	keys := map[string]string{} // key ID → whose
	for i, t := range e.tenants {
		keys[t.KeyID] = fmt.Sprintf("well-behaved tenant %d", i+1)
	}
	if e.hostile != nil {
		keys[e.hostile.keyID] = "the hostile tenant"
	}
	for id, name := range keys {
		var lastUsed, maxCreated *time.Time
		if err := db.QueryRow(ctx, `
SELECT k.last_used_at, (SELECT max(created_at) FROM mcp_server_request_logs WHERE api_key_id = k.id)
FROM mcp_api_keys k WHERE k.id = $1`, id).Scan(&lastUsed, &maxCreated); err != nil {
			return nil, fmt.Errorf("read last_used_at: %w", err)
		}
		if lastUsed == nil || maxCreated == nil || !lastUsed.Equal(*maxCreated) {
			fail("last_used_at of the key of %s is %v; want its latest row's created_at %v", name, lastUsed, maxCreated)
		}
		if id == e.tenants[0].KeyID && lastUsed != nil && maxCreated != nil {
			rep.LastUsedAt, rep.MaxCreatedAt = lastUsed.UTC(), maxCreated.UTC()
		}
	}

	for _, p := range e.proxies {
		crashed, at := p.crashed()
		p.mu.Lock()
		pr := procReport{Name: p.name, Pid: p.cmd.Process.Pid, Exit: -1, Crashed: crashed,
			At: at.Sub(begin).Seconds(), PeakRSS: p.peakRSS, Panics: p.panics}
		p.mu.Unlock()
		if st := p.cmd.ProcessState; st != nil {
			pr.Exit, pr.Status = st.ExitCode(), st.String()
		}
		rep.Processes = append(rep.Processes, pr)
		if crashed {
			fail("%s (pid %d) exited (%s) at %.1f s without being stopped: a crash (see its log)", p.name, pr.Pid, pr.Status, pr.At)
		}
		if pr.Panics > 0 {
			fail("%s logged %d panics", p.name, pr.Panics)
		}
		st := p.logStats()
		if st == nil {
			fail("%s: no request log figures (it did not shut down cleanly)", p.name)
			continue
		}
		rep.Dropped += st.Dropped
		if st.Depth > 0 {
			fail("%s shut down with %d request log entries unwritten", p.name, st.Depth)
		}
	}

	rep.windows(l, windows, begin)
	rep.Latency = latency(l, rep.Windows, phases)
	rep.Latency.Limit = p99Limit
	if rep.Hostile != nil {
		rep.Hostile.Seconds = rep.Latency.Hostile.Seconds
	}

	if rep.Lost > 0 {
		fail("%d responded requests have no log row", rep.Lost)
	}
	if rep.Duplicated > 0 {
		fail("%d requests have more than one log row", rep.Duplicated)
	}
	if rep.Extra > 0 {
		fail("%d log rows belong to no request a client sent", rep.Extra)
	}
	if rep.Misattributed > 0 {
		fail("%d log rows are on another tenant's instance than the key that sent the request", rep.Misattributed)
	}
	if rep.Progress > 0 {
		fail("the well-behaved clients got %d progress notifications they never asked for", rep.Progress)
	}
	if quiet := rep.Windows[len(rep.Windows)-1]; sum(quiet.Errors)+sum(quiet.ErrorsAfter) > 0 {
		fail("the well-behaved clients saw %d errors outside the fault windows", sum(quiet.Errors)+sum(quiet.ErrorsAfter))
	}
	if h := rep.Hostile; h != nil {
		if h.Requests == 0 {
			fail("the hostile tenant sent nothing")
		}
		if h.Fatal > 0 {
			var kinds []string
			for _, k := range h.Kinds {
				if k.Fatal > 0 {
					kinds = append(kinds, fmt.Sprintf("%s %d", k.Kind, k.Fatal))
				}
			}
			fail("%d answers to the hostile tenant were a 5xx the proxy does not document, or no proxy answered (%s; outcomes above)",
				h.Fatal, strings.Join(kinds, ", "))
		}
		lat := rep.Latency
		switch {
		case lat.Quiet.Operations < minSamples || lat.Hostile.Operations < minSamples:
			fail("%d operations in quiet phases and %d in hostile ones outside the fault windows; want at least %d each to compare p99",
				lat.Quiet.Operations, lat.Hostile.Operations, minSamples)
		case lat.Limit > 0 && lat.Ratio > lat.Limit:
			fail("the well-behaved clients' p99 is %.1f ms with the hostile tenant, %.1f× the %.1f ms without (at most %.0f×)",
				lat.Hostile.P99, lat.Ratio, lat.Quiet.P99, lat.Limit)
		}
	}
	if rep.Dropped > 0 {
		fail("the proxies dropped %d request log entries (buffer full)", rep.Dropped)
	}
	if rep.AggregateMismatches > 0 {
		fail("%d hourly aggregate rows differ from the log rows", rep.AggregateMismatches)
	}
	for _, w := range rep.Windows {
		if !w.Verified {
			fail("fault %q was not seen to happen: %s", w.Name, w.Evidence)
		}
	}
	return rep, nil
}

// windows counts the operations and their errors per fault window.
func (rep *report) windows(l *load, windows []*window, begin time.Time) {
	for _, w := range windows {
		rep.Windows = append(rep.Windows, &windowReport{window: *w, From: w.Start.Sub(begin).Seconds(),
			To: w.End.Sub(begin).Seconds(), Errors: map[string]int{}, ErrorsAfter: map[string]int{}})
	}
	outside := &windowReport{window: window{Name: "no fault", Verified: true}, Errors: map[string]int{}, ErrorsAfter: map[string]int{}}
	for _, c := range l.clients {
		for _, o := range c.ops {
			rep.Operations++
			if o.err != "" {
				rep.OpErrors++
			}
			at, end := time.Unix(0, o.start), time.Unix(0, o.end)
			target, after := outside, false
			// An operation that overlaps a window belongs to it (one in
			// flight when the fault began included); a window wins over
			// the recovery tail of the one before it.
			for _, w := range rep.Windows {
				if at.Before(w.End) && end.After(w.Start) {
					target = w
					break
				}
			}
			if target == outside {
				for _, w := range rep.Windows {
					if !at.Before(w.End) && at.Before(w.End.Add(afterWindow)) {
						target, after = w, true
						break
					}
				}
			}
			if o.err != "" {
				rep.ErrorSeconds[int(at.Sub(begin).Seconds())]++
			}
			switch {
			case after:
				target.After++
				if o.err != "" {
					target.ErrorsAfter[o.err]++
				}
			default:
				target.Ops++
				if o.err != "" {
					target.Errors[o.err]++
				}
			}
		}
	}
	rep.Windows = append(rep.Windows, outside)
}

// latency sorts the well-behaved operations into the phases they ran
// in from start to end, leaving out those that overlap a fault window or
// the recovery after it, and takes each kind of phase's percentiles.
func latency(l *load, windows []*windowReport, phases []phase) *latencyReport {
	rep := &latencyReport{}
	var quiet, noisy []time.Duration
	for _, p := range phases {
		pl := &rep.Quiet
		if p.Hostile {
			pl = &rep.Hostile
		}
		pl.Phases++
		pl.Seconds += p.End.Sub(p.Start).Seconds()
	}
	for _, c := range l.clients {
		for _, o := range c.ops {
			at, end := time.Unix(0, o.start), time.Unix(0, o.end)
			i := sort.Search(len(phases), func(i int) bool { return !phases[i].End.Before(end) })
			if i == len(phases) || at.Before(phases[i].Start) {
				continue // across a phase boundary, or in the warm-up
			}
			pl, samples := &rep.Quiet, &quiet
			if phases[i].Hostile {
				pl, samples = &rep.Hostile, &noisy
			}
			pl.PerSecond++ // counted here, divided below
			if faulty(windows, at, end) {
				continue
			}
			pl.Operations++
			if o.err != "" {
				pl.Errors++
			}
			*samples = append(*samples, end.Sub(at))
		}
	}
	for _, x := range []struct {
		pl *phaseLatency
		d  []time.Duration
	}{{&rep.Quiet, quiet}, {&rep.Hostile, noisy}} {
		if x.pl.Seconds > 0 {
			x.pl.PerSecond /= x.pl.Seconds
		}
		x.pl.P50, x.pl.P99 = percentile(x.d, 0.50), percentile(x.d, 0.99)
	}
	if rep.Quiet.P99 > 0 {
		rep.Ratio = rep.Hostile.P99 / rep.Quiet.P99
	}
	return rep
}

// faulty reports whether an operation overlaps a fault window or the
// recovery after it.
func faulty(windows []*windowReport, at, end time.Time) bool {
	for _, w := range windows {
		if w.Name != "no fault" && at.Before(w.End.Add(afterWindow)) && end.After(w.Start) {
			return true
		}
	}
	return false
}

// percentile is the q-quantile of d in milliseconds (nearest rank).
func percentile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := min(len(d)-1, int(q*float64(len(d))))
	return float64(d[i].Microseconds()) / 1000
}

func (rep *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%.1f s, %d clients of %d well-behaved tenants, %d proxy processes\n", rep.Seconds, rep.Clients, rep.Tenants, rep.Proxies)
	fmt.Fprintf(tw, "operations\t%d (%d with an error)\n", rep.Operations, rep.OpErrors)
	fmt.Fprintf(tw, "requests (HTTP POSTs)\t%d\n", rep.Requests)
	fmt.Fprintf(tw, "  answered by the proxy\t%d (%d must be logged, %d unlogged by design)\n", rep.Responses, rep.Expected, rep.UnloggedByDesign)
	fmt.Fprintf(tw, "  no answer\t%d (%d of them logged anyway)\n", rep.NoResponse, rep.LoggedWithoutAnswer)
	fmt.Fprintf(tw, "log rows\t%d\n", rep.Rows)
	fmt.Fprintf(tw, "lost\t%d\n", rep.Lost)
	fmt.Fprintf(tw, "duplicated\t%d\n", rep.Duplicated)
	fmt.Fprintf(tw, "extra\t%d\n", rep.Extra)
	fmt.Fprintf(tw, "on another tenant's instance\t%d\n", rep.Misattributed)
	fmt.Fprintf(tw, "progress notifications received\t%d\n", rep.Progress)
	fmt.Fprintf(tw, "dropped by the proxies\t%d\n", rep.Dropped)
	fmt.Fprintf(tw, "hourly aggregates differing\t%d\n", rep.AggregateMismatches)
	fmt.Fprintf(tw, "last_used_at\t%s (latest row %s)\n", rep.LastUsedAt.Format(time.RFC3339Nano), rep.MaxCreatedAt.Format(time.RFC3339Nano))
	if f := rep.Flushes; f != nil {
		fmt.Fprintf(tw, "flushes\t%d runs (%d pairs at once): %d copied entries, %d skipped (lock held), %d failed\n",
			f.Runs, f.Concurrent, f.Copied, f.Skipped, f.Failed)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "fault window\tfrom s\tto s\toperations\terrors\terrors in the %s after\tproof\n", afterWindow)
	for _, win := range rep.Windows {
		from, to := fmt.Sprintf("%.1f", win.From), fmt.Sprintf("%.1f", win.To)
		if win.Name == "no fault" {
			from, to = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", win.Name, from, to, win.Ops+win.After, sum(win.Errors), sum(win.ErrorsAfter), win.Evidence)
	}
	tw.Flush()
	for _, win := range rep.Windows {
		kinds := merged(win.Errors, win.ErrorsAfter)
		if len(kinds) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nerrors in %q by kind:\n", win.Name)
		for _, k := range kinds {
			fmt.Fprintf(w, "  %6d  %s\n", win.Errors[k]+win.ErrorsAfter[k], k)
		}
	}
	fmt.Fprintln(w)
	rep.printPhases(w)
	fmt.Fprintln(w)
	rep.printProcesses(w)
	fmt.Fprintln(w)
	if len(rep.Failures) == 0 {
		fmt.Fprintln(w, "PASS: every answered request logged exactly once on its own tenant; aggregates and last_used_at match; no proxy crashed")
		return
	}
	for _, f := range rep.Failures {
		fmt.Fprintln(w, "FAIL:", f)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func merged[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// printPhases prints the latency per kind of phase and the hostile
// tenant's outcomes.
func (rep *report) printPhases(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "well-behaved, outside faults\tphases\tseconds\toperations\tops/s\terrors\tp50 ms\tp99 ms\t\n")
	for _, x := range []struct {
		name string
		pl   phaseLatency
	}{{"without the hostile tenant", rep.Latency.Quiet}, {"with the hostile tenant", rep.Latency.Hostile}} {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%.0f\t%d\t%.2f\t%.2f\t\n", x.name, x.pl.Phases, x.pl.Seconds, x.pl.Operations, x.pl.PerSecond, x.pl.Errors, x.pl.P50, x.pl.P99)
	}
	tw.Flush()
	if rep.Hostile != nil {
		if rep.Latency.Limit > 0 {
			fmt.Fprintf(w, "p99 with / without: %.2f× (at most %.1f×)\n", rep.Latency.Ratio, rep.Latency.Limit)
		} else {
			fmt.Fprintf(w, "p99 with / without: %.2f× (reported, not judged: --p99-limit 0)\n", rep.Latency.Ratio)
		}
		h := rep.Hostile
		fmt.Fprintf(w, "\nhostile tenant: %d attacks, %d requests in %.0f s (%.1f attacks/s, %.1f MiB/s sent, %.1f MiB/s received); %d answered as expected, %d fatal; %d log rows, all on its own instance\n",
			h.Attacks, h.Requests, h.Seconds, float64(h.Attacks)/h.Seconds, float64(h.BytesSent)/(1<<20)/h.Seconds, float64(h.BytesReceived)/(1<<20)/h.Seconds,
			h.Expected, h.Fatal, h.Rows)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "attack\trequests\texpected\tother\toutcomes\n")
		for _, k := range h.Kinds {
			outcomes := make([]string, 0, len(k.Outcomes))
			for _, o := range merged(k.Outcomes, nil) {
				outcomes = append(outcomes, fmt.Sprintf("%s: %d", o, k.Outcomes[o]))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", k.Kind, k.Requests, k.Expected, k.Requests-k.Expected, strings.Join(outcomes, ", "))
		}
		tw.Flush()
		for _, k := range h.Kinds {
			for _, o := range merged(k.Unexpected, nil) {
				fmt.Fprintf(w, "  unexpected: %s: %s: %s\n", k.Kind, o, k.Unexpected[o])
			}
		}
	}
}

// printProcesses prints how each proxy process ended.
func (rep *report) printProcesses(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "proxy process\tpid\texit\tat s\tpeak RSS\tpanics\thow it ended\n")
	for _, p := range rep.Processes {
		how := "stopped by the soak"
		if p.Crashed {
			how = "CRASHED (" + p.Status + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.0f MiB\t%d\t%s\n", p.Name, p.Pid, p.Exit, p.At, float64(p.PeakRSS)/(1<<20), p.Panics, how)
	}
	tw.Flush()
}
