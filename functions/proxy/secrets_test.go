package proxy_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/secretprobe/probetest"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// TestStdioProbeThroughProxy registers internal/secretprobe as a stdio
// upstream and calls it through the proxy's /mcp, as a tenant would: the
// proxy process (this test) holds DATABASE_URL in its environment and
// the test keyring's key in its memory, and the probe may find neither.
// (shared/upstream's TestStdioCannotReadSecrets covers secrets given as
// files, and a proxy not running as root.)
func TestStdioProbeThroughProxy(t *testing.T) {
	const keyMarker = "test-only-key-32" // pgtest.TestKeyring's key starts so
	e := newEnv(t, proxy.Options{})
	key := e.AddInstance(t, "probe", []postgres.Server{
		{Name: "Probe", Transport: tenant.TransportStdio, Command: probetest.Binary(t)},
	}, []string{"probe"})
	s := e.Client(t, "/mcp", key, protocols[len(protocols)-1], nil)
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "probe__probe",
		Arguments: map[string]any{"marker": keyMarker}})
	if err != nil {
		t.Fatal(err)
	}
	report := res.Content[0].(*mcp.TextContent).Text
	if !strings.Contains(report, "== own environment") {
		t.Fatalf("the probe did not report:\n%s", report)
	}
	if db := os.Getenv("DATABASE_URL"); strings.Contains(report, db) {
		t.Errorf("the stdio upstream read DATABASE_URL:\n%s", report)
	}
	if strings.Contains(report, keyMarker) {
		t.Errorf("the stdio upstream found the encryption key in the proxy's memory:\n%s", report)
	}
}
