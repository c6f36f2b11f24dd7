// Package probetest builds internal/secretprobe for the tests that run it
// as a stdio upstream.
package probetest

import (
	"testing"

	"mcpproxy.dev/mcpproxy/internal/testbin"
)

// Binary builds internal/secretprobe once per test binary and returns its
// path (testbin.Build).
func Binary(t testing.TB) string {
	t.Helper()
	return testbin.Build(t, "mcpproxy.dev/mcpproxy/internal/secretprobe")
}
