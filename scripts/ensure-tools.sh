#!/usr/bin/env bash
# Checks for what `make dev` and `make test` need on this machine and
# installs what Debian's packages provide when it is missing: PostgreSQL's
# server binaries, a Java runtime, shellcheck (deploy.sh's test runs it), Chromium (the OAuth
# consent page tests).
# The Firestore emulator comes with the installed gcloud.
set -euo pipefail

have_initdb() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

# install PACKAGE WHY: installs a Debian package as root, else explains
# what to install and fails.
install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing $1 from Debian's packages ($2)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "ensure-tools: $2 is missing: install it (Debian: sudo apt-get install $1)" >&2
    exit 1
  fi
}

have_initdb || install postgresql "PostgreSQL's server binaries (initdb)"
if ! command -v gcloud >/dev/null 2>&1; then
  echo "ensure-tools: gcloud is missing: install the Google Cloud CLI and its Firestore emulator (gcloud components install cloud-firestore-emulator)" >&2
  exit 1
fi
command -v java >/dev/null 2>&1 || install default-jre-headless "a Java runtime for the Firestore emulator"
command -v shellcheck >/dev/null 2>&1 || install shellcheck "shellcheck"
# The OAuth tests drive the consent page in a real browser.
[ -x /usr/bin/chromium ] || install chromium "headless Chromium (the OAuth consent page tests)"
