package main

import (
	"context"
	"flag"

	"mcpproxy.dev/mcpproxy/shared/postgres"
)

// The users of an organization, and the OAuth grants clients hold on an
// instance (docs/oauth.md).

func init() {
	register("user", "add", userAdd)
	register("user", "list", userList)
	register("grant", "list", grantList)
	register("grant", "revoke", grantRevoke)
}

func userAdd(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization ID")
	name := fs.String("name", "", "the user's name")
	email := fs.String("email", "", "the user's email")
	role := fs.String("role", "member", "owner, admin or member")
	db, err := a.open(ctx, fs, args, "org", "name")
	if err != nil {
		return err
	}
	u, err := db.CreateUser(ctx, *org, *name, *email, *role)
	if err != nil {
		return friendly(err)
	}
	return a.print(u, []string{"ID", "NAME", "EMAIL", "ROLE"}, [][]string{{u.ID, u.Name, orDash(u.Email), u.Role}})
}

func userList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization ID")
	db, err := a.open(ctx, fs, args, "org")
	if err != nil {
		return err
	}
	list, err := db.ListUsers(ctx, *org)
	if err != nil {
		return friendly(err)
	}
	rows := make([][]string, len(list))
	for i, u := range list {
		rows[i] = []string{u.ID, u.Name, orDash(u.Email), u.Role}
	}
	return a.print(map[string]any{"users": list}, []string{"ID", "NAME", "EMAIL", "ROLE"}, rows)
}

func grantList(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	instance := fs.String("instance", "", "instance ID")
	db, err := a.open(ctx, fs, args, "instance")
	if err != nil {
		return err
	}
	list, err := db.ListOAuthGrants(ctx, *instance)
	if err != nil {
		return friendly(err)
	}
	if list == nil {
		list = []postgres.GrantRow{}
	}
	rows := make([][]string, len(list))
	for i, g := range list {
		rows[i] = []string{g.ID, orDash(g.ClientName), g.ClientID, g.UserID, orDash(g.APIKeyID), g.CreatedAt.UTC().Format("2006-01-02 15:04"), timeOrDash(g.RevokedAt)}
	}
	return a.print(map[string]any{"grants": list}, []string{"ID", "CLIENT", "CLIENT ID", "USER", "API KEY", "CREATED", "REVOKED"}, rows)
}

func grantRevoke(a *app, ctx context.Context, fs *flag.FlagSet, args []string) error {
	id := fs.String("grant", "", "grant ID")
	db, err := a.open(ctx, fs, args, "grant")
	if err != nil {
		return err
	}
	if err := db.RevokeOAuthGrant(ctx, *id, ""); err != nil {
		return friendly(err)
	}
	return a.print(map[string]any{"id": *id, "revoked": true}, []string{"ID", "REVOKED"}, [][]string{{*id, "true"}})
}
