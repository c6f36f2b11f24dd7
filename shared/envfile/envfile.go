// Package envfile reads a function's configuration from the environment
// with go-envconfig, where any variable NAME may instead be given as
// NAME_FILE, the path of a file holding the value (a Secret Manager
// volume mount in deployment). The functions take their secrets so,
// never from their environment: the environment of a process is one more
// place a process next to it may read (DESIGN.md, "Isolation and
// limits"), and a file's mode says who may read it.
package envfile

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/sethvargo/go-envconfig"
)

// Process fills target (a pointer to a struct with env tags) from the
// environment and returns the paths of the files it read values from.
// NAME and NAME_FILE both set is an error, as is a file that cannot be
// read. A file's trailing newlines are not part of its value.
func Process(ctx context.Context, target any) (files []string, err error) {
	l := &lookuper{}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: l}); err != nil {
		return nil, err
	}
	if l.err != nil {
		return nil, l.err
	}
	return l.files, nil
}

// lookuper is the environment with NAME_FILE read. go-envconfig's
// Lookuper has no error result, so the first error is kept for Process.
type lookuper struct {
	mu    sync.Mutex
	files []string
	err   error
}

func (l *lookuper) Lookup(key string) (string, bool) {
	value, set := os.LookupEnv(key)
	path := os.Getenv(key + "_FILE")
	if path == "" {
		return value, set
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if value != "" {
		l.fail(fmt.Errorf("both %s and %s_FILE are set: set one", key, key))
		return "", false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		l.fail(fmt.Errorf("%s_FILE: %w", key, err))
		return "", false
	}
	if !slices.Contains(l.files, path) {
		l.files = append(l.files, path)
	}
	return strings.TrimRight(string(b), "\r\n"), true
}

func (l *lookuper) fail(err error) {
	if l.err == nil {
		l.err = err
	}
}
