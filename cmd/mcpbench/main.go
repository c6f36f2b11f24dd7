// Command mcpbench measures a tools/call straight to an upstream, through a
// bare httputil.ReverseProxy and through the proxy, each target and the
// upstream in a process of its own, at 1 and 80 concurrent clients of each
// client protocol, then large results at 8 clients, and writes the figures
// to BENCHMARKS.md and a latency chart. It runs under devstack (`make
// bench`), which provides Postgres and the Firestore emulator; it starts
// the rest from the built binaries in -bin.
//
//	mcpbench [-bin bin] [-duration 10s] [-rounds 3] [-clients 1,80]
//	         [-protocols 2025-06-18,2026-07-28] [-load raw|sdk]
//	         [-upstream-protocols 2025-11-25,2026-07-28]
//	         [-large 1,1024,4096] [-large-clients 8] [-cold 5]
//	         [-out BENCHMARKS.md] [-chart docs/bench-latency.svg]
//
// The load comes from mcpload (plain HTTP clients, or go-sdk sessions with
// -load sdk), run once per target, client protocol, client count and
// round; the targets take turns within each round so that drift on a
// shared machine hits them alike. mcpload --watch reads the CPU time and
// resident memory of the target's process and the upstream's from /proc
// over the measured part of each run. Each version of
// -upstream-protocols other than the proxy's default adds a second proxy
// process, asking upstreams for that version, as a target of its own.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "reverseproxy" {
		os.Exit(serveReverseProxy(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if len(os.Args) > 1 && os.Args[1] == "memory" {
		code = runMemory(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else if len(os.Args) > 1 && os.Args[1] == "tenants" {
		code = runTenants(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		code = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

// options are what the flags say.
type options struct {
	bin      string
	duration time.Duration
	rounds   int
	clients  []int
	cold     int
	out      string
	chart    string
	// protocols are the versions the clients speak; sdk: go-sdk
	// sessions instead of plain HTTP.
	protocols []string
	sdk       bool
	// upstreamProtocols are the versions the proxy asks upstreams for,
	// one proxy process each.
	upstreamProtocols []string
	// large are the result sizes of the large-result part, in KiB, the
	// first the small reference; largeClients its concurrency.
	large        []int
	largeClients int
}

func parse(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("mcpbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var clients, protocols, upstreamProtocols, large, load string
	fs.StringVar(&o.bin, "bin", "bin", "folder of the built binaries (make build)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one measured run")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every target at every client count once")
	fs.StringVar(&clients, "clients", "1,80", "concurrent client counts")
	fs.IntVar(&o.cold, "cold", 5, "cold starts to time")
	fs.StringVar(&protocols, "protocols", "2025-06-18,2026-07-28", "protocol versions the clients speak, each measured")
	fs.StringVar(&load, "load", "raw", "clients: raw (plain HTTP POSTs, no initialize) or sdk (go-sdk sessions)")
	fs.StringVar(&upstreamProtocols, "upstream-protocols", "2025-11-25,2026-07-28",
		"versions the proxy asks upstreams for: each but the default adds a proxy process as a target")
	fs.StringVar(&large, "large", "1,1024,4096", "result sizes in KiB of the large-result part, the first the small reference (\"\" for none)")
	fs.IntVar(&o.largeClients, "large-clients", 8, "concurrent clients of the large-result part")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "file whose generated section receives the figures (\"\" prints only)")
	fs.StringVar(&o.chart, "chart", "docs/bench-latency.svg", "latency chart to write (\"\" for none)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.clients, err = counts("-clients", clients); err != nil {
		return nil, err
	}
	if large != "" {
		if o.large, err = counts("-large", large); err != nil {
			return nil, err
		}
	}
	supported := mcp.SupportedProtocolVersions()
	for _, l := range []struct {
		flag, value string
		into        *[]string
	}{{"-protocols", protocols, &o.protocols}, {"-upstream-protocols", upstreamProtocols, &o.upstreamProtocols}} {
		for part := range strings.SplitSeq(l.value, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			if !slices.Contains(supported, part) {
				return nil, fmt.Errorf("%s: %q is none of %s", l.flag, part, strings.Join(supported, ", "))
			}
			*l.into = append(*l.into, part)
		}
	}
	if len(o.protocols) == 0 {
		return nil, errors.New("-protocols: name at least one version")
	}
	switch load {
	case "raw":
	case "sdk":
		o.sdk = true
	default:
		return nil, fmt.Errorf("-load: %q is neither raw nor sdk", load)
	}
	if o.rounds < 1 || o.duration <= 0 || o.cold < 0 || o.largeClients < 1 {
		return nil, errors.New("-rounds, -duration and -large-clients must be positive, -cold not negative")
	}
	return o, nil
}

// counts reads "1,80" into positive counts.
func counts(flag, s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive count", flag, part)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "mcpbench:", err)
		}
		return 2
	}
	for _, name := range []string{"DATABASE_URL", "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"} {
		if os.Getenv(name) == "" {
			fmt.Fprintf(stderr, "mcpbench: %s is not set: run it under devstack (make bench)\n", name)
			return 2
		}
	}
	res, err := bench(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mcpbench:", err)
		return 1
	}
	section := res.markdown(o, commandLine(args))
	fmt.Fprintln(stdout, section)
	if o.chart != "" {
		if err := res.writeChart(o.chart); err != nil {
			fmt.Fprintln(stderr, "mcpbench: chart:", err)
			return 1
		}
		fmt.Fprintln(stderr, "mcpbench: wrote", o.chart)
	}
	if o.out != "" {
		if err := replaceSection(o.out, sectionBegin, sectionEnd, section); err != nil {
			fmt.Fprintln(stderr, "mcpbench:", err)
			return 1
		}
		fmt.Fprintln(stderr, "mcpbench: wrote", o.out)
	}
	return 0
}

// commandLine is how the run can be repeated.
func commandLine(args []string) string {
	if len(args) == 0 {
		return "make bench"
	}
	return "make bench BENCHFLAGS='" + strings.Join(args, " ") + "'"
}

// newEncryptionKey is a throwaway MCP_ENCRYPTION_KEY for a throwaway
// database.
func newEncryptionKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
