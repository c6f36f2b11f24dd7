#!/usr/bin/env bash
# Runs the local stack for `make dev`, under devstack (which has started
# Postgres and the Firestore emulator and exported their addresses): the
# demo upstream, migrations, a seeded demo organization, instance and key,
# and the three functions on 127.0.0.1:$PORT. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-8080}
BIN=${BIN:-bin}
: "${DATABASE_URL:?run under devstack (make dev)}"
# A throwaway key for a throwaway database, and a throwaway OAuth signing
# key: the authorization server is on (docs/oauth.md).
export MCP_ENCRYPTION_KEY=${MCP_ENCRYPTION_KEY:-$(head -c 32 /dev/urandom | base64)}
export OAUTH_SIGNING_KEYS=${OAUTH_SIGNING_KEYS:-dev:$(head -c 32 /dev/urandom | base64)}

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "dev: stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$PORT"; then
  echo "dev: port $PORT is taken; run with PORT=<free port> make dev" >&2
  exit 1
fi

# json_field FIELD: the top-level string FIELD of mcpadmin's --json output.
json_field() { sed -n "s/^  \"$1\": \"\(.*\)\",\{0,1\}$/\1/p" | head -n 1; }

upstream_log=$(mktemp)
"$BIN/demo-upstream" --transport http --addr 127.0.0.1:0 >"$upstream_log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q 'http://' "$upstream_log" && break; sleep 0.1; done
upstream_url=$(grep -o 'http://[^ ]*' "$upstream_log" | head -n 1)
[ -n "$upstream_url" ] || { echo "dev: the demo upstream did not start:" >&2; cat "$upstream_log" >&2; exit 1; }

admin() { "$BIN/mcpadmin" "$@" --json; }
admin migrate >/dev/null
org=$(admin org create --name "Demo" | json_field id)
server=$(admin server create --org "$org" --name demo --transport streamable-http --url "$upstream_url" | json_field id)
config=$(admin config create --org "$org" --server "$server" --name "demo config" | json_field id)
instance=$(admin instance create --org "$org" --name "demo instance" --config "$config" | json_field id)
key=$(admin key create --instance "$instance" --name "make dev" | json_field key)

PORT=$PORT "$BIN/devserver" &
pids+=($!)
for _ in $(seq 1 100); do port_open "$PORT" && break; sleep 0.1; done
port_open "$PORT" || { echo "dev: the functions did not start" >&2; exit 1; }

# Cloud Scheduler's part: flush the request log into Postgres every minute.
(while sleep "${FLUSH_EVERY:-60}"; do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/flushlogs" || true
done) &
pids+=($!)

url="http://127.0.0.1:$PORT/mcp"
cat <<MSG

mcp-proxy is running.

  MCP URL      $url
  connector    $url/$instance   (OAuth: give it to a client as is; sign in with the API key)
  API key      $key
  instance     $instance
  health       http://127.0.0.1:$PORT/health?deep=1
  flush logs   curl -X POST http://127.0.0.1:$PORT/flushlogs   (also run every ${FLUSH_EVERY:-60} s)
  upstream     $upstream_url (demo-upstream: echo, add, slow, fail, large, image)

Connect a client (docs/oauth.md):
  claude mcp add --transport http mcp-proxy $url/$instance     (OAuth: /mcp in Claude Code, then the browser)
  claude mcp add --transport http mcp-proxy $url --header "Authorization: Bearer $key"
  npx @modelcontextprotocol/inspector --cli $url --transport http --header "Authorization: Bearer $key" --method tools/list
  curl -s $url -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
       -H 'Accept: application/json, text/event-stream' \\
       -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

Administer it (same database):
  DATABASE_URL='$DATABASE_URL' MCP_ENCRYPTION_KEY='$MCP_ENCRYPTION_KEY' $BIN/mcpadmin instance list
  DATABASE_URL='$DATABASE_URL' $BIN/mcpadmin usage --instance $instance

Ctrl-C stops everything.
MSG
wait
