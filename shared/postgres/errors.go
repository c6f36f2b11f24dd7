package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"mcpproxy.dev/mcpproxy/shared/keyring"
	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// notFoundIfNoRows turns pgx.ErrNoRows into tenant.ErrNotFound about what.
func notFoundIfNoRows(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, tenant.ErrNotFound)
	}
	return err
}

// notFoundIfForeignKey turns a foreign key violation into tenant.ErrNotFound
// about what the key pointed at.
func notFoundIfForeignKey(err error, what string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return fmt.Errorf("%s: %w", what, tenant.ErrNotFound)
	}
	return err
}

// describeConstraint words the constraint violations an operator can cause.
func describeConstraint(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "23505":
		return errors.New("the name is already taken in this organization")
	case "23503":
		return fmt.Errorf("organization: %w", tenant.ErrNotFound)
	}
	return err
}

func keyIDOf(sealed []byte) string {
	id, err := keyring.KeyID(sealed)
	if err != nil {
		return "?"
	}
	return id
}
