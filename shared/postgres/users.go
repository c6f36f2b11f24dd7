package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// User is a member of an organization.
type User struct {
	ID             string    `json:"id"`
	OrganizationID string    `json:"organization_id"`
	Name           string    `json:"name"`
	Email          string    `json:"email"`
	Role           string    `json:"role"`
	CreatedAt      time.Time `json:"created_at"`
}

// CreateUser adds a user to an organization. role is OWNER, ADMIN or
// MEMBER ("" for MEMBER).
func (db *DB) CreateUser(ctx context.Context, orgID, name, email, role string) (User, error) {
	if !validUUID(orgID) {
		return User{}, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	if role == "" {
		role = "MEMBER"
	}
	u := User{OrganizationID: orgID, Name: name, Email: strings.TrimSpace(email), Role: strings.ToUpper(role)}
	err := db.Pool.QueryRow(ctx, `
INSERT INTO users (organization_id, name, email, role) VALUES ($1, $2, NULLIF($3, ''), $4) RETURNING id::text, created_at`,
		orgID, u.Name, u.Email, u.Role).Scan(&u.ID, &u.CreatedAt)
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", describeConstraint(notFoundIfForeignKey(err, "organization "+orgID)))
	}
	return u, nil
}

// ListUsers lists the users of an organization, oldest first.
func (db *DB) ListUsers(ctx context.Context, orgID string) ([]User, error) {
	if !validUUID(orgID) {
		return nil, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `
SELECT id::text, organization_id::text, name, coalesce(email, ''), role, created_at
FROM users WHERE organization_id = $1 ORDER BY created_at, id`, orgID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		err := r.Scan(&u.ID, &u.OrganizationID, &u.Name, &u.Email, &u.Role, &u.CreatedAt)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// UserInstance is an instance a user may allow a client to use.
type UserInstance struct {
	UserID           string
	InstanceID       string
	InstanceName     string
	OrganizationName string
}

// InstancesForEmail lists, for every user with the email (any case), the
// live instances of the user's organization that belong to the user or to
// the whole organization: what a user signed in with that email may
// allow a client to use.
func (db *DB) InstancesForEmail(ctx context.Context, email string) ([]UserInstance, error) {
	rows, _ := db.Pool.Query(ctx, `
SELECT u.id::text, i.id::text, i.name, o.name
FROM users u
JOIN organizations o ON o.id = u.organization_id
JOIN user_mcp_server_instances i ON i.organization_id = u.organization_id
WHERE lower(u.email) = lower($1) AND i.deleted_at IS NULL AND (i.user_id IS NULL OR i.user_id = u.id)
ORDER BY o.name, i.name, i.id`, strings.TrimSpace(email))
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UserInstance, error) {
		var u UserInstance
		err := r.Scan(&u.UserID, &u.InstanceID, &u.InstanceName, &u.OrganizationName)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("instances for email: %w", err)
	}
	return out, nil
}
