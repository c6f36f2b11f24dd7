package postgres

import "embed"

// Migrations holds the schema, one goose migration per file under
// migrations/; package migrate applies them.
//
//go:embed migrations/*.sql
var Migrations embed.FS
