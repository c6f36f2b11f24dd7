package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// config is what mcpadmin reads from the environment.
type config struct {
	Postgres      postgres.Options
	EncryptionKey string `env:"MCP_ENCRYPTION_KEY"`
}

type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	json           bool
	db             *postgres.DB
}

func (a *app) close() { a.db.Close() }

// store opens the database on first use, so that usage errors need none.
func (a *app) store(ctx context.Context) (*postgres.DB, error) {
	if a.db != nil {
		return a.db, nil
	}
	var cfg config
	if err := envconfig.Process(ctx, &cfg); err != nil {
		return nil, err
	}
	var keys *keyring.Keyring
	if cfg.EncryptionKey != "" {
		k, err := keyring.Parse(cfg.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("MCP_ENCRYPTION_KEY: %w", err)
		}
		keys = k
	}
	db, err := postgres.Open(ctx, cfg.Postgres, keys)
	if err != nil {
		return nil, err
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	a.db = db
	return db, nil
}

type command struct {
	run func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error
}

var commands = map[string]map[string]command{}

func register(group, name string, run func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error) {
	if commands[group] == nil {
		commands[group] = map[string]command{}
	}
	commands[group][name] = command{run: run}
}

func (a *app) dispatch(ctx context.Context, args []string) error {
	// --json may stand anywhere.
	var rest []string
	for _, arg := range args {
		if arg == "--json" || arg == "-json" {
			a.json = true
			continue
		}
		rest = append(rest, arg)
	}
	if len(rest) == 0 {
		return usageError("no command")
	}
	group, sub := rest[0], ""
	rest = rest[1:]
	cmds, ok := commands[group]
	if !ok {
		return usageError(fmt.Sprintf("unknown command %q", group))
	}
	if len(rest) > 0 && rest[0] != "" && cmds[rest[0]].run != nil {
		sub, rest = rest[0], rest[1:]
	} else if _, bare := cmds[""]; !bare {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return usageError(fmt.Sprintf("%s needs a subcommand", group))
		}
		return usageError(fmt.Sprintf("unknown command %q", group+" "+rest[0]))
	}
	cmd, ok := cmds[sub]
	if !ok {
		return usageError(fmt.Sprintf("unknown command %q", strings.TrimSpace(group+" "+sub)))
	}
	fs := flag.NewFlagSet(strings.TrimSpace(group+" "+sub), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return cmd.run(a, ctx, fs, rest)
}

// parse parses flags and turns their errors into usage errors, naming
// missing required flags.
func parse(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		return usageError(fmt.Sprintf("%s: %v", fs.Name(), err))
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0)))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, r := range required {
		if !set[r] {
			return usageError(fmt.Sprintf("%s: --%s is required", fs.Name(), r))
		}
	}
	return nil
}

// open parses the flags, then opens the store: a usage error needs no
// database.
func (a *app) open(ctx context.Context, fs *flag.FlagSet, args []string, required ...string) (*postgres.DB, error) {
	if err := parse(fs, args, required...); err != nil {
		return nil, err
	}
	return a.store(ctx)
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// pairs splits NAME=VALUE items; with optional, a bare NAME is allowed.
func pairs(items []string, what string, optional bool) (names []string, values map[string]string, err error) {
	values = map[string]string{}
	for _, it := range items {
		k, v, found := strings.Cut(it, "=")
		if k == "" || (!found && !optional) {
			return nil, nil, usageError(fmt.Sprintf("%s %q: want NAME=VALUE", what, redact(it)))
		}
		names = append(names, k)
		if found {
			values[k] = v
		}
	}
	return names, values, nil
}

// redact keeps the name of a NAME=VALUE item and hides the value, so a
// malformed secret is not echoed back into a terminal log.
func redact(item string) string {
	if k, _, found := strings.Cut(item, "="); found {
		return k + "=…"
	}
	return item
}

// parseDuration accepts Go durations and whole days ("30d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad duration %q (want e.g. 12h or 30d)", s)
	}
	return d, nil
}

// print writes v as one JSON object with --json, or as a table.
func (a *app) print(v any, header []string, rows [][]string) error {
	if a.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func (a *app) note(format string, args ...any) {
	if !a.json {
		fmt.Fprintf(a.stderr, format+"\n", args...)
	}
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// friendly rewords store errors for the terminal.
func friendly(err error) error {
	if errors.Is(err, postgres.ErrNotFound) {
		return errors.New(strings.Replace(err.Error(), ": not found", ": no such record", 1))
	}
	return err
}
