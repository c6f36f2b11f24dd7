package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/internal/stack"
)

func (c *config) logf(format string, args ...any) {
	fmt.Fprintf(c.progress, "mcpsoak: "+format+"\n", args...)
}

// window is a fault: what was down, when, and the proof that it was.
type window struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Evidence says how the soak saw the fault from outside (a query
	// refused, a connection cut); empty when it could not.
	Evidence string `json:"evidence"`
	Verified bool   `json:"verified"`
	Err      string `json:"error,omitempty"`
}

// schedule spreads the four faults over the run, one after another: each
// starts at its share of the duration, and lasts what the duration allows
// (shortened for the short run).
type fault struct {
	name string
	at   float64       // share of the duration
	down time.Duration // how long the component stays down
	do   func(ctx context.Context, e *env, w *window, down time.Duration) error
}

func faults(d time.Duration) []fault {
	scale := func(max time.Duration, share float64) time.Duration {
		return min(max, time.Duration(float64(d)*share))
	}
	return []fault{
		{"postgres down", 0.10, scale(15*time.Second, 0.12), postgresDown},
		// The request log waits in the proxy's buffer while the emulator
		// is down (LOG_BUFFER_MAX_BYTES); the restart itself takes 5 to 10 s.
		{"firestore emulator down", 0.32, scale(10*time.Second, 0.08), firestoreDown},
		{"upstream killed", 0.54, scale(5*time.Second, 0.05), upstreamKilled},
		{"proxy replaced (SIGTERM)", 0.76, 0, proxyReplaced},
	}
}

func postgresDown(ctx context.Context, e *env, w *window, down time.Duration) error {
	if err := e.pg.Stop(); err != nil {
		return err
	}
	probe(w, "a Postgres connection", func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, e.pg.URL())
		if err == nil {
			c.Close(cctx)
		}
		return err
	})
	sleep(ctx, down)
	return e.pg.Start(ctx)
}

func firestoreDown(ctx context.Context, e *env, w *window, down time.Duration) error {
	if err := e.fs.Stop(ctx); err != nil {
		return err
	}
	probe(w, "an HTTP request to the emulator", func() error {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + e.fs.Host() + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	sleep(ctx, down-time.Since(w.Start))
	return e.fs.Start(ctx)
}

func upstreamKilled(ctx context.Context, e *env, w *window, down time.Duration) error {
	e.upstream.stop(syscall.SIGKILL, 5*time.Second)
	probe(w, "a connection to the upstream", func() error {
		c, err := net.DialTimeout("tcp", e.upAddr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	sleep(ctx, down)
	return e.startUpstream(ctx)
}

// proxyReplaced does what Cloud Run does on a new revision or a scale-in:
// a new instance takes the traffic, then the old one gets SIGTERM and must
// finish its requests and write its buffered log.
func proxyReplaced(ctx context.Context, e *env, w *window, _ time.Duration) error {
	old := e.proxies[len(e.proxies)-1]
	if crashed, at := old.crashed(); crashed {
		return fmt.Errorf("%s crashed at %s, before its replacement (see its log)", old.name, at.Format(time.TimeOnly))
	}
	if err := e.startProxy(ctx); err != nil {
		return err
	}
	// Requests routed to the old process just before the switch reach it.
	sleep(ctx, time.Second)
	code := old.stop(syscall.SIGTERM, 15*time.Second)
	if code != 0 {
		return fmt.Errorf("%s exited with %d after SIGTERM (see its log)", old.name, code)
	}
	if old.logStats() == nil {
		return fmt.Errorf("%s exited without its shutdown line", old.name)
	}
	w.Evidence = fmt.Sprintf("%s exited 0 after SIGTERM; traffic on %s", old.name, e.proxies[len(e.proxies)-1].name)
	w.Verified = true
	return nil
}

// probe records that the component is really down: check must fail.
func probe(w *window, what string, check func() error) {
	if err := check(); err != nil {
		w.Evidence = what + " failed: " + firstLine(err.Error())
		w.Verified = true
	} else {
		w.Evidence = what + " succeeded while it should be down"
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// flushStats count the FlushLogs calls of the run.
type flushStats struct {
	Runs       int `json:"runs"`
	Copied     int `json:"entriesCopied"`
	Skipped    int `json:"skipped"` // another run held the lock
	Failed     int `json:"failed"`
	Concurrent int `json:"concurrentPairs"`
	mu         sync.Mutex
}

type flushReport struct {
	Skipped   string `json:"skipped"`
	Entries   int    `json:"entries"`
	Remaining int64  `json:"remaining"`
	Error     string `json:"error"`
}

// flush calls FlushLogs on one flusher.
func (e *env) flush(ctx context.Context, i int, st *flushStats) (flushReport, error) {
	var rep flushReport
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.flushURL[i]+"/flushlogs", nil)
	resp, err := (&http.Client{Timeout: 90 * time.Second}).Do(req)
	if err == nil {
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("flushlogs: %s: %s", resp.Status, rep.Error)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.Runs++
	switch {
	case err != nil:
		st.Failed++
	case rep.Skipped != "":
		st.Skipped++
	default:
		st.Copied += rep.Entries
	}
	return rep, err
}

// flushLoop calls FlushLogs every few seconds, every third time on both
// flushers at once, until ctx ends.
func (e *env) flushLoop(ctx context.Context, every time.Duration, st *flushStats) {
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		if n%3 == 0 {
			var wg sync.WaitGroup
			for i := range e.flushers {
				wg.Go(func() { e.flush(ctx, i, st) })
			}
			wg.Wait()
			st.mu.Lock()
			st.Concurrent++
			st.mu.Unlock()
		} else {
			e.flush(ctx, n%2, st)
		}
	}
}

// soak runs the whole thing and returns the report.
func soak(ctx context.Context, c *config) (*report, error) {
	e := &env{dir: c.dir, bin: c.bin}
	if e.dir == "" {
		dir, err := os.MkdirTemp("", "mcpsoak-")
		if err != nil {
			return nil, err
		}
		e.dir = dir
	} else if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	if err := stack.OpenToOthers(e.dir); err != nil {
		return nil, err
	}
	failed := true
	defer func() {
		e.close()
		if failed || c.keep {
			c.logf("data and process logs kept in %s", e.dir)
		} else {
			os.RemoveAll(e.dir)
		}
	}()
	if err := startServices(ctx, c, e); err != nil {
		return nil, err
	}
	e.front = newFront()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	frontSrv := &http.Server{Handler: e.front}
	go frontSrv.Serve(ln) // ends with Close below
	defer frontSrv.Close()
	if err := e.startProxy(ctx); err != nil {
		return nil, err
	}
	for i := range e.flushers {
		if e.flushers[i], e.flushURL[i], err = e.startDevserver(ctx, fmt.Sprintf("flusher-%d", i+1)); err != nil {
			return nil, err
		}
	}

	c.logf("%d clients of %d tenants for %s through %s", c.clients, len(e.tenants), c.duration, ln.Addr())
	l := &load{url: "http://" + ln.Addr().String() + "/mcp"}
	for _, t := range e.tenants {
		l.keys = append(l.keys, t.Key)
	}
	runCtx, stopRun := context.WithTimeout(ctx, c.duration)
	defer stopRun()
	begin := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { l.run(runCtx, c.clients) })
	var phases []phase
	if e.hostile != nil {
		e.hostile.url = l.url
		c.logf("a hostile tenant attacks in every other phase of %s", phaseLength(c.duration))
		wg.Go(func() { phases = e.hostile.run(runCtx, begin, phaseLength(c.duration)) })
	}
	st := &flushStats{}
	wg.Go(func() { e.flushLoop(runCtx, min(3*time.Second, c.duration/20), st) })

	var windows []*window
	var faultErr error
	var notBefore time.Time
	for i, f := range faults(c.duration) {
		// Windows never overlap, nor does one start in the recovery tail
		// of the one before.
		sleep(runCtx, time.Until(later(begin.Add(time.Duration(f.at*float64(c.duration))), notBefore)))
		if runCtx.Err() != nil {
			if ctx.Err() == nil {
				faultErr = fmt.Errorf("the run ended before fault %d (%s) could start: give it a longer --duration", i+1, f.name)
			}
			break
		}
		w := &window{Name: f.name, Start: time.Now()}
		c.logf("%5.1fs %s", time.Since(begin).Seconds(), f.name)
		if err := f.do(runCtx, e, w, f.down); err != nil {
			w.Err = err.Error()
			faultErr = fmt.Errorf("%s: %w", f.name, err)
		}
		w.End = time.Now()
		windows = append(windows, w)
		notBefore = w.End.Add(afterWindow + time.Second)
		c.logf("%5.1fs %s: back after %.1fs (%s)", time.Since(begin).Seconds(), f.name, w.End.Sub(w.Start).Seconds(), w.Evidence)
		if faultErr != nil {
			break
		}
	}
	if faultErr != nil {
		stopRun()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if e.hostile == nil {
		phases = []phase{{Start: begin.Add(phaseWarmup), End: begin.Add(elapsed)}}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if faultErr != nil {
		return nil, faultErr
	}

	// The last proxy writes its buffer on SIGTERM; then flush until
	// Firestore holds no batch.
	last := e.proxies[len(e.proxies)-1]
	c.logf("load stopped after %.1fs; SIGTERM %s, then flush", elapsed.Seconds(), last.name)
	// A proxy that crashed is not stopped: check reports it.
	if crashed, _ := last.crashed(); !crashed {
		if code := last.stop(syscall.SIGTERM, 15*time.Second); code != 0 {
			return nil, fmt.Errorf("%s exited with %d after SIGTERM (see its log in %s)", last.name, code, e.dir)
		}
	}
	if err := e.flushAll(ctx, st); err != nil {
		return nil, err
	}
	rep, err := check(ctx, e, l, windows, phases, begin, elapsed, c.p99Limit)
	if err != nil {
		return nil, err
	}
	rep.Clients, rep.Flushes = c.clients, st
	failed = len(rep.Failures) > 0
	return rep, nil
}

// flushAll flushes until a run copies nothing and reports no batch left.
func (e *env) flushAll(ctx context.Context, st *flushStats) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		rep, err := e.flush(ctx, 0, st)
		if err == nil && rep.Skipped == "" && rep.Remaining == 0 {
			return nil
		}
		sleep(ctx, 500*time.Millisecond)
	}
	return fmt.Errorf("the request log batches were not all flushed within 2 minutes")
}
