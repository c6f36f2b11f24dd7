# The two commands of the README: `make dev` runs the stack locally,
# `make test` runs every test against real Postgres and the real Firestore
# emulator (started here unless DATABASE_URL / FIRESTORE_EMULATOR_HOST are
# given).
GO ?= go
BIN := bin
CMDS := devstack devserver demo-upstream mcpadmin mcpload mcpbench mcpsoak
# The official MCP conformance suite and the Node.js >= 22 it runs on,
# installed from the npm registry by scripts/ensure-conformance.sh.
CONFORMANCE_DIR := $(CURDIR)/.tools/conformance
# make test runs each fuzz target briefly; `make fuzz FUZZTIME=10m` longer.
# The default is a count of executions (about 5 s here), not a duration:
# Go 1.26's fuzz coordinator can fail a target with "context deadline
# exceeded" when a duration ends mid-execution (golang/go#75804, fixed in
# Go 1.27), which must not fail CI.
FUZZTIME ?= 50000x
FUZZ_TARGETS := ./functions/proxy:FuzzRequest ./functions/proxy:FuzzToolNames ./shared/wire:FuzzDecode ./shared/wire:FuzzCopyValue ./shared/upstream:FuzzAnswer ./shared/upstream:FuzzTypedResult ./functions/proxy/oauth:FuzzToken ./shared/logbuffer:FuzzEncode

.PHONY: all build dev test soak fuzz bench bench-memory bench-tenants bench-proxy bench-wire bench-flush bench-rendezvous tools conformance-tools clean

all: build

# Static binaries, as deploy.sh has the functions built (CGO_ENABLED=0):
# no C library mapped into each process. Tests keep cgo for -race.
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS)) ./internal/hostile/hostile-upstream
	CGO_ENABLED=0 $(GO) build -o $(BIN)/everything-server github.com/modelcontextprotocol/go-sdk/conformance/everything-server

tools:
	@scripts/ensure-tools.sh

conformance-tools:
	@scripts/ensure-conformance.sh $(CONFORMANCE_DIR)

dev: tools build
	$(BIN)/devstack -- bash scripts/dev.sh

test: tools conformance-tools build
	MCP_CONFORMANCE_DIR=$(CONFORMANCE_DIR) $(BIN)/devstack -quiet -- $(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz

# A soak run on its own Postgres and emulator: 80 clients of two tenants
# through the whole stack while Postgres, the emulator and the upstream go
# down and the proxy process is replaced, and a hostile tenant attacks in
# every other phase; fails on any lost, duplicated or misattributed log
# row, a proxy crash, or a p99 of the others over 2x with the hostile
# tenant. The one-minute version runs in make test (cmd/mcpsoak
# TestSoakShort).
SOAK_DURATION ?= 10m
SOAK_CLIENTS ?= 80
soak: tools build
	$(BIN)/mcpsoak --duration $(SOAK_DURATION) --clients $(SOAK_CLIENTS)

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

# tools/call straight, through a bare httputil.ReverseProxy and through the
# proxy, each in a process of its own, at 1 and 80 plain HTTP clients of
# 2025-06-18 and of 2026-07-28, with a second proxy asking upstreams for
# 2026-07-28; then 1 KiB, 1 MiB and 4 MiB results at 8 clients. RSS, CPU
# per call (the targets' and the upstream's), Postgres statements,
# Firestore writes and cold start; about 18 minutes. Writes the generated
# section of BENCHMARKS.md and docs/bench-latency.svg.
# BENCHFLAGS passes flags to cmd/mcpbench, e.g. BENCHFLAGS='-duration 20s'.
BENCHFLAGS ?=
bench: tools build
	$(BIN)/devstack -quiet -- $(BIN)/mcpbench $(BENCHFLAGS)

# Hostile input against the proxy as deployed in 256 MiB: a 4 MiB nested
# body and results of 1 to 20 MiB at 8 and 80 concurrent calls, each in a
# fresh process; peak RSS, calls answered and refused. Writes the memory
# section of BENCHMARKS.md.
bench-memory: tools build
	$(BIN)/devstack -quiet -- $(BIN)/mcpbench memory

# Postgres statements per minute of one proxy process with 1,000 tenants,
# without the change feed (CACHE_TTL 60 s) and with it. Writes its section
# of BENCHMARKS.md.
bench-tenants: tools build
	$(BIN)/devstack -quiet -- $(BIN)/mcpbench tenants

# The same tools/call in one process (go test -bench), with allocations.
BENCHCOUNT ?= 3
bench-proxy: tools build
	$(BIN)/devstack -quiet -- $(GO) test -run '^$$' -bench ToolsCall -count $(BENCHCOUNT) -benchtime 2s -benchmem ./functions/proxy/

# The JSON work of one proxied tools/call: shared/wire against
# encoding/json and the SDK's codec, and a 1 MiB result streamed against
# json.Valid and json.Compact (no services needed).
bench-wire:
	$(GO) test -run '^$$' -bench 'CallCodec|CopyValue' -count $(BENCHCOUNT) -benchmem ./shared/wire/

# FlushLogs from the Firestore emulator into Postgres: entries per second.
bench-flush: tools build
	$(BIN)/devstack -quiet -- $(GO) test -run '^$$' -bench Flush -count $(BENCHCOUNT) -benchtime 5x ./functions/flushlogs/

# A request an upstream sends a client during a call, through the Firestore
# rendezvous on the emulator: latency and operations per round trip, the
# listener against polling, and a relayed elicitation direct and through
# the proxy.
bench-rendezvous: tools build
	$(BIN)/devstack -quiet -- sh -c '$(GO) test -run "^$$" -bench RoundTrip -benchtime 500x ./shared/rendezvous/ && \
		$(GO) test -run "^$$" -bench RelayedElicitation -benchtime 500x ./functions/proxy/'

clean:
	rm -rf $(BIN) .devstack .tools
