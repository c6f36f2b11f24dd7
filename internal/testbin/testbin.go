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

// Dir builds each main package of pkgs (import paths) with Build and
// returns a folder of the test's holding each command under its own name,
// for a program that takes a folder of commands (mcpbench -bin, mcpsoak
// --bin).
func Dir(t testing.TB, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, pkg := range pkgs {
		if err := os.Symlink(Build(t, pkg), filepath.Join(dir, path.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var (
	reachMu sync.Mutex
	reached = map[string]string{} // dir → the copy every user may enter
)

// Reachable returns dir itself when every user may enter it and each
// folder above it, else a copy of it (hard links where the file system
// allows, so it costs no space) in a temporary folder that every user
// may enter, made once per test binary. A stdio upstream started as
// another user than root (shared/upstream/isolation.go) must reach its
// command and files, and a checkout in a private folder (root's home, a
// mktemp -d folder) closes them to it.
func Reachable(t testing.TB, dir string) string {
	t.Helper()
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if openToAll(dir) {
		return dir
	}
	reachMu.Lock()
	defer reachMu.Unlock()
	if c, ok := reached[dir]; ok {
		return c
	}
	parent, err := os.MkdirTemp("", "reachable-")
	if err == nil {
		err = os.Chmod(parent, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(parent, filepath.Base(dir))
	if err := exec.Command("cp", "-al", dir, c).Run(); err != nil {
		os.RemoveAll(c)
		if out, err := exec.Command("cp", "-a", dir, c).CombinedOutput(); err != nil {
			t.Fatalf("copy %s where every user may reach it: %v\n%s", dir, err, out)
		}
	}
	reached[dir] = c
	return c
}

// openToAll reports whether others may enter dir and every folder above
// it.
func openToAll(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
