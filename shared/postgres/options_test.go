package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func defaults() Options {
	return Options{MaxConns: 10, MinConns: 0, MaxConnLifetime: 30 * time.Minute, MaxConnLifetimeJitter: 3 * time.Minute,
		MaxConnIdleTime: 5 * time.Minute, HealthCheckPeriod: time.Minute, ConnectTimeout: 5 * time.Second,
		StatementTimeout: 30 * time.Second, QueryExecMode: "cache_statement"}
}

func TestParseConfigDefaults(t *testing.T) {
	o := defaults()
	o.URL = "postgres://u:p@db.internal:5432/app"
	cfg, err := ParseConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"max conns", cfg.MaxConns, int32(10)},
		{"min conns", cfg.MinConns, int32(0)},
		{"lifetime", cfg.MaxConnLifetime, 30 * time.Minute},
		{"jitter", cfg.MaxConnLifetimeJitter, 3 * time.Minute},
		{"idle", cfg.MaxConnIdleTime, 5 * time.Minute},
		{"health check", cfg.HealthCheckPeriod, time.Minute},
		{"connect timeout", cfg.ConnConfig.ConnectTimeout, 5 * time.Second},
		{"statement timeout", cfg.ConnConfig.RuntimeParams["statement_timeout"], "30000"},
		{"exec mode", cfg.ConnConfig.DefaultQueryExecMode, pgx.QueryExecModeCacheStatement},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseConfigURLWins(t *testing.T) {
	o := defaults()
	o.QueryExecMode = "exec"
	o.URL = "postgres://u:p@db/app?pool_max_conns=25&pool_min_conns=2&statement_timeout=1000&connect_timeout=2"
	cfg, err := ParseConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != 25 || cfg.MinConns != 2 {
		t.Errorf("max/min = %d/%d; want 25/2 from the URL", cfg.MaxConns, cfg.MinConns)
	}
	if got := cfg.ConnConfig.RuntimeParams["statement_timeout"]; got != "1000" {
		t.Errorf("statement_timeout = %q; want 1000 from the URL", got)
	}
	if cfg.ConnConfig.ConnectTimeout != 2*time.Second {
		t.Errorf("connect timeout = %v; want 2s from the URL", cfg.ConnConfig.ConnectTimeout)
	}
	if cfg.ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Errorf("exec mode = %v; want exec from the options", cfg.ConnConfig.DefaultQueryExecMode)
	}
}

func TestParseConfigErrors(t *testing.T) {
	o := defaults()
	if _, err := ParseConfig(o); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("empty URL: err = %v; want it to name DATABASE_URL", err)
	}
	o.URL = "postgres://user:hunter2@db:notaport/app"
	if _, err := ParseConfig(o); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("malformed URL: err = %v; want an error without the password", err)
	}
	o.URL, o.QueryExecMode = "postgres://db/app", "fastest"
	if _, err := ParseConfig(o); err == nil || !strings.Contains(err.Error(), "fastest") {
		t.Errorf("bad exec mode: err = %v", err)
	}
}

func TestValidUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"123e4567-e89b-12d3-a456-426614174000": true,
		"123E4567-E89B-12D3-A456-426614174000": true,
		"123e4567e89b12d3a456426614174000":     false,
		"123e4567-e89b-12d3-a456-42661417400g": false,
		"":                                     false,
		"'; DROP TABLE x; --":                  false,
	} {
		if got := validUUID(s); got != want {
			t.Errorf("validUUID(%q) = %v; want %v", s, got, want)
		}
	}
}
