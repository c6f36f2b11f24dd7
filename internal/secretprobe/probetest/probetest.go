// Package probetest builds internal/secretprobe for the tests that run it
// as a stdio upstream.
package probetest

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

// Binary builds internal/secretprobe once per test binary and returns its
// path, in a temporary folder every user may enter: a proxy running as
// root starts stdio upstreams as another user.
func Binary(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		var dir string
		if dir, err = os.MkdirTemp("", "secretprobe-"); err != nil {
			return
		}
		if err = os.Chmod(dir, 0o755); err != nil {
			return
		}
		bin = filepath.Join(dir, "secretprobe")
		if out, buildErr := exec.Command("go", "build", "-o", bin, "mcpproxy.dev/mcpproxy/internal/secretprobe").CombinedOutput(); buildErr != nil {
			err = fmt.Errorf("build secretprobe: %v\n%s", buildErr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
