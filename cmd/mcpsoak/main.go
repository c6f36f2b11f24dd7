// Command mcpsoak is a soak run through the whole stack: it starts its own
// Postgres and Firestore emulator, a demo upstream, the proxy (devserver)
// behind a front that plays Cloud Run's routing, and two FlushLogs
// processes; drives it with go-sdk MCP clients of two well-behaved
// tenants while it stops and restarts Postgres, the emulator and the
// upstream and replaces the proxy process, and while a hostile tenant
// attacks in every other phase of the run; then flushes and checks that
// every request of the well-behaved tenants that got a response was
// logged exactly once on its own tenant's instance, that the hourly
// aggregates match the rows, that each key's last_used_at is right, that
// no proxy process crashed and that the hostile phases' p99 is within
// twice the quiet phases'. It reports the errors the clients saw in each
// fault window and what the hostile tenant's attacks got back.
//
//	mcpsoak [--duration 10m] [--clients 80] [--hostile=true] [--bin DIR] [--dir DIR] [--keep] [--json]
//
// The exit status is 1 when anything was lost, duplicated, misattributed
// or does not match, a proxy crashed or answered an attack with an
// undocumented 5xx, the hostile tenant slowed the others beyond the
// limit, or a fault could not be shown to have happened; 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	duration time.Duration
	clients  int
	bin      string // holds devserver and demo-upstream
	dir      string // services' data and process logs; "" makes a temporary one
	keep     bool
	json     bool
	hostile  bool
	// p99Limit is how much the hostile phases' p99 may be of the quiet
	// ones'; 0 reports the ratio without judging it.
	p99Limit float64
	progress io.Writer
}

func parse(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("mcpsoak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{progress: stderr}
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "how long the clients run; the faults are spread over it")
	fs.IntVar(&c.clients, "clients", 80, "concurrent MCP clients")
	fs.StringVar(&c.bin, "bin", "", "folder of the devserver and demo-upstream binaries (default: mcpsoak's own folder)")
	fs.StringVar(&c.dir, "dir", "", "folder for the services' data and the process logs (default: a temporary one)")
	fs.BoolVar(&c.keep, "keep", false, "keep the folder of data and logs (it is kept anyway when the run fails)")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.BoolVar(&c.hostile, "hostile", true, "add a hostile tenant that attacks in every other phase (false: the well-behaved tenants alone)")
	fs.Float64Var(&c.p99Limit, "p99-limit", 2, "fail when the well-behaved clients' p99 in hostile phases is more than this times the quiet phases' (0: report only)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.duration < 45*time.Second {
		return nil, errors.New("--duration must be at least 45s: the four faults and their recovery need room")
	}
	if c.clients < 1 {
		return nil, errors.New("--clients must be at least 1")
	}
	if c.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		c.bin = filepath.Dir(exe)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "mcpsoak:", err)
		}
		return 2
	}
	rep, err := soak(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "mcpsoak:", err)
		return 1
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.print(stdout)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}
