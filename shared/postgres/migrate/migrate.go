// Package migrate applies the schema of package postgres (its
// migrations folder) with goose. It is apart from postgres so that the
// functions, which never migrate (deploy.sh and mcpadmin do), do not link
// goose in.
package migrate

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// Migration is one applied or pending schema version.
type Migration struct {
	Version int64  `json:"version"`
	Source  string `json:"source"`
	Applied bool   `json:"applied"`
}

func provider(db *postgres.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(postgres.Migrations, "migrations")
	if err != nil {
		return nil, err
	}
	// A session-level advisory lock lets several deploys migrate at once
	// safely: one applies, the others wait and find nothing to do.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(db.Pool), sub,
		goose.WithSessionLocker(locker))
}

// Up applies every pending migration and returns those it applied.
func Up(ctx context.Context, db *postgres.DB) ([]Migration, error) {
	p, err := provider(db)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer p.Close()
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	applied := make([]Migration, 0, len(results))
	for _, r := range results {
		applied = append(applied, Migration{Version: r.Source.Version, Source: r.Source.Path, Applied: true})
	}
	return applied, nil
}

// Status lists every known migration and whether it is applied.
func Status(ctx context.Context, db *postgres.DB) ([]Migration, error) {
	p, err := provider(db)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	defer p.Close()
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]Migration, 0, len(status))
	for _, s := range status {
		out = append(out, Migration{Version: s.Source.Version, Source: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}
