// Package demotest builds the demo upstream (cmd/demo-upstream) for tests
// that need it as a real process: a stdio upstream, or a server of its
// own.
package demotest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	bin  string
	err  error
)

// Binary builds cmd/demo-upstream once per test binary and returns its
// path, in a temporary folder of its own that every user may enter.
func Binary(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		var dir string
		if dir, err = os.MkdirTemp("", "demo-upstream-"); err != nil {
			return
		}
		// A proxy running as root starts stdio upstreams as another
		// user (shared/upstream/isolation.go), who must reach it.
		if err = os.Chmod(dir, 0o755); err != nil {
			return
		}
		bin = filepath.Join(dir, "demo-upstream")
		if out, buildErr := exec.Command("go", "build", "-o", bin, "mcpproxy.dev/mcpproxy/cmd/demo-upstream").CombinedOutput(); buildErr != nil {
			err = fmt.Errorf("build demo-upstream: %v\n%s", buildErr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
