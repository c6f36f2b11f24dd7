#!/usr/bin/env bash
# Checks for what `make dev` and `make test` need on this machine and
# installs what Debian's packages provide when it is missing: PostgreSQL's
# server binaries, a Java runtime, shellcheck (deploy.sh's test runs it).
# The Firestore emulator comes with the installed gcloud.
set -euo pipefail

have_initdb() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if ! have_initdb; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "ensure-tools: PostgreSQL server binaries (initdb) are missing: install them (Debian: sudo apt-get install postgresql)" >&2
    exit 1
  fi
fi
if ! command -v gcloud >/dev/null 2>&1; then
  echo "ensure-tools: gcloud is missing: install the Google Cloud CLI and its Firestore emulator (gcloud components install cloud-firestore-emulator)" >&2
  exit 1
fi
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing a Java runtime for the Firestore emulator" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "ensure-tools: java is missing: the Firestore emulator needs a Java runtime (Debian: sudo apt-get install default-jre-headless)" >&2
    exit 1
  fi
fi
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing shellcheck from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  else
    echo "ensure-tools: shellcheck is missing: install it (Debian: sudo apt-get install shellcheck)" >&2
    exit 1
  fi
fi
