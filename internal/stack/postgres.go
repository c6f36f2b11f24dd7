package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mcpproxy.dev/mcpproxy/internal/procgroup"
	"mcpproxy.dev/mcpproxy/internal/wait"
)

// PostgresOptions configure StartPostgres.
type PostgresOptions struct {
	// Dir holds the data folder (a new pg-* folder in it) and the log.
	Dir string
	// Keep leaves the data folder in place after Close.
	Keep bool
	Logf Logf
}

// Postgres is a throwaway Postgres server with a database "mcpproxy".
// It can be stopped and started again on the same data folder and port.
type Postgres struct {
	opts PostgresOptions
	bin  string
	data string
	port int
	log  string
	proc *procgroup.Process
}

// StartPostgres creates a data folder with initdb, starts Postgres on a
// free loopback port and creates the database "mcpproxy" (with
// pg_stat_statements).
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	parent, prefix, err := dataParent(abs, opts.Logf)
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, err
	}
	p := &Postgres{opts: opts, bin: bin, data: data}
	if err := p.init(); err != nil {
		p.Close()
		return nil, err
	}
	if p.port, err = FreePort(); err != nil {
		p.Close()
		return nil, err
	}
	p.log = filepath.Join(abs, fmt.Sprintf("postgres-%d.log", p.port))
	if err := p.Start(ctx); err != nil {
		p.Close()
		return nil, err
	}
	psql := exec.Command(filepath.Join(bin, "psql"), "-q", "-v", "ON_ERROR_STOP=1", p.url("postgres"),
		"-c", "CREATE DATABASE mcpproxy", "-c", "\\c mcpproxy", "-c", "CREATE EXTENSION pg_stat_statements")
	if out, err := psql.CombinedOutput(); err != nil {
		p.Close()
		return nil, fmt.Errorf("create database: %v\n%s", err, out)
	}
	opts.Logf.printf("postgres on 127.0.0.1:%d (data %s)", p.port, data)
	return p, nil
}

// dataParent is the folder to make the data folder in, and the data
// folder's name prefix: dir itself, unless Postgres runs as the postgres
// user (we are root) and that user cannot enter dir through its parents,
// as in a clone in root's home (0700) or in a mktemp -d folder. The data
// folder then goes to the temporary folder, where it is the postgres
// user's alone (0700) and is removed by Close like any other.
func dataParent(dir string, logf Logf) (parent, prefix string, err error) {
	if os.Geteuid() != 0 {
		return dir, "pg-", nil
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		return dir, "pg-", nil // asPostgresUser says what is missing
	}
	uid, _ := strconv.Atoi(pg.Uid)
	// .devstack is ours to open; its parents are the user's.
	os.Chmod(dir, 0o755)
	if enterable(dir, uid) {
		return dir, "pg-", nil
	}
	for _, tmp := range []string{os.TempDir(), "/tmp"} {
		if enterable(tmp, uid) {
			logf.printf("the postgres user cannot enter %s: its data goes to %s", dir, tmp)
			return tmp, "mcpproxy-pg-", nil
		}
	}
	return "", "", fmt.Errorf("Postgres runs as the postgres user, which can enter neither %s nor %s: "+
		"give it a way in (chmod o+x on each parent) or set TMPDIR to a folder it can enter", dir, os.TempDir())
}

// enterable reports whether the user uid may enter dir: every folder from
// the root down to dir lets others (or that user, its owner) search it.
func enterable(dir string, uid int) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		owner := ok && int(st.Uid) == uid
		if !(fi.Mode().Perm()&0o001 != 0 || owner && fi.Mode().Perm()&0o100 != 0) {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

func (p *Postgres) init() error {
	if os.Geteuid() == 0 {
		if pg, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(pg.Uid)
			gid, _ := strconv.Atoi(pg.Gid)
			if err := os.Chown(p.data, uid, gid); err != nil {
				return err
			}
		}
	}
	os.Chmod(p.data, 0o700)
	initdb, err := asPostgresUser(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions")
	if err != nil {
		return err
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// URL is the libpq URL of the database "mcpproxy".
func (p *Postgres) URL() string { return p.url("mcpproxy") }

func (p *Postgres) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// Port is the port Postgres listens on, the same after a restart.
func (p *Postgres) Port() int { return p.port }

// Start starts the server on its data folder and port and waits until it
// takes connections. It is how a stopped server comes back.
func (p *Postgres) Start(ctx context.Context) error {
	if p.proc != nil && !p.proc.Exited() {
		return errors.New("postgres is running")
	}
	logFile, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	// Durability is not wanted from a throwaway database; speed is. A fast
	// shutdown still writes a checkpoint, so a restart loses nothing that
	// was committed.
	cmd, err := asPostgresUser(filepath.Join(p.bin, "postgres"), "-D", p.data, "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+p.data,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_preload_libraries=pg_stat_statements")
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if p.proc, err = procgroup.Start(cmd); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := wait.Until(ctx, 30*time.Second, func() bool {
		return !p.proc.Exited() && exec.Command(filepath.Join(p.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port)).Run() == nil
	}); err != nil {
		return fmt.Errorf("postgres did not become ready (log: %s): %w", p.log, err)
	}
	return nil
}

// Stop shuts the server down fast: open transactions roll back, sessions
// are cut, committed data stays. It returns once the server has exited.
func (p *Postgres) Stop() error {
	if p.proc == nil || p.proc.Exited() {
		return nil
	}
	// SIGINT is Postgres's fast shutdown; runuser forwards it.
	if !p.proc.Stop(syscall.SIGINT, 20*time.Second) {
		return errors.New("postgres did not stop within 20 s; killed")
	}
	return nil
}

// Close stops the server and removes its data folder unless Keep.
func (p *Postgres) Close() {
	if p.proc != nil && !p.proc.Exited() {
		p.proc.Stop(syscall.SIGINT, 10*time.Second)
	}
	if !p.opts.Keep {
		os.RemoveAll(p.data)
	}
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
