// Command mcpadmin administers mcp-proxy: schema migrations, organizations,
// upstream servers and their tools, credentials, instances, API keys, and
// the usage of an instance.
// Every command prints a table, or one JSON object with --json.
//
// It reads DATABASE_URL (and the DB_* pool settings) and, for commands
// that store or read credentials, MCP_ENCRYPTION_KEY.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: mcpadmin COMMAND [flags] [--json]

Schema
  migrate [status]
Organizations
  org create --name NAME [--owner-name NAME] [--owner-email EMAIL]
  org list
  org quota --org ID [--per-day N] [--per-month N]   (0: none)
  user add --org ID --name NAME [--email EMAIL] [--role owner|admin|member]
  user list --org ID
Upstream servers and their tools
  server create --org ID --name NAME --transport streamable-http|sse|stdio
                (--url URL | --command CMD [--arg ARG ...])
                [--auth none|api-key|oauth|cloud-run-iam]
                [--header NAME ...] [--env NAME ...] [--secrets-file FILE|-] [--no-discover]
                [--allow-http]
                the names configs must supply; values to discover with only from
                --secrets-file, as for config create, never stored
  server update --server ID --allow-http[=false]
                --allow-http lets a plain http URL that is not a loopback address
                carry the credentials and calls unencrypted (default: https needed)
  server list [--org ID]
  server sync-tools --server ID [--config ID]
  tool list --server ID
  tool enable|disable --server ID --name TOOL
Credentials (encrypted with MCP_ENCRYPTION_KEY)
  config create --server ID --org ID [--name NAME] [--env NAME ...] [--header NAME ...]
                [--secrets-file FILE]
                the values as one JSON object in FILE or on stdin, never in flags:
                {"headers": {"X-API-Key": "..."}, "env": {"TOKEN": "..."}}
  config oauth --config ID --server ID --token-url URL --client-id ID [--scopes A,B]
               [--tokens-file FILE]
                the secrets as one JSON object in FILE or on stdin, never in flags:
                {"client_secret": "...", "access_token": "...", "refresh_token": "...",
                 "expires_in": 3600 | "expiry": "2026-01-02T15:04:05Z"}
  config list [--org ID]
  config reencrypt
Instances (one MCP endpoint each) and their API keys
  instance create --org ID --name NAME --config ID[:TOOL,TOOL...] ... [--user ID]
  instance list [--org ID] [--deleted]
  instance delete --instance ID
  instance enable-tools|disable-tools --instance ID
  instance limit --instance ID --rate PER_SECOND [--burst N]   (--rate 0 removes it)
  key create --instance ID [--name NAME] [--expires-in DURATION] [--user ID]
  key list --instance ID
  key revoke --key ID
  key limit --key ID --rate PER_SECOND [--burst N]   (--rate 0 removes it)
  key quota --key ID [--per-day N] [--per-month N]   (0: none)
OAuth grants of clients (docs/oauth.md)
  grant list --instance ID
  grant revoke --grant ID       its access tokens stop within CONFIG_POLL
Usage (from the hourly aggregates that FlushLogs fills)
  usage --instance ID [--since DURATION] [--by tool|hour]
  usage --org ID | --key ID        calls today and this month against the quota

DURATION is a Go duration (90m, 12h) or a number of days (30d).
`

// run executes one command and returns the exit status: 0, 1 for a failed
// operation, 2 for a usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	err := a.dispatch(ctx, args)
	switch e := err.(type) {
	case nil:
		return 0
	case usageError:
		fmt.Fprintf(stderr, "mcpadmin: %s\n\n%s", e, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "mcpadmin: %s\n", err)
		return 1
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }
