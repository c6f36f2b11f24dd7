# The two commands of the README: `make dev` runs the stack locally,
# `make test` runs every test against real Postgres and the real Firestore
# emulator (started here unless DATABASE_URL / FIRESTORE_EMULATOR_HOST are
# given).
GO ?= go
BIN := bin
CMDS := devstack devserver demo-upstream mcpadmin
FUZZTIME ?= 10s

.PHONY: all build dev test tools clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

tools:
	@scripts/ensure-tools.sh

dev: tools build
	$(BIN)/devstack -- bash scripts/dev.sh

test: tools build
	$(BIN)/devstack -quiet -- $(GO) test -race -count=1 ./...

clean:
	rm -rf $(BIN) .devstack
