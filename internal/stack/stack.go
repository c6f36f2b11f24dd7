// Package stack runs the services the functions need on this machine: a
// throwaway Postgres and the Firestore emulator. cmd/devstack starts them
// around a command; the soak run (cmd/mcpsoak) also stops and restarts
// them, at the same address and with their data, to play an outage.
package stack

import (
	"net"
	"os"
	"path/filepath"
)

// Logf receives progress lines; nil discards them.
type Logf func(format string, args ...any)

func (l Logf) printf(format string, args ...any) {
	if l != nil {
		l(format, args...)
	}
}

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// OpenToOthers makes dir, a folder under the system's temporary folder
// (a test's t.TempDir), and its parents up to that one reachable by other
// users: when root, Postgres runs as the postgres user, who must reach its
// data folder through every parent, and t.TempDir's parent is private.
func OpenToOthers(dir string) error {
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}
