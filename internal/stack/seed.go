package stack

import (
	"context"
	"encoding/json"
	"fmt"

	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/postgres/migrate"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// Tenant is what Seed creates: an organization, a server and a config
// for each of Servers, one instance over all of them, and an API key of
// that instance.
type Tenant struct {
	// OrganizationID seeds into this organization instead of creating
	// one; Organization, OwnerName, OwnerEmail and Owned are then unused.
	OrganizationID        string
	Organization          string // the organization's name
	OwnerName, OwnerEmail string // its owner; postgres.CreateOrganization's defaults when empty
	Instance              string // the instance's name
	Key                   string // the key's name
	// Owned makes the owner the user of the instance and the key; without
	// it they belong to the whole organization.
	Owned   bool
	Servers []Server
}

// Server is one upstream of a Tenant.
type Server struct {
	// Server is registered with OrganizationID set by Seed.
	Server postgres.Server
	// Tools are the server's tools; nil asks the upstream for those it
	// lists now (it must be reachable).
	Tools []postgres.Tool
	// Config names the server's config, which holds Credentials; OAuth
	// tokens among them are stored as mcpadmin stores them (SetOAuth).
	Config      string
	Credentials tenant.Credentials
	// Select are the tools the instance exposes; nil exposes every one.
	Select []string
}

// Seeded is what Seed created, the servers and configs in the order of
// Tenant.Servers.
type Seeded struct {
	// Organization holds only its ID when Tenant.OrganizationID named it.
	Organization postgres.Organization
	Servers      []postgres.Server
	Configs      []postgres.Config
	Instance     postgres.Instance
	KeyID        string
	// Key is the API key itself, shown only here.
	Key string
}

// Seed creates t in a migrated database.
func Seed(ctx context.Context, db *postgres.DB, t Tenant) (Seeded, error) {
	var s Seeded
	var err error
	if t.OrganizationID != "" {
		s.Organization.ID = t.OrganizationID
	} else if s.Organization, err = db.CreateOrganization(ctx, t.Organization, t.OwnerName, t.OwnerEmail); err != nil {
		return s, err
	}
	var user string
	if t.Owned && t.OrganizationID == "" {
		user = s.Organization.OwnerUserID
	}
	var sel []postgres.Selection
	for _, ts := range t.Servers {
		ts.Server.OrganizationID = s.Organization.ID
		tools := ts.Tools
		if tools == nil {
			if tools, err = discover(ctx, ts.Server); err != nil {
				return s, fmt.Errorf("discover the tools of %s: %w", ts.Server.Name, err)
			}
		}
		server, err := db.CreateServer(ctx, ts.Server, tools)
		if err != nil {
			return s, fmt.Errorf("server %s: %w", ts.Server.Name, err)
		}
		creds := ts.Credentials
		creds.OAuth = nil
		cfg, err := db.CreateConfig(ctx, s.Organization.ID, server.ID, ts.Config, creds)
		if err != nil {
			return s, fmt.Errorf("config of %s: %w", ts.Server.Name, err)
		}
		if ts.Credentials.OAuth != nil {
			if _, err := db.SetOAuth(ctx, cfg.ID, server.ID, *ts.Credentials.OAuth); err != nil {
				return s, fmt.Errorf("OAuth tokens of %s: %w", ts.Server.Name, err)
			}
		}
		s.Servers = append(s.Servers, server)
		s.Configs = append(s.Configs, cfg)
		sel = append(sel, postgres.Selection{ConfigID: cfg.ID, Tools: ts.Select})
	}
	if s.Instance, err = db.CreateInstance(ctx, s.Organization.ID, user, t.Instance, sel); err != nil {
		return s, err
	}
	row, key, err := db.CreateAPIKey(ctx, s.Instance.ID, user, t.Key, nil)
	if err != nil {
		return s, err
	}
	s.KeyID, s.Key = row.ID, key
	return s, nil
}

// discover lists the tools an upstream serves now, as mcpadmin registers
// them.
func discover(ctx context.Context, s postgres.Server) ([]postgres.Tool, error) {
	listed, err := upstream.Discover(ctx, tenant.Upstream{Name: s.Name, Transport: s.Transport, URL: s.URL, AuthType: s.AuthType})
	if err != nil {
		return nil, err
	}
	tools := []postgres.Tool{}
	for _, t := range listed {
		schema, _ := json.Marshal(t.InputSchema)
		tools = append(tools, postgres.Tool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	return tools, nil
}

// SeedDemo migrates the database and creates what a local run needs to
// call one Streamable HTTP upstream (no credentials) through the proxy:
// an organization named name, the upstream as its server "demo" with the
// tools it lists now, a config, an instance exposing every tool, and an
// API key, all the owner's. The benchmark and the soak run seed with it.
func SeedDemo(ctx context.Context, db *postgres.DB, name, upstreamURL string) (Seeded, error) {
	if _, err := migrate.Up(ctx, db); err != nil {
		return Seeded{}, fmt.Errorf("migrate: %w", err)
	}
	return Seed(ctx, db, Tenant{Organization: name, OwnerName: name + " owner", OwnerEmail: "owner@example.com",
		Instance: name + " instance", Key: name, Owned: true,
		Servers: []Server{{Server: postgres.Server{Name: "demo", Transport: tenant.TransportStreamableHTTP,
			URL: upstreamURL, AuthType: tenant.AuthNone}, Config: name + " config"}}})
}
