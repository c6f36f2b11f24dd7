// Package testbin builds the commands tests run as real processes
// (upstreams over stdio or HTTP), once per test binary and package.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

type built struct {
	once sync.Once
	bin  string
	err  error
}

var builds sync.Map // package path → *built

// Build builds the main package pkg (an import path) once per test
// binary and returns the path of the command, in a temporary folder
// every user may enter: a proxy running as root starts stdio upstreams
// as another user (shared/upstream/isolation.go), who must reach it.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, &built{})
	b := v.(*built)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", path.Base(pkg)+"-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			b.err = err
			return
		}
		b.bin = filepath.Join(dir, path.Base(pkg))
		if out, err := exec.Command("go", "build", "-o", b.bin, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}
