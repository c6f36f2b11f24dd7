package hostile

import (
	"testing"

	"mcpproxy.dev/mcpproxy/internal/testbin"
)

// Binary builds the hostile-upstream command once per test binary and
// returns its path (testbin.Build).
func Binary(t testing.TB) string {
	t.Helper()
	return testbin.Build(t, "mcpproxy.dev/mcpproxy/internal/hostile/hostile-upstream")
}
