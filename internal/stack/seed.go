package stack

import (
	"context"
	"encoding/json"
	"fmt"

	"mcpproxy.dev/mcpproxy/shared/postgres"
	"mcpproxy.dev/mcpproxy/shared/tenant"
	"mcpproxy.dev/mcpproxy/shared/upstream"
)

// Seeded is what SeedDemo created.
type Seeded struct {
	OrganizationID, InstanceID, KeyID string
	// Key is the API key itself, shown only here.
	Key string
}

// SeedDemo migrates the database and creates what a local run needs to
// call one Streamable HTTP upstream (no credentials) through the proxy:
// an organization named name, the upstream as its server "demo" with the
// tools it lists now, a config, an instance exposing every tool, and an
// API key. The benchmark and the soak run seed with it.
func SeedDemo(ctx context.Context, db *postgres.DB, name, upstreamURL string) (Seeded, error) {
	if _, err := db.Migrate(ctx); err != nil {
		return Seeded{}, fmt.Errorf("migrate: %w", err)
	}
	org, err := db.CreateOrganization(ctx, name, name+" owner", "owner@example.com")
	if err != nil {
		return Seeded{}, err
	}
	s := postgres.Server{OrganizationID: org.ID, Name: "demo", Transport: tenant.TransportStreamableHTTP,
		URL: upstreamURL, AuthType: tenant.AuthNone}
	listed, err := upstream.Discover(ctx, tenant.Upstream{Name: s.Name, Transport: s.Transport, URL: s.URL, AuthType: s.AuthType})
	if err != nil {
		return Seeded{}, fmt.Errorf("discover the upstream's tools: %w", err)
	}
	var tools []postgres.Tool
	for _, t := range listed {
		schema, _ := json.Marshal(t.InputSchema)
		tools = append(tools, postgres.Tool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	server, err := db.CreateServer(ctx, s, tools)
	if err != nil {
		return Seeded{}, err
	}
	cfg, err := db.CreateConfig(ctx, org.ID, server.ID, name+" config", tenant.Credentials{})
	if err != nil {
		return Seeded{}, err
	}
	inst, err := db.CreateInstance(ctx, org.ID, org.OwnerUserID, name+" instance", []postgres.Selection{{ConfigID: cfg.ID}})
	if err != nil {
		return Seeded{}, err
	}
	row, key, err := db.CreateAPIKey(ctx, inst.ID, org.OwnerUserID, name, nil)
	if err != nil {
		return Seeded{}, err
	}
	return Seeded{OrganizationID: org.ID, InstanceID: inst.ID, KeyID: row.ID, Key: key}, nil
}
