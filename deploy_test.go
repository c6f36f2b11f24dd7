package mcpproxy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Values the dry run is given as secrets: none may appear in its output.
const (
	fakeDatabaseURL = "postgres://deployer:dry-run-password-7f3a@10.0.0.5/mcpproxy"
	fakeKey         = "ZHJ5LXJ1bi1rZXktbm90LWEtcmVhbC1rZXktMzJieXQ="
)

func dryRun(t *testing.T, extra ...string) string {
	t.Helper()
	cmd := exec.Command("./deploy.sh")
	cmd.Env = append(os.Environ(), "DRY_RUN=1", "PROJECT_ID=dry-run-project", "REGION=europe-west1",
		"DATABASE_URL="+fakeDatabaseURL, "MCP_ENCRYPTION_KEY="+fakeKey, "MONITORING=1",
		"INSTANCE_CONNECTION_NAME=dry-run-project:europe-west1:main")
	cmd.Env = append(cmd.Env, extra...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("DRY_RUN=1 ./deploy.sh: %v\n%s%s", err, out.String(), errOut.String())
	}
	return out.String() + errOut.String()
}

// commands returns the printed commands ("+ ..." lines), split into words
// the way the shell would read them back.
func commands(t *testing.T, out string) [][]string {
	t.Helper()
	var cmds [][]string
	for line := range strings.SplitSeq(out, "\n") {
		rest, ok := strings.CutPrefix(line, "+ ")
		if !ok {
			continue
		}
		words, err := shellWords(rest)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		cmds = append(cmds, words)
	}
	return cmds
}

// shellWords splits a line printed by deploy.sh's quote: plain words and
// single-quoted ones ('\” for a quote inside).
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\'':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '\'':
			quoted, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, os.ErrInvalid
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

var (
	// sourceDir is the folder of the upload, new on every run.
	sourceDir = regexp.MustCompile(`(--source=|source folder )\S+`)
	escapes   = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	helpFlags = regexp.MustCompile(`--(\[no-\])?[a-z0-9][a-z0-9-]*`)
	helpName  = regexp.MustCompile(`(?m)^NAME\n\s+gcloud ([a-z0-9 -]+?) - `)
	entryRe   = regexp.MustCompile(`functions\.HTTP\("([A-Za-z]+)"`)
)

// gcloudHelp reads `gcloud WORDS --help` (offline) and returns the command
// path it documents and every flag it names (its own and gcloud-wide).
func gcloudHelp(t *testing.T, words []string) (string, map[string]bool) {
	out, err := exec.Command("gcloud", append(slices.Clone(words), "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("gcloud %s --help: %v\n%s", strings.Join(words, " "), err, out)
		return "", nil
	}
	text := escapes.ReplaceAllString(string(out), "")
	name := helpName.FindStringSubmatch(text)
	if name == nil {
		t.Errorf("gcloud %s --help names no command", strings.Join(words, " "))
		return "", nil
	}
	flags := map[string]bool{}
	for _, m := range helpFlags.FindAllStringSubmatch(text, -1) {
		flag := strings.Replace(m[0], "[no-]", "", 1)
		flags[flag] = true
		if m[1] != "" {
			flags["--no-"+strings.TrimPrefix(flag, "--")] = true
		}
	}
	return strings.Join(strings.Fields(name[1]), " "), flags
}

func TestDeployDryRun(t *testing.T) {
	if _, err := exec.LookPath("gcloud"); err != nil {
		t.Fatal("gcloud is not installed: the dry run's commands are checked against it")
	}
	out := dryRun(t)
	if again := dryRun(t); sourceDir.ReplaceAllString(again, "SOURCE") != sourceDir.ReplaceAllString(out, "SOURCE") {
		t.Error("a second dry run printed different commands")
	}
	for _, secret := range []string{fakeDatabaseURL, "dry-run-password-7f3a", fakeKey} {
		if strings.Contains(out, secret) {
			t.Errorf("the output holds the secret %q", secret)
		}
	}
	cmds := commands(t, out)

	// Every gcloud command exists, with every flag it is given.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	checked := map[string]bool{}
	for _, cmd := range cmds {
		if cmd[0] != "gcloud" {
			continue
		}
		var words, flags []string
		for _, w := range cmd[1:] {
			if strings.HasPrefix(w, "--") {
				name, _, _ := strings.Cut(w, "=")
				flags = append(flags, name)
			} else {
				words = append(words, w)
			}
		}
		key := strings.Join(cmd, " ")
		if checked[key] {
			continue
		}
		checked[key] = true
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			path, known := gcloudHelp(t, words)
			if known == nil {
				return
			}
			for _, f := range flags {
				if !known[f] {
					t.Errorf("gcloud %s has no flag %s", path, f)
				}
			}
		})
	}
	wg.Wait()

	// The deployed entry points are the registered ones, and the runtime
	// is the go.mod's Go version.
	registered := map[string]bool{}
	files, _ := filepath.Glob("functions/*/*.go")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range entryRe.FindAllStringSubmatch(string(src), -1) {
			registered[m[1]] = true
		}
	}
	deployed := map[string]bool{}
	goMod, _ := os.ReadFile("go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(goMod))
	for _, cmd := range cmds {
		if len(cmd) < 3 || cmd[1] != "functions" || cmd[2] != "deploy" {
			continue
		}
		for _, w := range cmd {
			if ep, ok := strings.CutPrefix(w, "--entry-point="); ok {
				deployed[ep] = true
			}
			if rt, ok := strings.CutPrefix(w, "--runtime="); ok && rt != "go"+goVersion[1]+goVersion[2] {
				t.Errorf("runtime %s; go.mod says go %s.%s", rt, goVersion[1], goVersion[2])
			}
		}
		checkSecretFiles(t, cmd)
	}
	if len(registered) != 3 || !mapsEqual(registered, deployed) {
		t.Errorf("deployed entry points %v; registered %v", deployed, registered)
	}

	// The settings the issue asks of the proxy, and the private flush.
	for _, want := range []string{"--concurrency=80", "--cpu=1", "--min-instances=1", "--max-instances=100",
		"--timeout=120s", "--no-allow-unauthenticated", "--oidc-service-account-email=", "--attempt-deadline=55s",
		"add-invoker-policy-binding", "--type=cloud_iam_service_account", "policies create", "metrics create"} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run never uses %s", want)
		}
	}
	if !strings.Contains(out, "https://europe-west1-dry-run-project.cloudfunctions.net/mcp-proxy/mcp") {
		t.Error("the dry run does not end with the MCP URL")
	}
	if !strings.Contains(out, "https://europe-west1-dry-run-project.cloudfunctions.net/mcp-proxy/mcp/<instance id>") {
		t.Error("the dry run does not print the connector URL")
	}
	if !strings.Contains(out, "gcloud secrets create mcp-oauth-signing-keys") {
		t.Error("the dry run does not create the OAuth signing key secret")
	}
}

// checkSecretFiles checks that a function gets its secrets as Secret
// Manager volumes only, each named by the NAME_FILE variable the
// function reads (shared/envfile), and never in its environment: the
// proxy's stdio upstreams must not find them there.
func checkSecretFiles(t *testing.T, cmd []string, oidc ...bool) {
	t.Helper()
	env := map[string]string{}
	mounts := map[string]string{} // file path → secret
	for _, w := range cmd {
		if v, ok := strings.CutPrefix(w, "--set-env-vars="); ok {
			for kv := range strings.SplitSeq(strings.TrimPrefix(v, "^|^"), "|") {
				k, val, _ := strings.Cut(kv, "=")
				env[k] = val
			}
		}
		if v, ok := strings.CutPrefix(w, "--set-secrets="); ok {
			for ref := range strings.SplitSeq(v, ",") {
				path, secret, _ := strings.Cut(ref, "=")
				if !strings.HasPrefix(path, "/") {
					t.Errorf("%s: secret %s is an environment variable, not a volume", cmd[3], ref)
					continue
				}
				mounts[path] = secret
			}
		}
	}
	want := map[string]string{"DATABASE_URL": "mcp-database-url:latest"}
	if slices.Contains(cmd, "--entry-point=Proxy") {
		want["MCP_ENCRYPTION_KEY"] = "mcp-encryption-key:latest"
		want["OAUTH_SIGNING_KEYS"] = "mcp-oauth-signing-keys:latest"
		if len(oidc) > 0 && oidc[0] {
			want["OAUTH_OIDC_CLIENT_SECRET"] = "mcp-oauth-oidc-client-secret:latest"
		}
	}
	for name, secret := range want {
		if _, ok := env[name]; ok {
			t.Errorf("%s: %s is in the function's environment", cmd[3], name)
		}
		file := env[name+"_FILE"]
		if mounts[file] != secret {
			t.Errorf("%s: %s_FILE=%q; the secret %s is mounted at %v", cmd[3], name, file, secret, mounts)
		}
	}
	if len(mounts) != len(want) {
		t.Errorf("%s: secrets mounted %v; want only %v", cmd[3], mounts, want)
	}
	folders := map[string]bool{}
	for path := range mounts {
		// A volume's folder holds one secret and no other volume.
		if dir := filepath.Dir(path); folders[dir] {
			t.Errorf("%s: two secrets in the folder %s", cmd[3], dir)
		} else {
			folders[dir] = true
		}
	}
}

// TestDeployGOMAXPROCS checks that the proxy gets one P per vCPU, rounded
// up, and the other functions Go's default.
func TestDeployGOMAXPROCS(t *testing.T) {
	for _, tc := range []struct{ cpu, want string }{{"", "1"}, {"2", "2"}, {"0.5", "1"}, {"1.5", "2"}} {
		var extra []string
		if tc.cpu != "" {
			extra = append(extra, "PROXY_CPU="+tc.cpu)
		}
		for _, cmd := range commands(t, dryRun(t, extra...)) {
			if len(cmd) < 4 || cmd[1] != "functions" || cmd[2] != "deploy" {
				continue
			}
			env := ""
			for _, w := range cmd {
				if v, ok := strings.CutPrefix(w, "--set-env-vars="); ok {
					env = v
				}
			}
			want := ""
			if slices.Contains(cmd, "--entry-point=Proxy") {
				want = "|GOMAXPROCS=" + tc.want
			}
			if got := regexp.MustCompile(`\|GOMAXPROCS=[^|]*`).FindString(env); got != want {
				t.Errorf("PROXY_CPU=%q: %s deployed with %q; want %q", tc.cpu, cmd[3], got, want)
			}
		}
	}
	for _, bad := range []string{"PROXY_CPU=abc", "PROXY_CPU=0", "PROXY_GOMAXPROCS=0", "PROXY_GOMAXPROCS=1.5"} {
		cmd := exec.Command("./deploy.sh")
		cmd.Env = append(os.Environ(), "DRY_RUN=1", "PROJECT_ID=dry-run-project", bad)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), strings.Split(bad, "=")[0]+" must be") {
			t.Errorf("%s: %v, %s; want a failure naming the setting", bad, err, out)
		}
	}
}

// TestDeployMemory checks that the proxy's GOMEMLIMIT and budget of bytes
// in flight follow its memory, and that a memory it cannot read fails.
func TestDeployMemory(t *testing.T) {
	for _, tc := range []struct{ memory, limit, inflight string }{
		{"", "204MiB", "48933546"},
		{"512Mi", "409MiB", "120586240"},
		{"1Gi", "819MiB", "263891626"},
		{"1G", "762MiB", "243968682"},
	} {
		var extra []string
		if tc.memory != "" {
			extra = append(extra, "PROXY_MEMORY="+tc.memory)
		}
		for _, cmd := range commands(t, dryRun(t, extra...)) {
			if !slices.Contains(cmd, "--entry-point=Proxy") {
				continue
			}
			env := ""
			for _, w := range cmd {
				if v, ok := strings.CutPrefix(w, "--set-env-vars="); ok {
					env = v
				}
			}
			for _, want := range []string{"|GOMEMLIMIT=" + tc.limit, "|INFLIGHT_BYTES=" + tc.inflight} {
				if !strings.Contains(env+"|", want+"|") {
					t.Errorf("PROXY_MEMORY=%q: env %q lacks %q", tc.memory, env, want)
				}
			}
		}
	}
	for _, bad := range []string{"PROXY_MEMORY=lots", "PROXY_MEMORY=64Mi", "PROXY_MEMORY=256Xi"} {
		cmd := exec.Command("./deploy.sh")
		cmd.Env = append(os.Environ(), "DRY_RUN=1", "PROJECT_ID=dry-run-project", bad)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "PROXY_MEMORY must be") {
			t.Errorf("%s: %v, %s; want a failure naming the setting", bad, err, out)
		}
	}
}

func TestDeployNeedsProject(t *testing.T) {
	cmd := exec.Command("./deploy.sh")
	cmd.Env = append(os.Environ(), "DRY_RUN=1", "PROJECT_ID=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PROJECT_ID") {
		t.Errorf("without PROJECT_ID: %v, %s; want a failure naming PROJECT_ID", err, out)
	}
}

func TestShellcheck(t *testing.T) {
	scripts, _ := filepath.Glob("scripts/*.sh")
	out, err := exec.Command("shellcheck", append([]string{"deploy.sh"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck (make test installs it): %v\n%s", err, out)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestDeployUploadsOnlyTheBuild: the functions' source is what the build
// needs, from the commit: no untracked file beside the source (a key, a
// dump, notes), no tests, no docs.
func TestDeployUploadsOnlyTheBuild(t *testing.T) {
	untracked := []string{"untracked-secret.env", "functions/proxy/untracked-notes.txt", "shared/untracked-dump.sql"}
	for _, f := range untracked {
		if err := os.WriteFile(f, []byte("DATABASE_URL=postgres://x:leaked@db/\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(f) })
	}
	out := dryRun(t)
	uploaded := map[string]bool{}
	for line := range strings.SplitSeq(out, "\n") {
		if f, ok := strings.CutPrefix(line, "upload: "); ok {
			uploaded[f] = true
		}
	}
	for _, want := range []string{"go.mod", "go.sum", "mcpproxy.go", "functions/proxy/proxy.go", "functions/health/health.go",
		"functions/flushlogs/flush.go", "shared/postgres/migrations/00001_schema.sql", "shared/logging/logging.go"} {
		if !uploaded[want] {
			t.Errorf("the upload lacks %s, which the build needs", want)
		}
	}
	for f := range uploaded {
		if slices.Contains(untracked, f) || strings.HasSuffix(f, "_test.go") || strings.Contains(f, "testdata/") ||
			strings.HasPrefix(f, ".git") || strings.HasSuffix(f, ".md") || strings.HasPrefix(f, "bin/") || f == "deploy.sh" {
			t.Errorf("the upload holds %s", f)
		}
	}
	for _, cmd := range commands(t, out) {
		if len(cmd) > 2 && cmd[1] == "functions" && cmd[2] == "deploy" && slices.Contains(cmd, "--source=.") {
			t.Errorf("%s is deployed from the working tree (--source=.)", cmd[3])
		}
	}
}

// TestDeployOpenIDProvider: with an OpenID Connect provider, the proxy
// gets its settings, and its client secret as a volume of its own.
func TestDeployOpenIDProvider(t *testing.T) {
	const secret = "oidc-client-secret-9c1d"
	out := dryRun(t, "OAUTH_OIDC_ISSUER=https://accounts.google.com", "OAUTH_OIDC_CLIENT_ID=client-1", "OAUTH_OIDC_NAME=Google",
		"OAUTH_OIDC_CLIENT_SECRET="+secret)
	if strings.Contains(out, secret) {
		t.Error("the output holds the client secret")
	}
	found := false
	for _, cmd := range commands(t, out) {
		if slices.Contains(cmd, "--entry-point=Proxy") {
			found = true
			checkSecretFiles(t, cmd, true)
			if !strings.Contains(strings.Join(cmd, " "), "OAUTH_OIDC_ISSUER=https://accounts.google.com|OAUTH_OIDC_CLIENT_ID=client-1") {
				t.Errorf("the proxy is deployed without the provider: %v", cmd)
			}
		}
	}
	if !found || !strings.Contains(out, "gcloud secrets create mcp-oauth-oidc-client-secret") {
		t.Errorf("no proxy deploy, or no client secret created:\n%s", out)
	}
}
