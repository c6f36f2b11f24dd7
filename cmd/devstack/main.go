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
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"mcpproxy.dev/mcpproxy/internal/stack"
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

type services struct {
	dir   string
	keep  bool
	quiet bool
	stops []func()
}

func (s *services) logf(format string, args ...any) {
	if !s.quiet {
		fmt.Fprintf(os.Stderr, "devstack: "+format+"\n", args...)
	}
}

func run(dir string, keep, quiet bool, command []string) int {
	s := &services{dir: dir, keep: keep, quiet: quiet}
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

func (s *services) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

func (s *services) startPostgres(ctx context.Context) (string, error) {
	pg, err := stack.StartPostgres(ctx, stack.PostgresOptions{Dir: s.dir, Keep: s.keep, Logf: s.logf})
	if err != nil {
		return "", err
	}
	s.stops = append(s.stops, pg.Close)
	return pg.URL(), nil
}

func (s *services) startFirestore(ctx context.Context) (string, error) {
	fs, err := stack.StartFirestore(ctx, stack.FirestoreOptions{Dir: s.dir, Project: os.Getenv("GOOGLE_CLOUD_PROJECT"), Logf: s.logf})
	if err != nil {
		return "", err
	}
	s.stops = append(s.stops, fs.Close)
	return fs.Host(), nil
}
