package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/testbin"
)

// TestSoakShort is the short soak of make test: a minute through the
// whole stack with every fault and the hostile tenant, on its own
// Postgres and emulator.
func TestSoakShort(t *testing.T) {
	bin := testbin.Dir(t, "mcpproxy.dev/mcpproxy/cmd/devserver", "mcpproxy.dev/mcpproxy/cmd/demo-upstream")
	var out, progress bytes.Buffer
	// The p99 comparison is reported, not judged: a one-minute run
	// shares its two cores with the rest of make test, and a latency goal
	// is a benchmark's to show (make soak judges it, at 2×).
	code := run(context.Background(), []string{"--duration", "60s", "--clients", "80", "--bin", bin, "--json", "--p99-limit", "0"}, &out, &progress)
	t.Log(progress.String())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	t.Logf("%d requests, %d rows, %d operations (%d errors)", rep.Requests, rep.Rows, rep.Operations, rep.OpErrors)
	if lat := rep.Latency; lat != nil {
		t.Logf("p50/p99 outside faults: %.1f/%.1f ms quiet, %.1f/%.1f ms hostile (p99 %.2f×)",
			lat.Quiet.P50, lat.Quiet.P99, lat.Hostile.P50, lat.Hostile.P99, lat.Ratio)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Extra != 0 || rep.Dropped != 0 || rep.AggregateMismatches != 0 {
		t.Errorf("lost %d, duplicated %d, extra %d, dropped %d, aggregate mismatches %d; want all 0",
			rep.Lost, rep.Duplicated, rep.Extra, rep.Dropped, rep.AggregateMismatches)
	}
	if rep.Expected < 1000 || rep.Rows < rep.Expected {
		t.Errorf("%d rows for %d answered requests; want at least 1,000 and one each", rep.Rows, rep.Expected)
	}
	// The hostile tenant: every attack ran and none met an undocumented
	// 5xx; its rows stayed on its instance, and the well-behaved
	// clients' p99 with it is within the limit of the quiet phases'.
	h := rep.Hostile
	if h == nil {
		t.Fatal("no hostile tenant in the report")
	}
	if len(h.Kinds) != len(attacks) {
		t.Errorf("%d kinds of attack reported; want %d", len(h.Kinds), len(attacks))
	}
	for _, k := range h.Kinds {
		if k.Requests == 0 || k.Fatal != 0 {
			t.Errorf("attack %q: %d requests, %d fatal (%v); want some, none fatal", k.Kind, k.Requests, k.Fatal, k.Outcomes)
		}
	}
	if h.Rows == 0 || rep.Misattributed != 0 {
		t.Errorf("hostile rows %d, rows on another tenant's instance %d; want some and 0", h.Rows, rep.Misattributed)
	}
	if lat := rep.Latency; lat.Quiet.Phases < 2 || lat.Hostile.Phases < 2 || lat.Quiet.P99 <= 0 || lat.Hostile.P99 <= 0 {
		t.Errorf("latency %+v; want at least 2 phases of each kind, each with a p99", lat)
	}
	for _, p := range rep.Processes {
		if p.Crashed || p.Exit != 0 || p.Panics != 0 {
			t.Errorf("proxy process %+v; want exit 0 when stopped, no panics", p)
		}
	}
	want := []string{"postgres down", "firestore emulator down", "upstream killed", "proxy replaced (SIGTERM)", "no fault"}
	if len(rep.Windows) != len(want) {
		t.Fatalf("%d windows; want %d", len(rep.Windows), len(want))
	}
	for i, w := range rep.Windows {
		if w.Name != want[i] || !w.Verified {
			t.Errorf("window %d = %q (verified %v: %s); want %q verified", i, w.Name, w.Verified, w.Evidence, want[i])
		}
		if w.Ops == 0 {
			t.Errorf("window %q: no operations ran during it", w.Name)
		}
		// The warm cache rides out Postgres, the buffer rides out
		// Firestore, and the front switches before the old proxy stops:
		// only calls that need the upstream may fail.
		if w.Name != "upstream killed" && sum(w.Errors)+sum(w.ErrorsAfter) > 0 {
			t.Errorf("window %q: clients saw errors %v, after it %v; want none", w.Name, w.Errors, w.ErrorsAfter)
		}
	}
	if up := rep.Windows[2]; sum(up.Errors) == 0 {
		t.Errorf("no call failed while the upstream was down: was it?")
	} else {
		for kind := range up.Errors {
			if !strings.Contains(kind, "upstream demo") {
				t.Errorf("while the upstream was down: error %q does not name the upstream", kind)
			}
		}
	}
}

// TestFilter: the proxy's per-request lines stay out of its log file,
// errors and the shutdown line stay in, and the shutdown line's request
// log figures are kept.
func TestFilter(t *testing.T) {
	in := strings.Join([]string{
		`{"time":"2026-01-01T00:00:00Z","severity":"INFO","message":"mcp request","method":"tools/call"}`,
		`{"time":"2026-01-01T00:00:00Z","severity":"ERROR","message":"mcp request","method":"tools/call","httpStatus":503}`,
		`{"time":"2026-01-01T00:00:00Z","severity":"INFO","message":"proxy shut down","requestLog":{"depth":0,"written":7,"dropped":2}}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	c := &child{}
	c.filter(strings.NewReader(in), &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"ERROR"`) || !strings.Contains(lines[1], "proxy shut down") {
		t.Errorf("kept lines:\n%s\nwant the error and the shutdown line", out.String())
	}
	if st := c.logStats(); st == nil || st.Written != 7 || st.Dropped != 2 {
		t.Errorf("stats = %+v; want written 7, dropped 2", st)
	}
}

func TestUnloggedByDesign(t *testing.T) {
	for _, c := range []struct {
		status int
		msg    string
		want   bool
	}{
		{401, "invalid API key", true},
		{503, "the proxy is shutting down; retry", true},
		{503, "cannot check the API key now; retry later", true},
		// The key was resolved: the request is logged.
		{503, "cannot load the instance configuration now; retry later", false},
		{403, "the API key does not belong to instance x", false},
		{200, "", false},
	} {
		if got := unloggedByDesign(c.status, c.msg); got != c.want {
			t.Errorf("unloggedByDesign(%d, %q) = %v; want %v", c.status, c.msg, got, c.want)
		}
	}
}

// TestCrash: a process that exits before the soak stops it is a crash;
// one the soak stops is not, whatever its exit code.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	crashing, err := start(dir, "crashing", "/bin/sh", nil, "-c", "echo 'panic: boom' >&2; exit 2")
	if err != nil {
		t.Fatal(err)
	}
	<-crashing.done
	if crashed, at := crashing.crashed(); !crashed || at.IsZero() {
		t.Errorf("a process that exited on its own: crashed %v at %v; want a crash with its time", crashed, at)
	}
	if crashing.panics != 1 {
		t.Errorf("%d panic lines counted; want 1", crashing.panics)
	}
	stopped, err := start(dir, "stopped", "/bin/sleep", nil, "60")
	if err != nil {
		t.Fatal(err)
	}
	if code := stopped.stop(syscall.SIGTERM, 5*time.Second); code == 0 {
		t.Errorf("sleep exited %d after SIGTERM; want the signal's code", code)
	}
	if crashed, _ := stopped.crashed(); crashed || stopped.peakRSS == 0 {
		t.Errorf("a process the soak stopped: crashed %v, peak RSS %d; want no crash and its RSS", crashed, stopped.peakRSS)
	}
}

// TestAnswer: which answers of the hostile tenant fail the run.
func TestAnswer(t *testing.T) {
	for _, c := range []struct {
		a                 answer
		documented, fatal bool
	}{
		{answer{status: 400, code: -32600}, false, false},
		{answer{status: 429, code: -32603}, true, false},
		{answer{status: 503, msg: "cannot check the API key now; retry later"}, true, false},
		{answer{status: 503, msg: "the proxy holds as many request and result bytes as its memory allows (INFLIGHT_BYTES); retry"}, true, false},
		{answer{status: 503, msg: "something else"}, false, true},
		{answer{status: 500, msg: "internal error"}, false, true},
		{answer{status: 502, front: true}, false, true},
		{answer{err: io.ErrUnexpectedEOF}, false, false},
	} {
		if d, f := c.a.documented(), c.a.fatal(); d != c.documented || f != c.fatal {
			t.Errorf("%s %q: documented %v, fatal %v; want %v, %v", c.a.outcome(), c.a.msg, d, f, c.documented, c.fatal)
		}
	}
}

func TestCleanList(t *testing.T) {
	for _, c := range []struct {
		result string
		want   bool
	}{
		{`{"ttlMs":30000,"tools":[{"name":"echo","inputSchema":{}}]}`, true},
		{`{"tools":[]}`, true},
		{`{"tools":[null,{"name":"echo"}]}`, false},
		{`{"tools":[7,{"name":"echo"}]}`, false},
		{`{"tools":[{"inputSchema":{}}]}`, false},
		{`{"tools":{}}`, false},
	} {
		if got := cleanList(json.RawMessage(c.result), "tools", "name"); got != c.want {
			t.Errorf("cleanList(%s) = %v; want %v", c.result, got, c.want)
		}
	}
}

// TestLatency: an operation counts in the phase that holds it from start
// to end, not when it crosses a boundary or a fault window.
func TestLatency(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) int64 { return t0.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	phases := []phase{{Start: t0, End: t0.Add(10 * time.Second)}, {Hostile: true, Start: t0.Add(10 * time.Second), End: t0.Add(20 * time.Second)}}
	windows := []*windowReport{{window: window{Name: "upstream killed", Start: t0.Add(15 * time.Second), End: t0.Add(16 * time.Second)}}}
	l := &load{clients: []*client{{ops: []op{
		{start: at(1000), end: at(1010)},   // quiet, 10 ms
		{start: at(2000), end: at(2030)},   // quiet, 30 ms
		{start: at(9900), end: at(10100)},  // across the boundary: neither
		{start: at(11000), end: at(11040)}, // hostile, 40 ms
		{start: at(15500), end: at(15600)}, // in the fault window: left out
		{start: at(19000), end: at(19500)}, // in its recovery: left out
	}}}}
	rep := latency(l, windows, phases)
	if rep.Quiet.Operations != 2 || rep.Hostile.Operations != 1 {
		t.Fatalf("quiet %d, hostile %d operations; want 2 and 1", rep.Quiet.Operations, rep.Hostile.Operations)
	}
	if rep.Quiet.P99 != 30 || rep.Hostile.P99 != 40 || rep.Ratio < 1.33 || rep.Ratio > 1.34 {
		t.Errorf("p99 quiet %v, hostile %v, ratio %v; want 30, 40, 1.33", rep.Quiet.P99, rep.Hostile.P99, rep.Ratio)
	}
}
