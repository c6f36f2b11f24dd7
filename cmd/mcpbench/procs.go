package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"mcpproxy.dev/mcpproxy/internal/stack"
	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// session is what a benchmark run stands on: a folder for the process
// logs, an encryption key, the database (Postgres of devstack), and the
// processes launch starts, which close stops.
type session struct {
	dir    string
	encKey string
	db     *postgres.DB
	procs  []*proc
	logf   func(format string, args ...any)
}

// newSession opens a session; the caller must close it. name prefixes
// its log lines and folder.
func newSession(ctx context.Context, name string, stderr io.Writer) (*session, error) {
	s := &session{encKey: newEncryptionKey(),
		logf: func(format string, args ...any) { fmt.Fprintf(stderr, name+": "+format+"\n", args...) }}
	var err error
	if s.dir, err = os.MkdirTemp("", strings.ReplaceAll(name, " ", "-")+"-"); err != nil {
		return nil, err
	}
	s.logf("process logs in %s", s.dir)
	keys, err := keyring.Parse(s.encKey)
	if err != nil {
		return nil, err
	}
	if s.db, err = postgres.Open(ctx, postgres.Options{URL: os.Getenv("DATABASE_URL")}, keys); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts a process that close stops.
func (s *session) launch(name, path string, args, env []string) (*proc, error) {
	p, err := start(s.dir, name, path, args, env)
	if err == nil {
		s.procs = append(s.procs, p)
	}
	return p, err
}

// close stops the session's processes and closes the database.
func (s *session) close() {
	for _, p := range s.procs {
		p.stop(10 * time.Second)
	}
	s.db.Close()
}

// proc is a process the benchmark started, with its output in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs a binary with extra environment, its output going to a file
// in dir through a pipe, as a container's output reaches Cloud Logging on
// Cloud Run: a process writing its log lines to a pipe pays what it pays
// deployed (a write to a file costs about twice as much here).
func start(dir, name, path string, args, env []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	// Not an *os.File: exec gives the process one pipe for both, which
	// it drains into f.
	out := struct{ io.Writer }{f}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits, killing the process after limit.
func (p *proc) stop(limit time.Duration) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
	}
}

var urlPattern = regexp.MustCompile(`http://[^\s)]+`)

// url waits for the first URL the process prints.
func (p *proc) url(ctx context.Context) (string, error) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.log)
		if u := urlPattern.Find(b); u != nil {
			return string(u), nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited: %s", p.name, tail(p.log))
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s printed no URL: %s", p.name, tail(p.log))
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, p *proc, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s: %s", p.name, addr, tail(p.log))
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %s", p.name, tail(p.log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freeAddr is a free loopback address.
func freeAddr() (string, error) {
	port, err := stack.FreePort()
	return fmt.Sprintf("127.0.0.1:%d", port), err
}

// serveReverseProxy is `mcpbench reverseproxy -target URL`: the bare
// reverse proxy the benchmark compares the proxy with, in a process of its
// own. Its keep-alive pool is sized to the benchmark's concurrency, as the
// proxy's is (UPSTREAM_MAX_IDLE_CONNS_PER_HOST, default 100): Go's default
// of 2 idle connections per host would make it reconnect under load.
func serveReverseProxy(args []string) int {
	if len(args) != 2 || args[0] != "-target" {
		fmt.Fprintln(os.Stderr, "usage: mcpbench reverseproxy -target URL")
		return 2
	}
	target, err := url.Parse(args[1])
	if err != nil || target.Host == "" {
		fmt.Fprintln(os.Stderr, "mcpbench reverseproxy: bad -target")
		return 2
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 100, MaxIdleConns: 1000, IdleConnTimeout: 90 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpbench reverseproxy:", err)
		return 1
	}
	fmt.Printf("mcpbench reverseproxy: http://%s%s\n", ln.Addr(), target.Path)
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "mcpbench reverseproxy:", err)
		return 1
	}
	return 0
}
