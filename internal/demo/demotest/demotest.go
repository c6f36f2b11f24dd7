// Package demotest builds the demo upstream (cmd/demo-upstream) for tests
// that need it as a real process: a stdio upstream, or a server of its
// own.
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
