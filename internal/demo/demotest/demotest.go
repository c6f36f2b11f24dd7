// Package demotest runs the demo upstream (internal/demo) for tests: as
// a real process (Binary, cmd/demo-upstream), or over Streamable HTTP in
// the test's process behind a Gate that refuses on demand
// (StartUpstream), with the OAuth token endpoint an upstream's
// credentials name (StartTokenEndpoint).
package demotest

import (
	"testing"

	"mcpproxy.dev/mcpproxy/internal/testbin"
)

// Binary builds cmd/demo-upstream once per test binary and returns its
// path (testbin.Build).
func Binary(t testing.TB) string {
	t.Helper()
	return testbin.Build(t, "mcpproxy.dev/mcpproxy/cmd/demo-upstream")
}
