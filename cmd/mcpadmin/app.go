package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
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

// names reads repeated --header or --env flags, which name a value and
// never carry it: a NAME=VALUE is refused, since argv is visible to every
// user of the machine (ps) and stays in shell history. The refusal names
// the flag and hides the value.
func names(items []string, flag string) ([]string, error) {
	for _, it := range items {
		k, _, found := strings.Cut(it, "=")
		if found {
			return nil, usageError(fmt.Sprintf("%s %s=…: a value on the command line shows in ps and in shell history; "+
				"give %s %s and the value as JSON on stdin or in --secrets-file FILE: %s", flag, k, flag, k, secretsShape))
		}
		if k == "" {
			return nil, usageError(flag + ": empty name")
		}
	}
	return items, nil
}

const secretsShape = `{"headers": {"NAME": "VALUE"}, "env": {"NAME": "VALUE"}}`

// maxSecretsBytes bounds the values read from stdin or a file.
const maxSecretsBytes = 64 << 10

// readValues reads the values of the named headers and environment
// variables as one JSON object (secretsShape). Each name needs a value,
// and a value no flag names is refused rather than stored unasked (a
// misspelt name). Errors name fields, never values.
func readValues(r io.Reader, headerNames, envNames []string) (headers, env map[string]string, err error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSecretsBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxSecretsBytes {
		return nil, nil, fmt.Errorf("more than %d bytes", maxSecretsBytes)
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, nil, errors.New("nothing to read: give the values as one JSON object " + secretsShape)
	}
	var v struct {
		Headers map[string]string `json:"headers"`
		Env     map[string]string `json:"env"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return nil, nil, fmt.Errorf("invalid JSON at byte %d (want %s)", syntax.Offset, secretsShape)
		case errors.As(err, &typ):
			return nil, nil, fmt.Errorf("%s has the wrong type (want %s)", typ.Field, secretsShape)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, nil, fmt.Errorf("%s (want headers and env)", strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil, nil, errors.New("invalid JSON (want " + secretsShape + ")")
	}
	if headers, err = pick(v.Headers, headerNames, "header", "--header"); err != nil {
		return nil, nil, err
	}
	if env, err = pick(v.Env, envNames, "environment variable", "--env"); err != nil {
		return nil, nil, err
	}
	return headers, env, nil
}

func pick(values map[string]string, names []string, what, flag string) (map[string]string, error) {
	out := make(map[string]string, len(names))
	for _, n := range names {
		v, ok := values[n]
		if !ok {
			return nil, fmt.Errorf("no value for %s %q", what, n)
		}
		out[n] = v
	}
	for n := range values {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("%s %q is not named by %s", what, n, flag)
		}
	}
	return out, nil
}

// openValues is where the values of --header and --env come from: the
// file, "-" or "" for stdin. The caller closes it.
func (a *app) openValues(file string) (io.ReadCloser, string, error) {
	if file == "" || file == "-" {
		return io.NopCloser(a.stdin), "stdin", nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("read --secrets-file: %w", err)
	}
	return f, file, nil
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
	if errors.Is(err, tenant.ErrNotFound) {
		return errors.New(strings.Replace(err.Error(), ": not found", ": no such record", 1))
	}
	return err
}
