// Command devstack starts the services the functions need on this machine
// (a throwaway Postgres and the Firestore emulator), runs a command with
// DATABASE_URL, FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT pointing at
// them, and stops everything it started when the command ends or on
// Ctrl-C. A service already given in the environment is used as it is.
//
//	devstack [-dir .devstack] [-keep] -- COMMAND [ARG...]
//
// The exit status is the command's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", ".devstack", "folder for the services' data (git-ignored)")
	keep := flag.Bool("keep", false, "keep the Postgres data folder after the run")
	quiet := flag.Bool("quiet", false, "print only errors")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: devstack [-dir DIR] [-keep] [-quiet] -- COMMAND [ARG...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(*dir, *keep, *quiet, flag.Args()))
}

type stack struct {
	dir   string
	keep  bool
	quiet bool
	stops []func()
}

func (s *stack) logf(format string, args ...any) {
	if !s.quiet {
		fmt.Fprintf(os.Stderr, "devstack: "+format+"\n", args...)
	}
}

func run(dir string, keep, quiet bool, command []string) int {
	s := &stack{dir: dir, keep: keep, quiet: quiet}
	defer s.stop()

	// Ctrl-C reaches the whole foreground process group, the command
	// included; devstack waits for the command, then cleans up.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()

	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		return 1
	}
	if os.Getenv("DATABASE_URL") == "" {
		url, err := s.startPostgres(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "devstack: postgres:", err)
			return 1
		}
		os.Setenv("DATABASE_URL", url)
	} else {
		s.logf("using DATABASE_URL from the environment")
	}
	if os.Getenv("GOOGLE_CLOUD_PROJECT") == "" {
		os.Setenv("GOOGLE_CLOUD_PROJECT", "mcp-proxy-dev")
	}
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		host, err := s.startFirestore(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "devstack: firestore emulator:", err)
			return 1
		}
		os.Setenv("FIRESTORE_EMULATOR_HOST", host)
	} else {
		s.logf("using FIRESTORE_EMULATOR_HOST from the environment")
	}

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(err)
	case <-ctx.Done():
		// The terminal sent the command the signal too; give it time to
		// stop on its own before insisting.
		select {
		case err := <-done:
			return exitCode(err)
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			return 130
		}
	}
}

func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if code := exit.ExitCode(); code >= 0 {
			return code
		}
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		return 1
	}
	return 0
}

func (s *stack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// postgresBin finds the directory of initdb and postgres.
func postgresBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", errors.New("initdb not found: install PostgreSQL server binaries (Debian: apt-get install postgresql)")
}

// asPostgresUser wraps a command so that it runs as the postgres system
// user when we are root: initdb and postgres refuse to run as root.
func asPostgresUser(name string, args ...string) (*exec.Cmd, error) {
	if os.Geteuid() != 0 {
		return exec.Command(name, args...), nil
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return nil, errors.New("running as root and there is no 'postgres' system user to run Postgres as (Debian: apt-get install postgresql creates it)")
	}
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...), nil
}

func (s *stack) startPostgres(ctx context.Context) (string, error) {
	bin, err := postgresBin()
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(s.dir)
	if err != nil {
		return "", err
	}
	data, err := os.MkdirTemp(abs, "pg-")
	if err != nil {
		return "", err
	}
	if !s.keep {
		s.stops = append(s.stops, func() { os.RemoveAll(data) })
	}
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err == nil {
			uid, _ := strconv.Atoi(pg.Uid)
			gid, _ := strconv.Atoi(pg.Gid)
			if err := os.Chown(data, uid, gid); err != nil {
				return "", err
			}
			// The postgres user must reach the folder through its parents.
			os.Chmod(abs, 0o755)
		}
	}
	os.Chmod(data, 0o700)

	initdb, err := asPostgresUser(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions")
	if err != nil {
		return "", err
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	logFile, err := os.Create(filepath.Join(abs, fmt.Sprintf("postgres-%d.log", port)))
	if err != nil {
		return "", err
	}
	// Durability is not wanted from a throwaway database; speed is.
	pg, err := asPostgresUser(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+data,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_preload_libraries=pg_stat_statements")
	if err != nil {
		return "", err
	}
	pg.Stdout, pg.Stderr = logFile, logFile
	pg.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := pg.Start(); err != nil {
		return "", fmt.Errorf("start postgres: %w", err)
	}
	s.stops = append(s.stops, func() {
		// SIGINT is Postgres's fast shutdown; runuser forwards it.
		syscall.Kill(-pg.Process.Pid, syscall.SIGINT)
		waitOrKill(pg, 10*time.Second)
		logFile.Close()
	})
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := waitFor(ctx, 30*time.Second, func() bool {
		return exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port)).Run() == nil
	}); err != nil {
		return "", fmt.Errorf("postgres did not become ready (log: %s): %w", logFile.Name(), err)
	}
	psql := exec.Command(filepath.Join(bin, "psql"), "-q", "-v", "ON_ERROR_STOP=1", url, "-c", "CREATE DATABASE mcpproxy", "-c", "\\c mcpproxy", "-c", "CREATE EXTENSION pg_stat_statements")
	if out, err := psql.CombinedOutput(); err != nil {
		return "", fmt.Errorf("create database: %v\n%s", err, out)
	}
	s.logf("postgres on 127.0.0.1:%d (data %s)", port, data)
	return strings.Replace(url, "/postgres?", "/mcpproxy?", 1), nil
}

func (s *stack) startFirestore(ctx context.Context) (string, error) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return "", errors.New("gcloud not found: install the Google Cloud CLI with its Firestore emulator (Debian: apt-get install google-cloud-cli google-cloud-cli-firestore-emulator)")
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	abs, _ := filepath.Abs(s.dir)
	logFile, err := os.Create(filepath.Join(abs, fmt.Sprintf("firestore-%d.log", port)))
	if err != nil {
		return "", err
	}
	cmd := exec.Command(gcloud, "emulators", "firestore", "start", "--host-port="+host, "--quiet")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: killing the gcloud wrapper alone would leave
	// the emulator's Java process running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	s.stops = append(s.stops, func() {
		c := http.Client{Timeout: 2 * time.Second}
		if resp, err := c.Post("http://"+host+"/shutdown", "text/plain", nil); err == nil {
			resp.Body.Close()
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		waitOrKill(cmd, 5*time.Second)
		logFile.Close()
	})
	client := http.Client{Timeout: time.Second}
	if err := waitFor(ctx, 60*time.Second, func() bool {
		resp, err := client.Get("http://" + host + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		if strings.Contains(readFile(logFile.Name()), "not installed") {
			return "", errors.New("the Firestore emulator component is not installed (gcloud components install cloud-firestore-emulator, or Debian: apt-get install google-cloud-cli-firestore-emulator)")
		}
		return "", fmt.Errorf("did not become ready (log: %s): %w", logFile.Name(), err)
	}
	s.logf("firestore emulator on %s", host)
	return host, nil
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

func waitFor(ctx context.Context, limit time.Duration, ready func() bool) error {
	deadline := time.Now().Add(limit)
	for !ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// waitOrKill waits for a process group's leader, killing the group if it
// has not stopped in time.
func waitOrKill(cmd *exec.Cmd, limit time.Duration) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	// Children that outlived the leader (the emulator's Java process).
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
