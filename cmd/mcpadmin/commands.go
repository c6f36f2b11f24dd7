package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/shared/credentials"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/postgres/migrate"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

func init() {
	register("migrate", "", migrateUp)
	register("migrate", "status", migrateStatus)
	register("org", "create", orgCreate)
	register("org", "list", orgList)
	register("server", "create", serverCreate)
	register("server", "update", serverUpdate)
	register("server", "list", serverList)
	register("server", "sync-tools", serverSyncTools)
	register("tool", "list", toolList)
	register("tool", "enable", toolSwitch(true))
	register("tool", "disable", toolSwitch(false))
	register("config", "create", configCreate)
	register("config", "oauth", configOAuth)
	register("config", "list", configList)
	register("config", "reencrypt", configReencrypt)
	register("instance", "create", instanceCreate)
	register("instance", "list", instanceList)
	register("instance", "delete", instanceDelete)
	register("instance", "enable-tools", instanceSwitch(true))
	register("instance", "disable-tools", instanceSwitch(false))
	register("key", "create", keyCreate)
	register("key", "list", keyList)
	register("key", "revoke", keyRevoke)
	register("key", "quota", setQuota(postgres.QuotaKey, "key", "key ID"))
	register("org", "quota", setQuota(postgres.QuotaOrg, "org", "organization ID"))
	register("key", "limit", rateLimit("key", "key ID", func(db *postgres.DB) func(context.Context, string, tenant.RateLimit) error { return db.SetKeyRateLimit }))
	register("instance", "limit", rateLimit("instance", "instance ID", func(db *postgres.DB) func(context.Context, string, tenant.RateLimit) error {
		return db.SetInstanceRateLimit
	}))
	register("usage", "", usageReport)
}

func migrateUp(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	applied, err := migrate.Up(ctx, db)
	if err != nil {
		return err
	}
	rows := make([][]string, len(applied))
	for i, m := range applied {
		rows[i] = []string{strconv.FormatInt(m.Version, 10), m.Source}
	}
	a.note("%d migration(s) applied", len(applied))
	return a.print(map[string]any{"applied": applied}, []string{"VERSION", "SOURCE"}, rows)
}

func migrateStatus(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	status, err := migrate.Status(ctx, db)
	if err != nil {
		return err
	}
	rows := make([][]string, len(status))
	for i, m := range status {
		rows[i] = []string{strconv.FormatInt(m.Version, 10), m.Source, strconv.FormatBool(m.Applied)}
	}
	return a.print(map[string]any{"migrations": status}, []string{"VERSION", "SOURCE", "APPLIED"}, rows)
}

func orgCreate(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "organization name")
	ownerName := fs.String("owner-name", "owner", "name of the owner user created with it")
	ownerEmail := fs.String("owner-email", "", "email of the owner user")
	db, err := a.open(ctx, fs, args, "name")
	if err != nil {
		return err
	}
	o, err := db.CreateOrganization(ctx, *name, *ownerName, *ownerEmail)
	if err != nil {
		return err
	}
	return a.print(o, []string{"ID", "NAME", "OWNER USER"}, [][]string{{o.ID, o.Name, o.OwnerUserID}})
}

func orgList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	list, err := db.ListOrganizations(ctx)
	if err != nil {
		return err
	}
	rows := make([][]string, len(list))
	for i, o := range list {
		rows[i] = []string{o.ID, o.Name, orDash(o.OwnerUserID), o.CreatedAt.UTC().Format(time.RFC3339)}
	}
	return a.print(map[string]any{"organizations": list}, []string{"ID", "NAME", "OWNER USER", "CREATED"}, rows)
}

// discover lists the tools of a server definition with the given
// credentials and turns them into store rows. With a pool, the tokens of
// OAUTH and CLOUD_RUN_IAM servers are presented too.
func discover(ctx context.Context, pool *upstream.Pool, s postgres.Server, configID string, creds tenant.Credentials) ([]postgres.Tool, error) {
	up := tenant.Upstream{ConfigID: configID, ServerID: s.ID, Name: s.Name, Transport: s.Transport, URL: s.URL,
		AllowHTTP: s.AllowHTTP, Command: s.Command, Args: s.Args, HeaderNames: s.HeaderNames, AuthType: s.AuthType, Credentials: creds}
	var listed []*mcp.Tool
	var err error
	if pool != nil {
		listed, err = pool.Discover(ctx, up)
	} else {
		listed, err = upstream.Discover(ctx, up)
	}
	if err != nil {
		return nil, fmt.Errorf("discover tools (is the server reachable? --no-discover skips this): %w", err)
	}
	tools := make([]postgres.Tool, 0, len(listed))
	for _, t := range listed {
		schema, err := json.Marshal(t.InputSchema)
		if err != nil {
			return nil, fmt.Errorf("tool %q: input schema: %w", t.Name, err)
		}
		tools = append(tools, postgres.Tool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	return tools, nil
}

func toolNames(tools []postgres.Tool) []string {
	names := make([]string, len(tools))
	for i, t := range tools {
		names[i] = t.Name
	}
	return names
}

func serverCreate(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	var s postgres.Server
	var argv, headers, env multi
	fs.StringVar(&s.OrganizationID, "org", "", "organization ID")
	fs.StringVar(&s.Name, "name", "", "server name (its tools are exposed as NAMESPACE__TOOL)")
	transport := fs.String("transport", "", "streamable-http, sse or stdio")
	fs.StringVar(&s.URL, "url", "", "URL of an HTTP server")
	fs.StringVar(&s.Command, "command", "", "command of a stdio server")
	fs.Var(&argv, "arg", "argument of the command (repeatable)")
	auth := fs.String("auth", "none", "none, api-key, oauth or cloud-run-iam")
	fs.Var(&headers, "header", "NAME: a header configs must supply (repeatable)")
	fs.Var(&env, "env", "NAME: an environment variable configs must supply (repeatable)")
	secretsFile := fs.String("secrets-file", "", "JSON file (- for stdin) with values of --header and --env to discover with, never stored")
	noDiscover := fs.Bool("no-discover", false, "do not ask the server for its tools now")
	fs.BoolVar(&s.AllowHTTP, "allow-http", false, allowHTTPUsage)
	if err := parse(fs, args, "org", "name", "transport"); err != nil {
		return err
	}
	var err error
	if s.Transport, err = tenant.ParseTransport(*transport); err != nil {
		return usageError(err.Error())
	}
	if s.AuthType, err = tenant.ParseAuthType(*auth); err != nil {
		return usageError(err.Error())
	}
	s.Args = argv
	creds := tenant.Credentials{Headers: map[string]string{}, Env: map[string]string{}}
	if s.HeaderNames, err = names(headers, "--header"); err != nil {
		return err
	}
	if s.EnvVarNames, err = names(env, "--env"); err != nil {
		return err
	}
	if *secretsFile != "" {
		in, source, err := a.openValues(*secretsFile)
		if err != nil {
			return err
		}
		creds.Headers, creds.Env, err = readValues(in, s.HeaderNames, s.EnvVarNames)
		in.Close()
		if err != nil {
			return usageError(fmt.Sprintf("server create: values from %s: %v", source, err))
		}
	}
	if s.AuthType == tenant.AuthAPIKey && len(s.HeaderNames) == 0 && s.Transport != tenant.TransportStdio {
		s.HeaderNames = []string{tenant.DefaultAPIKeyHeader}
	}
	if err := s.Validate(); err != nil {
		return usageError(err.Error())
	}
	if s.AuthType == tenant.AuthOAuth && !*noDiscover {
		return usageError("server create: an OAUTH server's tools are discovered with a config's tokens: " +
			"create it with --no-discover, then run config create, config oauth and server sync-tools --config")
	}
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	var tools []postgres.Tool
	if !*noDiscover {
		if tools, err = discover(ctx, nil, s, "", creds); err != nil {
			return err
		}
	}
	created, err := db.CreateServer(ctx, s, tools)
	if err != nil {
		return friendly(err)
	}
	names := toolNames(tools)
	a.note("%d tool(s) discovered", len(names))
	out := struct {
		postgres.Server
		Tools []string `json:"tools"`
	}{created, names}
	return a.print(out, []string{"ID", "NAME", "NAMESPACE", "TRANSPORT", "TOOLS"},
		[][]string{{created.ID, created.Name, created.Namespace, string(created.Transport), strings.Join(names, ",")}})
}

const allowHTTPUsage = "let a plain http URL that is not a loopback address carry the credentials and calls unencrypted (default: https needed)"

func serverUpdate(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	serverID := fs.String("server", "", "server ID")
	allowHTTP := fs.Bool("allow-http", false, allowHTTPUsage+"; --allow-http=false requires https again")
	db, err := a.open(ctx, fs, args, "server", "allow-http")
	if err != nil {
		return err
	}
	s, err := db.SetServerAllowHTTP(ctx, *serverID, *allowHTTP)
	if err != nil {
		return friendly(err)
	}
	return a.print(s, []string{"ID", "NAME", "URL", "ALLOW HTTP"},
		[][]string{{s.ID, s.Name, orDash(s.URL), strconv.FormatBool(s.AllowHTTP)}})
}

func serverList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization ID (default: all)")
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	list, err := db.ListServers(ctx, *org)
	if err != nil {
		return friendly(err)
	}
	rows := make([][]string, len(list))
	for i, s := range list {
		target := s.URL
		if s.Transport == tenant.TransportStdio {
			target = strings.Join(append([]string{s.Command}, s.Args...), " ")
		}
		rows[i] = []string{s.ID, s.Name, s.Namespace, string(s.Transport), string(s.AuthType), target}
	}
	return a.print(map[string]any{"servers": list}, []string{"ID", "NAME", "NAMESPACE", "TRANSPORT", "AUTH", "TARGET"}, rows)
}

func serverSyncTools(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	serverID := fs.String("server", "", "server ID")
	configID := fs.String("config", "", "config whose credentials to present (default: none)")
	db, err := a.open(ctx, fs, args, "server")
	if err != nil {
		return err
	}
	s, err := db.GetServer(ctx, *serverID)
	if err != nil {
		return friendly(err)
	}
	var creds tenant.Credentials
	if *configID != "" {
		if creds, err = db.ConfigCredentials(ctx, *configID, s.ID); err != nil {
			return friendly(err)
		}
	}
	// Tokens refreshed on the way are stored, or a rotated refresh token
	// would be lost.
	pool := upstream.NewPool(upstream.PoolOptions{Credentials: credentials.New(credentials.Options{SaveToken: db.SaveOAuthToken})})
	defer pool.Close()
	tools, err := discover(ctx, pool, s, *configID, creds)
	if err != nil {
		return err
	}
	res, err := db.SyncTools(ctx, s.ID, tools)
	if err != nil {
		return friendly(err)
	}
	return a.print(res, []string{"TOOLS", "ADDED", "MISSING"},
		[][]string{{strconv.Itoa(res.Total), orDash(strings.Join(res.Added, ",")), orDash(strings.Join(res.Missing, ","))}})
}

func toolList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	serverID := fs.String("server", "", "server ID")
	db, err := a.open(ctx, fs, args, "server")
	if err != nil {
		return err
	}
	if _, err := db.GetServer(ctx, *serverID); err != nil {
		return friendly(err)
	}
	list, err := db.ListTools(ctx, *serverID)
	if err != nil {
		return friendly(err)
	}
	rows := make([][]string, len(list))
	for i, t := range list {
		desc := t.Description
		if len(desc) > 60 {
			desc = desc[:57] + "..."
		}
		rows[i] = []string{t.Name, strconv.FormatBool(t.Enabled), timeOrDash(t.MissingSince), desc}
	}
	return a.print(map[string]any{"tools": list}, []string{"NAME", "ENABLED", "MISSING SINCE", "DESCRIPTION"}, rows)
}

func toolSwitch(enabled bool) func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	return func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
		serverID := fs.String("server", "", "server ID")
		name := fs.String("name", "", "tool name")
		db, err := a.open(ctx, fs, args, "server", "name")
		if err != nil {
			return err
		}
		if err := db.SetToolEnabled(ctx, *serverID, *name, enabled); err != nil {
			return friendly(err)
		}
		return a.print(map[string]any{"server_id": *serverID, "name": *name, "enabled": enabled},
			[]string{"SERVER", "TOOL", "ENABLED"}, [][]string{{*serverID, *name, strconv.FormatBool(enabled)}})
	}
}

func configCreate(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	serverID := fs.String("server", "", "server ID")
	orgID := fs.String("org", "", "organization ID")
	name := fs.String("name", "", "config name")
	var env, headers multi
	fs.Var(&env, "env", "NAME of an environment variable for a stdio server; its value from the secrets (repeatable)")
	fs.Var(&headers, "header", "NAME of a header for an HTTP server; its value from the secrets (repeatable)")
	secretsFile := fs.String("secrets-file", "", `JSON file with the values, {"headers": {NAME: VALUE}, "env": {NAME: VALUE}} (default: stdin)`)
	if err := parse(fs, args, "server", "org"); err != nil {
		return err
	}
	creds := tenant.Credentials{Headers: map[string]string{}, Env: map[string]string{}}
	envNames, err := names(env, "--env")
	if err != nil {
		return err
	}
	headerNames, err := names(headers, "--header")
	if err != nil {
		return err
	}
	if len(envNames)+len(headerNames) > 0 || *secretsFile != "" {
		in, source, err := a.openValues(*secretsFile)
		if err != nil {
			return err
		}
		creds.Headers, creds.Env, err = readValues(in, headerNames, envNames)
		in.Close()
		if err != nil {
			return usageError(fmt.Sprintf("config create: values from %s: %v", source, err))
		}
	}
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	c, err := db.CreateConfig(ctx, *orgID, *serverID, *name, creds)
	if err != nil {
		return friendly(err)
	}
	return a.print(c, []string{"ID", "SERVER", "ENV", "HEADERS", "KEY ID"},
		[][]string{{c.ID, c.ServerName, orDash(strings.Join(c.EnvNames, ",")), orDash(strings.Join(c.HeaderNames, ",")), orDash(c.KeyID)}})
}

func configList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization ID (default: all)")
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	list, err := db.ListConfigs(ctx, *org)
	if err != nil {
		return friendly(err)
	}
	rows := make([][]string, len(list))
	for i, c := range list {
		rows[i] = []string{c.ID, c.ServerName, orDash(c.Name), orDash(strings.Join(c.EnvNames, ",")), orDash(strings.Join(c.HeaderNames, ",")), orDash(c.KeyID)}
	}
	return a.print(map[string]any{"configs": list}, []string{"ID", "SERVER", "NAME", "ENV", "HEADERS", "KEY ID"}, rows)
}

func configReencrypt(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	n, err := db.ReencryptConfigs(ctx)
	if err != nil {
		return err
	}
	return a.print(map[string]any{"reencrypted": n}, []string{"REENCRYPTED"}, [][]string{{strconv.Itoa(n)}})
}

func instanceCreate(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization ID")
	name := fs.String("name", "", "instance name")
	user := fs.String("user", "", "user the instance belongs to (default: none)")
	var configs multi
	fs.Var(&configs, "config", "CONFIG_ID[:TOOL,TOOL...]: a config and the tools to expose, all when none are named (repeatable)")
	if err := parse(fs, args, "org", "name", "config"); err != nil {
		return err
	}
	sel := make([]postgres.Selection, len(configs))
	for i, c := range configs {
		id, tools, _ := strings.Cut(c, ":")
		sel[i].ConfigID = id
		for t := range strings.SplitSeq(tools, ",") {
			if t = strings.TrimSpace(t); t != "" {
				sel[i].Tools = append(sel[i].Tools, t)
			}
		}
	}
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	inst, err := db.CreateInstance(ctx, *org, *user, *name, sel)
	if err != nil {
		return friendly(err)
	}
	return a.print(inst, []string{"ID", "NAME", "TOOLS"}, [][]string{{inst.ID, inst.Name, strconv.Itoa(inst.Tools)}})
}

func instanceList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization ID (default: all)")
	deleted := fs.Bool("deleted", false, "include deleted instances")
	db, err := a.open(ctx, fs, args)
	if err != nil {
		return err
	}
	list, err := db.ListInstances(ctx, *org, *deleted)
	if err != nil {
		return friendly(err)
	}
	rows := make([][]string, len(list))
	for i, in := range list {
		rows[i] = []string{in.ID, in.Name, in.OrganizationID, strconv.Itoa(in.Tools), strconv.FormatBool(in.ToolsEnabled), timeOrDash(in.DeletedAt)}
	}
	return a.print(map[string]any{"instances": list}, []string{"ID", "NAME", "ORGANIZATION", "TOOLS", "TOOLS ENABLED", "DELETED"}, rows)
}

func instanceDelete(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	id := fs.String("instance", "", "instance ID")
	db, err := a.open(ctx, fs, args, "instance")
	if err != nil {
		return err
	}
	if err := db.DeleteInstance(ctx, *id); err != nil {
		return friendly(err)
	}
	return a.print(map[string]any{"id": *id, "deleted": true}, []string{"ID", "DELETED"}, [][]string{{*id, "true"}})
}

func instanceSwitch(enabled bool) func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	return func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
		id := fs.String("instance", "", "instance ID")
		db, err := a.open(ctx, fs, args, "instance")
		if err != nil {
			return err
		}
		if err := db.SetInstanceToolsEnabled(ctx, *id, enabled); err != nil {
			return friendly(err)
		}
		return a.print(map[string]any{"id": *id, "tools_enabled": enabled}, []string{"ID", "TOOLS ENABLED"},
			[][]string{{*id, strconv.FormatBool(enabled)}})
	}
}

func keyCreate(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	instance := fs.String("instance", "", "instance ID")
	name := fs.String("name", "", "key name")
	user := fs.String("user", "", "user the key acts for (default: the organization's owner)")
	expiresIn := fs.String("expires-in", "", "lifetime, e.g. 12h or 90d (default: no expiry)")
	if err := parse(fs, args, "instance"); err != nil {
		return err
	}
	var expires *time.Time
	if *expiresIn != "" {
		d, err := parseDuration(*expiresIn)
		if err != nil {
			return usageError(err.Error())
		}
		t := time.Now().Add(d).UTC().Truncate(time.Second)
		expires = &t
	}
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	row, key, err := db.CreateAPIKey(ctx, *instance, *user, *name, expires)
	if err != nil {
		return friendly(err)
	}
	a.note("The key is shown once; only its hash is stored.")
	out := struct {
		postgres.KeyRow
		Key string `json:"key"`
	}{row, key}
	return a.print(out, []string{"ID", "KEY", "EXPIRES"}, [][]string{{row.ID, key, timeOrDash(row.ExpiresAt)}})
}

func keyList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	instance := fs.String("instance", "", "instance ID")
	db, err := a.open(ctx, fs, args, "instance")
	if err != nil {
		return err
	}
	list, err := db.ListAPIKeys(ctx, *instance)
	if err != nil {
		return friendly(err)
	}
	rows := make([][]string, len(list))
	for i, k := range list {
		limit, quota := "-", "-"
		if k.RateLimit.Limited() {
			limit = strconv.FormatFloat(k.RateLimit.PerSecond, 'g', -1, 64) + "/s, burst " + strconv.Itoa(k.RateLimit.Burst)
		}
		if k.Quota.PerDay > 0 || k.Quota.PerMonth > 0 {
			quota = strconv.FormatInt(k.Quota.PerDay, 10) + "/day, " + strconv.FormatInt(k.Quota.PerMonth, 10) + "/month (0: none)"
		}
		rows[i] = []string{k.ID, k.Prefix + "…", orDash(k.Name), strconv.FormatBool(k.Active), timeOrDash(k.ExpiresAt), timeOrDash(k.LastUsedAt), limit, quota}
	}
	return a.print(map[string]any{"keys": list}, []string{"ID", "PREFIX", "NAME", "ACTIVE", "EXPIRES", "LAST USED", "RATE LIMIT", "QUOTA"}, rows)
}

func keyRevoke(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	id := fs.String("key", "", "key ID")
	db, err := a.open(ctx, fs, args, "key")
	if err != nil {
		return err
	}
	if err := db.RevokeAPIKey(ctx, *id); err != nil {
		return friendly(err)
	}
	return a.print(map[string]any{"id": *id, "active": false}, []string{"ID", "ACTIVE"}, [][]string{{*id, "false"}})
}

func usageReport(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	instance := fs.String("instance", "", "instance ID")
	sinceFlag := fs.String("since", "24h", "how far back: a duration (12h) or days (30d)")
	by := fs.String("by", postgres.UsageByTool, "group by tool or hour")
	org := fs.String("org", "", "organization ID: its calls today and this month against its quota")
	key := fs.String("key", "", "API key ID: its calls today and this month against its quota")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *org != "" && *key != "", (*org != "" || *key != "") && *instance != "":
		return usageError("usage: one of --instance, --org and --key")
	case *org != "":
		return quotaReport(a, ctx, postgres.QuotaOrg, *org)
	case *key != "":
		return quotaReport(a, ctx, postgres.QuotaKey, *key)
	case *instance == "":
		return usageError(fmt.Sprintf("%s: --instance is required", fs.Name()))
	}
	window, err := parseDuration(*sinceFlag)
	if err != nil {
		return usageError("usage: --since: " + err.Error())
	}
	if *by != postgres.UsageByTool && *by != postgres.UsageByHour {
		return usageError(fmt.Sprintf("usage: --by %q: want tool or hour", *by))
	}
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	since := time.Now().Add(-window).UTC().Truncate(time.Hour)
	list, err := db.Usage(ctx, *instance, since, *by)
	if err != nil {
		return friendly(err)
	}
	total := postgres.UsageRow{}
	var duration float64
	rows := make([][]string, 0, len(list)+1)
	for _, u := range list {
		first := u.Tool
		second := u.Method
		if u.Hour != nil {
			first, second = u.Hour.UTC().Format("2006-01-02 15:04"), ""
		}
		rows = append(rows, usageLine(first, second, u, *by))
		total.Requests += u.Requests
		total.Errors += u.Errors
		total.MaxDurationMs = max(total.MaxDurationMs, u.MaxDurationMs)
		total.InputBytes += u.InputBytes
		total.OutputBytes += u.OutputBytes
		duration += u.AvgDurationMs * float64(u.Requests)
	}
	if total.Requests > 0 {
		total.AvgDurationMs = duration / float64(total.Requests)
	}
	rows = append(rows, usageLine("TOTAL", "", total, *by))
	a.note("Hourly aggregates from %s UTC; requests appear once FlushLogs has copied them (every minute when scheduled).",
		since.Format("2006-01-02 15:04"))
	header := []string{"TOOL", "METHOD"}
	if *by == postgres.UsageByHour {
		header = []string{"HOUR (UTC)"}
	}
	header = append(header, "REQUESTS", "ERRORS", "ERROR %", "AVG MS", "MAX MS", "IN BYTES", "OUT BYTES")
	return a.print(map[string]any{"instance": *instance, "since": since, "by": *by, "rows": nonNilRows(list), "total": total}, header, rows)
}

func usageLine(first, second string, u postgres.UsageRow, by string) []string {
	line := []string{orDash(first)}
	if by == postgres.UsageByTool {
		line = append(line, orDash(second))
	}
	rate := 0.0
	if u.Requests > 0 {
		rate = 100 * float64(u.Errors) / float64(u.Requests)
	}
	return append(line, strconv.FormatInt(u.Requests, 10), strconv.FormatInt(u.Errors, 10),
		strconv.FormatFloat(rate, 'f', 1, 64), strconv.FormatFloat(u.AvgDurationMs, 'f', 1, 64),
		strconv.FormatInt(u.MaxDurationMs, 10), strconv.FormatInt(u.InputBytes, 10), strconv.FormatInt(u.OutputBytes, 10))
}

func nonNilRows(rows []postgres.UsageRow) []postgres.UsageRow {
	if rows == nil {
		return []postgres.UsageRow{}
	}
	return rows
}

// rateLimit sets or removes (--rate 0) the rate limit of a key or an
// instance; every proxy process follows within CONFIG_POLL.
func rateLimit(flagName, usage string, set func(*postgres.DB) func(context.Context, string, tenant.RateLimit) error) func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	return func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
		id := fs.String(flagName, "", usage)
		rate := fs.Float64("rate", 0, "requests a second on average; 0 removes the limit")
		burst := fs.Int("burst", 0, "requests at once (default: one second's worth)")
		db, err := a.open(ctx, fs, args, flagName)
		if err != nil {
			return err
		}
		if err := set(db)(ctx, *id, tenant.RateLimit{PerSecond: *rate, Burst: *burst}); err != nil {
			return friendly(err)
		}
		b := *burst
		if *rate > 0 && b == 0 {
			b = max(1, int(math.Ceil(*rate)))
		}
		return a.print(map[string]any{"id": *id, "rate_per_second": *rate, "burst": b},
			[]string{"ID", "RATE/S", "BURST"}, [][]string{{*id, strconv.FormatFloat(*rate, 'g', -1, 64), strconv.Itoa(b)}})
	}
}

// setQuota sets or removes (0) the calls a day and a month of a key or an
// organization; every proxy process follows within CONFIG_POLL.
func setQuota(scope, flagName, usage string) func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	return func(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
		id := fs.String(flagName, "", usage)
		perDay := fs.Int64("per-day", 0, "calls a UTC day; 0: no daily quota")
		perMonth := fs.Int64("per-month", 0, "calls a UTC month; 0: no monthly quota")
		db, err := a.open(ctx, fs, args, flagName)
		if err != nil {
			return err
		}
		if err := db.SetQuota(ctx, scope, *id, postgres.Quota{PerDay: *perDay, PerMonth: *perMonth}); err != nil {
			return friendly(err)
		}
		return quotaReport(a, ctx, scope, *id)
	}
}

// quotaReport prints an organization's or a key's calls today and this
// month against its quota.
func quotaReport(a *app, ctx context.Context, scope, id string) error {
	db, err := a.store(ctx)
	if err != nil {
		return err
	}
	u, err := db.QuotaUsage(ctx, scope, id)
	if err != nil {
		return friendly(err)
	}
	quota := func(n int64) string {
		if n == 0 {
			return "none"
		}
		return strconv.FormatInt(n, 10)
	}
	state := func(period string) string {
		for _, b := range u.Blocks {
			if b.Period == period {
				return "used up"
			}
		}
		return "ok"
	}
	a.note("Calls as far as FlushLogs has counted them (every minute when scheduled); UTC days and months.")
	return a.print(u, []string{"PERIOD", "CALLS", "QUOTA", "STATE", "RESETS"}, [][]string{
		{"day", strconv.FormatInt(u.CallsToday, 10), quota(u.Quota.PerDay), state(postgres.QuotaDay), u.DayResets.UTC().Format(time.RFC3339)},
		{"month", strconv.FormatInt(u.CallsMonth, 10), quota(u.Quota.PerMonth), state(postgres.QuotaMonth), u.MonthResets.UTC().Format(time.RFC3339)},
	})
}
