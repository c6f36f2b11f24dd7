#!/usr/bin/env bash
# Deploys mcp-proxy to Google Cloud: the APIs it needs, one service account
# per function with the least roles, the secrets (Secret Manager, mounted
# as files with --set-secrets and read through NAME_FILE, never put in a
# function's environment), the schema migrations, the three functions, the Cloud
# Scheduler job that calls FlushLogs every minute, and optionally the
# log-based metrics and alert policies. Re-running it updates everything in
# place. DRY_RUN=1 prints every command instead of running it, and the
# files a deploy would upload. The functions are built from the commit
# HEAD; a working tree whose tracked files differ from it stops the deploy.
#
#   PROJECT_ID=my-project DATABASE_URL=... MCP_ENCRYPTION_KEY=... ./deploy.sh
#
# Settings (environment; defaults in brackets):
#   PROJECT_ID                 Google Cloud project (required)
#   REGION                     [us-central1]
#   RUNTIME                    [go126]
#   PROXY_FUNCTION             [mcp-proxy]      entry point Proxy, public
#   HEALTH_FUNCTION            [mcp-health]     entry point Health, public
#   FLUSH_FUNCTION             [mcp-flushlogs]  entry point FlushLogs, private
#   SCHEDULER_JOB              [mcp-flushlogs]
#   SCHEDULE                   [* * * * *]      cron, in TIME_ZONE [Etc/UTC]
#   PROXY_MEMORY               [256Mi]  PROXY_CPU [1]  PROXY_CONCURRENCY [80]
#   PROXY_GOMAXPROCS           [PROXY_CPU rounded up]  the proxy's GOMAXPROCS: one P per vCPU
#                              (Go's own default never goes below 2; BENCHMARKS.md)
#                              GOMEMLIMIT (80% of PROXY_MEMORY) and INFLIGHT_BYTES follow PROXY_MEMORY
#   PROXY_MIN_INSTANCES        [1]      PROXY_MAX_INSTANCES [100]  PROXY_TIMEOUT [120s]
#   FLUSH_TIMEOUT              [60s]    FLUSH_BUDGET [45s]  FLUSH_ATTEMPT_DEADLINE [55s]
#   DB_SECRET                  [mcp-database-url]    from DATABASE_URL or DATABASE_URL_FILE
#   KEY_SECRET                 [mcp-encryption-key]  from MCP_ENCRYPTION_KEY or MCP_ENCRYPTION_KEY_FILE
#                              (a secret that exists is kept when no value is given)
#   OAUTH_SECRET               [mcp-oauth-signing-keys]  the OAuth access token signing keys
#                              (docs/oauth.md), from OAUTH_SIGNING_KEYS or OAUTH_SIGNING_KEYS_FILE;
#                              made with a new random key when it does not exist and none is given
#   OAUTH_ISSUER               [unset]  the proxy's public URL, when clients reach it through
#                              another than its own (a domain mapping); unset: each request's host
#   OAUTH_OIDC_ISSUER          [unset]  an OpenID Connect provider users sign in with on the consent
#                              page (https://accounts.google.com for Google), with OAUTH_OIDC_CLIENT_ID,
#                              OAUTH_OIDC_NAME and the secret OIDC_SECRET [mcp-oauth-oidc-client-secret]
#                              from OAUTH_OIDC_CLIENT_SECRET or OAUTH_OIDC_CLIENT_SECRET_FILE
#   MIGRATE_DATABASE_URL       [DATABASE_URL]  the URL migrations run with, from this machine
#   SKIP_MIGRATIONS            [0]
#   INSTANCE_CONNECTION_NAME   [unset]  Cloud SQL "project:region:instance": connect through
#                              the Cloud SQL Go connector with IAM database authentication
#   FIRESTORE_DATABASE         [(default)]
#   ALLOWED_ORIGINS            [unset]  browser origins the proxy accepts
#   MONITORING                 [0]      1: log-based metrics and alert policies from monitoring/
#   DRY_RUN                    [0]      1: print the commands, run none, read no secret
set -euo pipefail
cd "$(dirname "$0")"

: "${PROJECT_ID:?set PROJECT_ID to the Google Cloud project to deploy to}"
REGION=${REGION:-us-central1}
RUNTIME=${RUNTIME:-go126}
PROXY_FUNCTION=${PROXY_FUNCTION:-mcp-proxy}
HEALTH_FUNCTION=${HEALTH_FUNCTION:-mcp-health}
FLUSH_FUNCTION=${FLUSH_FUNCTION:-mcp-flushlogs}
SCHEDULER_JOB=${SCHEDULER_JOB:-mcp-flushlogs}
SCHEDULE=${SCHEDULE:-"* * * * *"}
TIME_ZONE=${TIME_ZONE:-Etc/UTC}
PROXY_MEMORY=${PROXY_MEMORY:-256Mi}
PROXY_CPU=${PROXY_CPU:-1}
PROXY_CONCURRENCY=${PROXY_CONCURRENCY:-80}
if ! [[ $PROXY_CPU =~ ^[0-9]+([.][0-9]+)?$ ]] || [ "$(awk -v c="$PROXY_CPU" 'BEGIN { print (c > 0) }')" != 1 ]; then
  echo "deploy.sh: PROXY_CPU must be a positive number of vCPUs, such as 1, 2 or 0.5; got \"$PROXY_CPU\"" >&2
  exit 1
fi
# The proxy's memory in MiB, from Cloud Run's quantity (256Mi, 1Gi, 512M, 2G).
proxy_mib=$(awk -v m="$PROXY_MEMORY" 'BEGIN {
  if (!match(m, /^[0-9]+(\.[0-9]+)?/)) { print 0; exit }
  n = substr(m, 1, RLENGTH); u = substr(m, RLENGTH + 1)
  f["Ki"] = 1 / 1024; f["Mi"] = 1; f["Gi"] = 1024; f["k"] = 1000 / 1048576; f["K"] = f["k"]; f["M"] = 1000000 / 1048576; f["G"] = 1000000000 / 1048576
  if (!(u in f)) { print 0; exit }
  print int(n * f[u]) }')
if [ "$proxy_mib" -lt 128 ]; then
  echo "deploy.sh: PROXY_MEMORY must be at least 128Mi, written as Cloud Run takes it (256Mi, 1Gi); got \"$PROXY_MEMORY\"" >&2
  exit 1
fi
# Go's soft memory limit at 80% of the function's memory (the rest is
# the binary's pages and what the runtime cannot return at once), and the
# budget of request and result bytes in flight at a third of what is left
# above a 64 MiB base: each byte held is about three in the heap (read,
# decoded, encoded). docs/configuration.md, "Limits and memory".
PROXY_GOMEMLIMIT=$((proxy_mib * 8 / 10))MiB
PROXY_INFLIGHT_BYTES=$(((proxy_mib * 8 / 10 - 64) * 1048576 / 3))
PROXY_GOMAXPROCS=${PROXY_GOMAXPROCS:-$(awk -v c="$PROXY_CPU" 'BEGIN { n = int(c); if (n < c) n++; if (n < 1) n = 1; print n }')}
if ! [[ $PROXY_GOMAXPROCS =~ ^[1-9][0-9]*$ ]]; then
  echo "deploy.sh: PROXY_GOMAXPROCS must be a positive whole number; got \"$PROXY_GOMAXPROCS\"" >&2
  exit 1
fi
PROXY_MIN_INSTANCES=${PROXY_MIN_INSTANCES:-1}
PROXY_MAX_INSTANCES=${PROXY_MAX_INSTANCES:-100}
PROXY_TIMEOUT=${PROXY_TIMEOUT:-120s}
FLUSH_TIMEOUT=${FLUSH_TIMEOUT:-60s}
FLUSH_BUDGET=${FLUSH_BUDGET:-45s}
FLUSH_ATTEMPT_DEADLINE=${FLUSH_ATTEMPT_DEADLINE:-55s}
DB_SECRET=${DB_SECRET:-mcp-database-url}
KEY_SECRET=${KEY_SECRET:-mcp-encryption-key}
OAUTH_SECRET=${OAUTH_SECRET:-mcp-oauth-signing-keys}
OAUTH_ISSUER=${OAUTH_ISSUER:-}
OAUTH_OIDC_ISSUER=${OAUTH_OIDC_ISSUER:-}
OAUTH_OIDC_CLIENT_ID=${OAUTH_OIDC_CLIENT_ID:-}
OAUTH_OIDC_NAME=${OAUTH_OIDC_NAME:-}
OIDC_SECRET=${OIDC_SECRET:-mcp-oauth-oidc-client-secret}
if [ -n "$OAUTH_OIDC_ISSUER" ] && [ -z "$OAUTH_OIDC_CLIENT_ID" ]; then
  echo "deploy.sh: OAUTH_OIDC_ISSUER needs OAUTH_OIDC_CLIENT_ID (and OAUTH_OIDC_CLIENT_SECRET)" >&2
  exit 1
fi
SKIP_MIGRATIONS=${SKIP_MIGRATIONS:-0}
INSTANCE_CONNECTION_NAME=${INSTANCE_CONNECTION_NAME:-}
FIRESTORE_DATABASE=${FIRESTORE_DATABASE:-(default)}
ALLOWED_ORIGINS=${ALLOWED_ORIGINS:-}
MONITORING=${MONITORING:-0}
DRY_RUN=${DRY_RUN:-0}

# Service accounts, one per function and one for the scheduler.
sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT_ID"; }
PROXY_SA=$(sa_email mcp-proxy-fn)
HEALTH_SA=$(sa_email mcp-health-fn)
FLUSH_SA=$(sa_email mcp-flushlogs-fn)
SCHEDULER_SA=$(sa_email mcp-scheduler)

step() { printf '\n==> %s\n' "$*"; }

# quote prints an argument so that the printed command can be pasted back.
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# run prints a command and, unless DRY_RUN=1, runs it.
run() {
  local arg
  printf '+'
  for arg in "$@"; do
    printf ' '
    quote "$arg"
  done
  printf '\n'
  if [ "$DRY_RUN" != 1 ]; then
    "$@"
  fi
}

# exists runs a describe-style command quietly and reports whether the
# resource is there. A dry run prints it and assumes it is not.
exists() {
  if [ "$DRY_RUN" = 1 ]; then
    run "$@"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# value_of NAME: the value of $NAME, else of the file named by $NAME_FILE.
value_of() {
  local name=$1 file_var="${1}_FILE"
  if [ -n "${!name:-}" ]; then
    printf '%s' "${!name}"
  elif [ -n "${!file_var:-}" ]; then
    cat -- "${!file_var}"
  fi
}

ensure_sa() {
  local id=$1 email
  email=$(sa_email "$id")
  if ! exists gcloud iam service-accounts describe "$email" --project="$PROJECT_ID"; then
    run gcloud iam service-accounts create "$id" --display-name="mcp-proxy $2" --project="$PROJECT_ID"
  fi
}

grant_project() {
  run gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$1" --role="$2" \
    --condition=None --quiet
}

grant_secret() {
  run gcloud secrets add-iam-policy-binding "$1" --member="serviceAccount:$2" \
    --role=roles/secretmanager.secretAccessor --project="$PROJECT_ID" --quiet
}

# ensure_secret NAME VAR: creates the secret if missing and adds a version
# when the value given in $VAR (or $VAR_FILE) differs from the latest. The
# value goes through stdin only: never an argument, never printed.
ensure_secret() {
  local name=$1 var=$2 file_var="${2}_FILE" value="" current=""
  if [ "$DRY_RUN" != 1 ]; then
    value=$(value_of "$var")
  fi
  if ! exists gcloud secrets describe "$name" --project="$PROJECT_ID"; then
    if [ "$DRY_RUN" != 1 ] && [ -z "$value" ]; then
      echo "deploy.sh: secret $name does not exist: set $var or ${var}_FILE" >&2
      exit 1
    fi
    run gcloud secrets create "$name" --replication-policy=automatic --project="$PROJECT_ID"
  fi
  if [ "$DRY_RUN" = 1 ]; then
    if [ -n "${!var:-}" ] || [ -n "${!file_var:-}" ]; then
      run gcloud secrets versions add "$name" --data-file=- --project="$PROJECT_ID"
    fi
    return
  fi
  [ -n "$value" ] || return 0
  current=$(gcloud secrets versions access latest --secret="$name" --project="$PROJECT_ID" 2>/dev/null || true)
  if [ "$current" != "$value" ]; then
    printf '%s' "$value" | run gcloud secrets versions add "$name" --data-file=- --project="$PROJECT_ID"
  else
    echo "secret $name unchanged"
  fi
}

# ensure_signing_secret: the OAuth signing keys' secret, as ensure_secret,
# except that a secret that does not exist, with no value given, is made
# with one new random Ed25519 seed (keyid:base64), never printed.
ensure_signing_secret() {
  if [ -n "${OAUTH_SIGNING_KEYS:-}" ] || [ -n "${OAUTH_SIGNING_KEYS_FILE:-}" ] ||
    exists gcloud secrets describe "$OAUTH_SECRET" --project="$PROJECT_ID"; then
    ensure_secret "$OAUTH_SECRET" OAUTH_SIGNING_KEYS
    return
  fi
  run gcloud secrets create "$OAUTH_SECRET" --replication-policy=automatic --project="$PROJECT_ID"
  if [ "$DRY_RUN" = 1 ]; then
    run gcloud secrets versions add "$OAUTH_SECRET" --data-file=- --project="$PROJECT_ID"
    return
  fi
  printf 'k%s:%s' "$(date -u +%Y%m%d)" "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" |
    run gcloud secrets versions add "$OAUTH_SECRET" --data-file=- --project="$PROJECT_ID"
}

# function_url NAME: the deployed function's URL.
function_url() {
  if [ "$DRY_RUN" = 1 ]; then
    run gcloud functions describe "$1" --region="$REGION" --format='value(serviceConfig.uri)' --project="$PROJECT_ID" >&2
    printf 'https://%s-%s.cloudfunctions.net/%s' "$REGION" "$PROJECT_ID" "$1"
    return
  fi
  gcloud functions describe "$1" --region="$REGION" --format='value(serviceConfig.uri)' --project="$PROJECT_ID"
}

# The functions are built from the commit HEAD exported into a folder of
# its own, not from the working tree: nothing untracked beside the source
# (a key, a dump, notes) is uploaded, and .gcloudignore (an allow-list)
# keeps of the commit only what the Go build needs.
step "Source"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  if [ "$DRY_RUN" != 1 ]; then
    echo "deploy.sh: tracked files differ from HEAD, and the functions are built from HEAD: commit or stash the changes" >&2
    exit 1
  fi
  echo "warning: tracked files differ from HEAD; a deploy would stop here" >&2
fi
source_dir=$(mktemp -d)
trap 'rm -rf "$source_dir"' EXIT
git archive --format=tar HEAD | tar -x -C "$source_dir"
echo "commit $(git rev-parse --short HEAD) in source folder $source_dir"
if [ "$DRY_RUN" = 1 ]; then
  gcloud meta list-files-for-upload "$source_dir" | LC_ALL=C sort | sed 's/^/upload: /'
fi

step "Enabling the APIs"
apis=(cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com artifactregistry.googleapis.com
  cloudscheduler.googleapis.com secretmanager.googleapis.com firestore.googleapis.com iam.googleapis.com
  logging.googleapis.com monitoring.googleapis.com)
if [ -n "$INSTANCE_CONNECTION_NAME" ]; then
  apis+=(sqladmin.googleapis.com)
fi
run gcloud services enable "${apis[@]}" --project="$PROJECT_ID"

step "Service accounts"
ensure_sa mcp-proxy-fn "proxy function"
ensure_sa mcp-health-fn "health function"
ensure_sa mcp-flushlogs-fn "flushlogs function"
ensure_sa mcp-scheduler "scheduler (invokes flushlogs)"
grant_project "$PROXY_SA" roles/datastore.user
grant_project "$FLUSH_SA" roles/datastore.user
grant_project "$HEALTH_SA" roles/datastore.viewer
if [ -n "$INSTANCE_CONNECTION_NAME" ]; then
  for sa in "$PROXY_SA" "$FLUSH_SA" "$HEALTH_SA"; do
    grant_project "$sa" roles/cloudsql.client
    grant_project "$sa" roles/cloudsql.instanceUser
  done
fi

step "Secrets"
ensure_secret "$DB_SECRET" DATABASE_URL
ensure_secret "$KEY_SECRET" MCP_ENCRYPTION_KEY
grant_secret "$DB_SECRET" "$PROXY_SA"
grant_secret "$DB_SECRET" "$FLUSH_SA"
grant_secret "$DB_SECRET" "$HEALTH_SA"
grant_secret "$KEY_SECRET" "$PROXY_SA"
ensure_signing_secret
grant_secret "$OAUTH_SECRET" "$PROXY_SA"
if [ -n "$OAUTH_OIDC_ISSUER" ]; then
  ensure_secret "$OIDC_SECRET" OAUTH_OIDC_CLIENT_SECRET
  grant_secret "$OIDC_SECRET" "$PROXY_SA"
fi

if [ -n "$INSTANCE_CONNECTION_NAME" ]; then
  step "Cloud SQL IAM database users"
  sql_instance=${INSTANCE_CONNECTION_NAME##*:}
  for sa in "$PROXY_SA" "$FLUSH_SA" "$HEALTH_SA"; do
    user=${sa%.gserviceaccount.com}
    if ! exists gcloud sql users describe "$user" --instance="$sql_instance" --project="$PROJECT_ID"; then
      run gcloud sql users create "$user" --instance="$sql_instance" --type=cloud_iam_service_account --project="$PROJECT_ID"
    fi
  done
fi

step "Firestore TTL of the rendezvous"
# The proxy's rendezvous documents (clients' answers to the requests
# upstreams send them during a call) carry expireAt; Firestore deletes
# them after it. The proxy checks expireAt itself: the TTL only cleans up.
run gcloud firestore fields ttls update expireAt --collection-group=rendezvous --enable-ttl --async \
  --database="$FIRESTORE_DATABASE" --project="$PROJECT_ID"

step "Schema migrations"
if [ "$SKIP_MIGRATIONS" = 1 ]; then
  echo "skipped (SKIP_MIGRATIONS=1)"
else
  # The URL travels in the environment of the command, never in its
  # arguments; the printed command does not show it.
  if [ "$DRY_RUN" != 1 ]; then
    migrate_url=${MIGRATE_DATABASE_URL:-$(value_of DATABASE_URL)}
    if [ -z "$migrate_url" ]; then
      echo "deploy.sh: migrations need MIGRATE_DATABASE_URL or DATABASE_URL (or SKIP_MIGRATIONS=1)" >&2
      exit 1
    fi
    export DATABASE_URL="$migrate_url" INSTANCE_CONNECTION_NAME
  fi
  run go run ./cmd/mcpadmin migrate
fi

env_vars="^|^GOOGLE_CLOUD_PROJECT=$PROJECT_ID|FIRESTORE_DATABASE=$FIRESTORE_DATABASE|LOG_LEVEL=INFO"
if [ -n "$INSTANCE_CONNECTION_NAME" ]; then
  env_vars+="|INSTANCE_CONNECTION_NAME=$INSTANCE_CONNECTION_NAME"
fi
# The functions are built as static binaries (CGO_ENABLED=0): nothing of
# them needs C, and no C library is mapped into each instance's memory
# (BENCHMARKS.md: peak RSS).
common=(--gen2 --region="$REGION" --runtime="$RUNTIME" --source="$source_dir" --trigger-http --project="$PROJECT_ID" --quiet
  --set-build-env-vars=CGO_ENABLED=0)

# The secrets are Secret Manager volumes, one folder each (a volume's
# folder holds no other), read by the functions through NAME_FILE: a
# process's environment is one more place its stdio upstreams could look
# (docs/configuration.md: stdio upstreams and the proxy's secrets).
DB_FILE=/etc/secrets/database/url
KEY_FILE=/etc/secrets/encryption/key
db_secret="$DB_FILE=$DB_SECRET:latest"
key_secret="$KEY_FILE=$KEY_SECRET:latest"
OAUTH_FILE=/etc/secrets/oauth/keys
oauth_secret="$OAUTH_FILE=$OAUTH_SECRET:latest"
OIDC_FILE=/etc/secrets/oidc/client-secret
env_vars+="|DATABASE_URL_FILE=$DB_FILE"

step "Deploying $PROXY_FUNCTION (Proxy)"
proxy_env="$env_vars|MCP_ENCRYPTION_KEY_FILE=$KEY_FILE|OAUTH_SIGNING_KEYS_FILE=$OAUTH_FILE|GOMAXPROCS=$PROXY_GOMAXPROCS|GOMEMLIMIT=$PROXY_GOMEMLIMIT|INFLIGHT_BYTES=$PROXY_INFLIGHT_BYTES"
if [ -n "$ALLOWED_ORIGINS" ]; then
  proxy_env+="|ALLOWED_ORIGINS=$ALLOWED_ORIGINS"
fi
if [ -n "$OAUTH_ISSUER" ]; then
  proxy_env+="|OAUTH_ISSUER=$OAUTH_ISSUER"
fi
proxy_secrets="$db_secret,$key_secret,$oauth_secret"
if [ -n "$OAUTH_OIDC_ISSUER" ]; then
  proxy_env+="|OAUTH_OIDC_ISSUER=$OAUTH_OIDC_ISSUER|OAUTH_OIDC_CLIENT_ID=$OAUTH_OIDC_CLIENT_ID|OAUTH_OIDC_CLIENT_SECRET_FILE=$OIDC_FILE"
  if [ -n "$OAUTH_OIDC_NAME" ]; then
    proxy_env+="|OAUTH_OIDC_NAME=$OAUTH_OIDC_NAME"
  fi
  proxy_secrets+=",$OIDC_FILE=$OIDC_SECRET:latest"
fi
run gcloud functions deploy "$PROXY_FUNCTION" "${common[@]}" --entry-point=Proxy --allow-unauthenticated \
  --service-account="$PROXY_SA" --concurrency="$PROXY_CONCURRENCY" --cpu="$PROXY_CPU" --memory="$PROXY_MEMORY" \
  --min-instances="$PROXY_MIN_INSTANCES" --max-instances="$PROXY_MAX_INSTANCES" --timeout="$PROXY_TIMEOUT" \
  --set-env-vars="$proxy_env" \
  --set-secrets="$proxy_secrets"

step "Deploying $HEALTH_FUNCTION (Health)"
run gcloud functions deploy "$HEALTH_FUNCTION" "${common[@]}" --entry-point=Health --allow-unauthenticated \
  --service-account="$HEALTH_SA" --memory=256Mi --max-instances=5 --timeout=30s \
  --set-env-vars="$env_vars" --set-secrets="$db_secret"

step "Deploying $FLUSH_FUNCTION (FlushLogs)"
run gcloud functions deploy "$FLUSH_FUNCTION" "${common[@]}" --entry-point=FlushLogs --no-allow-unauthenticated \
  --service-account="$FLUSH_SA" --memory=512Mi --max-instances=3 --timeout="$FLUSH_TIMEOUT" \
  --set-env-vars="$env_vars|FLUSH_BUDGET=$FLUSH_BUDGET" --set-secrets="$db_secret"
run gcloud functions add-invoker-policy-binding "$FLUSH_FUNCTION" --region="$REGION" \
  --member="serviceAccount:$SCHEDULER_SA" --project="$PROJECT_ID"

step "Scheduler job $SCHEDULER_JOB"
flush_url=$(function_url "$FLUSH_FUNCTION")
verb=create
if exists gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$REGION" --project="$PROJECT_ID"; then
  verb=update
fi
run gcloud scheduler jobs "$verb" http "$SCHEDULER_JOB" --location="$REGION" --schedule="$SCHEDULE" \
  --time-zone="$TIME_ZONE" --uri="$flush_url" --http-method=POST --oidc-service-account-email="$SCHEDULER_SA" \
  --oidc-token-audience="$flush_url" --attempt-deadline="$FLUSH_ATTEMPT_DEADLINE" --max-retry-attempts=0 \
  --project="$PROJECT_ID"

if [ "$MONITORING" = 1 ]; then
  step "Log-based metrics and alert policies"
  for file in monitoring/metrics/*.yaml; do
    name=$(basename "$file" .yaml)
    if exists gcloud logging metrics describe "$name" --project="$PROJECT_ID"; then
      run gcloud logging metrics update "$name" --config-from-file="$file" --project="$PROJECT_ID"
    else
      run gcloud logging metrics create "$name" --config-from-file="$file" --project="$PROJECT_ID"
    fi
  done
  for file in monitoring/policies/*.json; do
    display=$(sed -n 's/^  "displayName": "\(.*\)",$/\1/p' "$file" | head -n 1)
    existing=""
    if [ "$DRY_RUN" = 1 ]; then
      run gcloud alpha monitoring policies list --filter="displayName=\"$display\"" --format='value(name)' --project="$PROJECT_ID"
    else
      existing=$(gcloud alpha monitoring policies list --filter="displayName=\"$display\"" --format='value(name)' --project="$PROJECT_ID" | head -n 1)
    fi
    if [ -n "$existing" ]; then
      run gcloud alpha monitoring policies update "$existing" --policy-from-file="$file" --project="$PROJECT_ID"
    else
      run gcloud alpha monitoring policies create --policy-from-file="$file" --project="$PROJECT_ID"
    fi
  done
fi

step "Done"
proxy_url=$(function_url "$PROXY_FUNCTION")
health_url=$(function_url "$HEALTH_FUNCTION")
connector=${OAUTH_ISSUER:-$proxy_url}
cat <<MSG
MCP URL (give it to clients, with an API key from mcpadmin key create):
  $proxy_url/mcp
Connector URL (Claude, ChatGPT and other OAuth clients; sign in with an API key
of the instance${OAUTH_OIDC_ISSUER:+ or through $OAUTH_OIDC_ISSUER}, docs/oauth.md):
  $connector/mcp/<instance id>     (mcpadmin instance list)
Health:
  $health_url?deep=1
MSG
