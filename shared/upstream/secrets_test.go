package upstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/secretprobe/probetest"
	"mcpproxy.dev/mcpproxy/shared/envfile"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// secretMarker starts every secret value of TestStdioCannotReadSecrets;
// the probe looks for it in the proxy's memory.
const secretMarker = "probe-secret-"

func newSecret(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return secretMarker + hex.EncodeToString(b)
}

// TestStdioCannotReadSecrets runs a proxy process (the test binary again,
// TestSecretsProxyProcess) whose database URL and encryption key come
// from its environment, or from files, as in deployment; the proxy starts
// internal/secretprobe as a stdio upstream through a Pool, and the probe
// tries to read the secrets every way it can: its own environment, the
// proxy's /proc environ, cmdline, maps, mem and open files,
// process_vm_readv, and the secret files. None of the values may be in
// what it reports.
func TestStdioCannotReadSecrets(t *testing.T) {
	probe := probetest.Binary(t)
	for _, mode := range []string{"env", "file"} {
		t.Run(mode, func(t *testing.T) {
			dbPassword, key := newSecret(t), newSecret(t)
			dbURL := "postgres://proxy:" + dbPassword + "@db.invalid/mcpproxy"
			env := append(os.Environ(), "MCP_PROXY_TEST_PROCESS=proxy", "SECRETPROBE="+probe,
				"DATABASE_URL=", "DATABASE_URL_FILE=", "MCP_ENCRYPTION_KEY=", "MCP_ENCRYPTION_KEY_FILE=")
			var files []string
			if mode == "env" {
				env = append(env, "DATABASE_URL="+dbURL, "MCP_ENCRYPTION_KEY="+key)
			} else {
				// A folder others may enter holding files only their
				// owner may read: the file's own mode is what protects it.
				dir := openDir(t)
				for name, value := range map[string]string{"url": dbURL + "\n", "key": key} {
					path := filepath.Join(dir, name)
					if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
						t.Fatal(err)
					}
					files = append(files, path)
				}
				env = append(env, "DATABASE_URL_FILE="+files[0], "MCP_ENCRYPTION_KEY_FILE="+files[1])
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestSecretsProxyProcess$", "-test.v")
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			report := string(out)
			if err != nil {
				t.Fatalf("proxy process: %v\n%s", err, report)
			}
			if !strings.Contains(report, "== own environment") {
				t.Fatalf("the probe did not report:\n%s", report)
			}
			for _, f := range files {
				if !strings.Contains(report, "== "+f+":") {
					t.Errorf("the probe did not try %s", f)
				}
			}
			for name, secret := range map[string]string{"database password": dbPassword, "encryption key": key} {
				if strings.Contains(report, secret) {
					t.Errorf("the stdio upstream read the %s:\n%s", name, report)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("probe report:\n%s", report)
			}
		})
	}
}

// TestSecretsProxyProcess is the proxy process of
// TestStdioCannotReadSecrets: it reads its secrets as the functions do,
// calls the probe through a Pool and prints its report.
func TestSecretsProxyProcess(t *testing.T) {
	if os.Getenv("MCP_PROXY_TEST_PROCESS") != "proxy" {
		t.Skip("run by TestStdioCannotReadSecrets")
	}
	var c struct {
		DatabaseURL   string `env:"DATABASE_URL"`
		EncryptionKey string `env:"MCP_ENCRYPTION_KEY"`
	}
	files, err := envfile.Process(context.Background(), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL == "" || c.EncryptionKey == "" {
		t.Fatal("no secrets configured")
	}
	p := upstream.NewPool(upstream.PoolOptions{SecretFiles: files, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	defer p.Close()
	up := tenant.Upstream{ConfigID: "probe", Name: "Probe", Transport: tenant.TransportStdio, Command: os.Getenv("SECRETPROBE"),
		Credentials: tenant.Credentials{Env: map[string]string{"PROBE_CONFIG": "from-the-config"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res *mcp.CallToolResult
	err = p.Do(ctx, up, upstream.Once, func(ctx context.Context, s *mcp.ClientSession) error {
		var err error
		res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "probe", Arguments: map[string]any{"files": files, "marker": secretMarker}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(res.Content[0].(*mcp.TextContent).Text)
	runtime.KeepAlive(&c)
}

// openDir is a new temporary folder every user may enter.
func openDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyExecutable copies the binary at src into a new folder of mode
// dirMode, as mode 0755.
func copyExecutable(t *testing.T, src string, dirMode os.FileMode) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := openDir(t)
	if err := os.Chmod(dir, dirMode); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestStdioUserRefusals: a proxy running as root starts no stdio
// upstream while the user they run as could read one of its secret
// files, and says so; nor one whose command that user cannot reach.
func TestStdioUserRefusals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("stdio upstreams run as another user only when the proxy runs as root")
	}
	secret := filepath.Join(openDir(t), "key")
	if err := os.WriteFile(secret, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := upstream.NewPool(upstream.PoolOptions{SecretFiles: []string{secret}})
	defer p.Close()
	_, err := p.Session(context.Background(), stdioUpstream(t))
	if err == nil || !strings.Contains(err.Error(), "the secret file "+secret+" is readable by uid 65534") {
		t.Errorf("world-readable secret file: err = %v; want stdio upstreams disabled, naming the file", err)
	}

	// A command in a folder only root may enter, like a checkout in
	// /root.
	closed := stdioUpstream(t)
	closed.Command = copyExecutable(t, closed.Command, 0o700)
	p2, _ := newStdioPool(t, time.Hour)
	_, err = p2.Session(context.Background(), closed)
	if err == nil || !strings.Contains(err.Error(), "cannot be run by uid 65534") {
		t.Errorf("command in a closed folder: err = %v; want one naming the stdio user", err)
	}
}

// TestStdioNonRootProxy runs the proxy process of
// TestStdioCannotReadSecrets as a user other than root, as Cloud
// Functions' images do (uid 33): its stdio upstreams then run as that
// same user. Being non-dumpable still keeps them out of its environment
// and memory; the files it reads its secrets from, it shares with them
// (docs/configuration.md), and the pool warns of it.
func TestStdioNonRootProxy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the proxy process as another user")
	}
	const uid = upstream.DefaultStdioID
	self := copyExecutable(t, os.Args[0], 0o755)
	probe := probetest.Binary(t)
	dbPassword, key := newSecret(t), newSecret(t)
	dir := openDir(t)
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(keyFile, uid, uid); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestSecretsProxyProcess$", "-test.v")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "MCP_PROXY_TEST_PROCESS=proxy", "SECRETPROBE=" + probe,
		"DATABASE_URL=postgres://proxy:" + dbPassword + "@db.invalid/mcpproxy", "MCP_ENCRYPTION_KEY_FILE=" + keyFile}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	report := string(out)
	if err != nil {
		t.Fatalf("proxy process: %v\n%s", err, report)
	}
	if !strings.Contains(report, fmt.Sprintf("== identity: uid %d", uid)) {
		t.Fatalf("the probe did not run as the proxy's user:\n%s", report)
	}
	if strings.Contains(report, dbPassword) {
		t.Errorf("the stdio upstream read the database password from the proxy's environment or memory:\n%s", report)
	}
	// What remains: the secret file is the proxy's, so its child's too.
	if !strings.Contains(report, "== "+keyFile+": read") {
		t.Errorf("the probe could not read %s; docs/configuration.md says it can:\n%s", keyFile, report)
	}
	if !strings.Contains(report, "can read the files it reads its secrets from") {
		t.Errorf("the pool did not warn that the stdio upstreams can read the secret files:\n%s", report)
	}
	if testing.Verbose() {
		t.Logf("probe report:\n%s", report)
	}
}
