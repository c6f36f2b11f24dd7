package hostile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the hostile-upstream command once per test binary and
// returns its path, in a temporary folder of its own.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hostile-upstream-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hostile-upstream")
		if out, err := exec.Command("go", "build", "-o", binPath, "mcpproxy.dev/mcpproxy/internal/hostile/hostile-upstream").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build hostile-upstream: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
