package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// The operations below serve the admin CLI: operators have no web console.

// Organization is an organization with the owner user created with it.
type Organization struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	OwnerUserID string    `json:"owner_user_id"`
	CreatedAt   time.Time `json:"created_at"`
}

// CreateOrganization creates an organization and its owner user.
func (db *DB) CreateOrganization(ctx context.Context, name, ownerName, ownerEmail string) (Organization, error) {
	o := Organization{Name: strings.TrimSpace(name)}
	if o.Name == "" {
		return o, errors.New("organization name is empty")
	}
	if ownerName == "" {
		ownerName = "owner"
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO organizations (name) VALUES ($1) RETURNING id::text, created_at`,
			o.Name).Scan(&o.ID, &o.CreatedAt); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO users (organization_id, name, email, role) VALUES ($1, $2, NULLIF($3, ''), 'OWNER') RETURNING id::text`,
			o.ID, ownerName, ownerEmail).Scan(&o.OwnerUserID)
	})
	if err != nil {
		return o, fmt.Errorf("create organization: %w", err)
	}
	return o, nil
}

// ListOrganizations lists organizations with their first owner.
func (db *DB) ListOrganizations(ctx context.Context) ([]Organization, error) {
	rows, _ := db.Pool.Query(ctx, `
SELECT o.id::text, o.name, COALESCE((SELECT u.id::text FROM users u WHERE u.organization_id = o.id AND u.role = 'OWNER' ORDER BY u.created_at, u.id LIMIT 1), ''), o.created_at
FROM organizations o ORDER BY o.created_at, o.id`)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Organization, error) {
		var o Organization
		return o, r.Scan(&o.ID, &o.Name, &o.OwnerUserID, &o.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("list organizations: %w", err)
	}
	return out, nil
}

// Server is a registered upstream MCP server.
type Server struct {
	ID             string           `json:"id"`
	OrganizationID string           `json:"organization_id"`
	Name           string           `json:"name"`
	Namespace      string           `json:"namespace"`
	Transport      tenant.Transport `json:"transport"`
	URL            string           `json:"url,omitempty"`
	AllowHTTP      bool             `json:"allow_http"` // a plain http URL off this machine is allowed
	Command        string           `json:"command,omitempty"`
	Args           []string         `json:"args,omitempty"`
	EnvVarNames    []string         `json:"env_var_names,omitempty"`
	HeaderNames    []string         `json:"header_names,omitempty"`
	AuthType       tenant.AuthType  `json:"auth_type"`
	CreatedAt      time.Time        `json:"created_at"`
}

// Validate checks a server definition before it is stored.
func (s *Server) Validate() error {
	s.Name = strings.TrimSpace(s.Name)
	switch {
	case s.Name == "":
		return errors.New("server name is empty")
	case len(tenant.Namespace(s.Name)) > tenant.MaxNamespace:
		return fmt.Errorf("server name is longer than %d characters", tenant.MaxNamespace)
	}
	switch s.Transport {
	case tenant.TransportStdio:
		if s.Command == "" {
			return errors.New("a stdio server needs a command")
		}
		if s.URL != "" {
			return errors.New("a stdio server takes a command, not a URL")
		}
		if s.AllowHTTP {
			return errors.New("a stdio server has no URL to allow plain http for")
		}
	case tenant.TransportSSE, tenant.TransportStreamableHTTP:
		if s.Command != "" || len(s.Args) > 0 {
			return errors.New("an HTTP server takes a URL, not a command")
		}
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bad URL %q: want an absolute http or https URL", s.URL)
		}
	default:
		return fmt.Errorf("unknown transport %q", s.Transport)
	}
	if _, err := tenant.ParseAuthType(string(s.AuthType)); err != nil {
		return err
	}
	if s.AuthType == "" {
		s.AuthType = tenant.AuthNone
	}
	for _, h := range s.HeaderNames {
		if !validHeaderName(h) {
			return fmt.Errorf("bad header name %q", h)
		}
	}
	return nil
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}

// Tool is a tool an upstream server lists.
type Tool struct {
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema,omitempty"`
	Enabled      bool            `json:"enabled"`
	MissingSince *time.Time      `json:"missing_since,omitempty"`
}

const serverColumns = `id::text, organization_id::text, name, transport_type, COALESCE(url, ''), allow_http, COALESCE(command, ''), args, env_var_names, header_names, auth_type, created_at`

func scanServer(r pgx.Row) (Server, error) {
	var s Server
	err := r.Scan(&s.ID, &s.OrganizationID, &s.Name, &s.Transport, &s.URL, &s.AllowHTTP, &s.Command, &s.Args, &s.EnvVarNames, &s.HeaderNames, &s.AuthType, &s.CreatedAt)
	s.Namespace = tenant.Namespace(s.Name)
	return s, err
}

// CreateServer stores a server and the tools discovered on it, in one
// transaction.
func (db *DB) CreateServer(ctx context.Context, s Server, tools []Tool) (Server, error) {
	if err := s.Validate(); err != nil {
		return s, err
	}
	if !validUUID(s.OrganizationID) {
		return s, fmt.Errorf("organization %q: %w", s.OrganizationID, tenant.ErrNotFound)
	}
	var out Server
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var err error
		out, err = scanServer(tx.QueryRow(ctx, `
INSERT INTO mcp_servers (organization_id, name, transport_type, url, command, args, env_var_names, header_names, auth_type, allow_http)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6, $7, $8, $9, $10)
RETURNING `+serverColumns,
			s.OrganizationID, s.Name, s.Transport, s.URL, s.Command, nonNil(s.Args), nonNil(s.EnvVarNames), nonNil(s.HeaderNames), s.AuthType, s.AllowHTTP))
		if err != nil {
			return err
		}
		_, err = upsertTools(ctx, tx, out.ID, tools)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("create server %q: %w", s.Name, describeConstraint(err))
	}
	return out, nil
}

// GetServer returns one server.
func (db *DB) GetServer(ctx context.Context, id string) (Server, error) {
	if !validUUID(id) {
		return Server{}, fmt.Errorf("server %q: %w", id, tenant.ErrNotFound)
	}
	s, err := scanServer(db.Pool.QueryRow(ctx, `SELECT `+serverColumns+` FROM mcp_servers WHERE id = $1`, id))
	if err != nil {
		return s, notFoundIfNoRows(err, "server "+id)
	}
	return s, nil
}

// SetServerAllowHTTP sets or clears a server's opt-out of https. The
// proxy follows it once its instance cache reloads the configs.
func (db *DB) SetServerAllowHTTP(ctx context.Context, id string, allow bool) (Server, error) {
	s, err := db.GetServer(ctx, id)
	if err != nil {
		return s, err
	}
	s.AllowHTTP = allow
	if err := s.Validate(); err != nil {
		return s, err
	}
	s, err = scanServer(db.Pool.QueryRow(ctx, `UPDATE mcp_servers SET allow_http = $2, updated_at = now() WHERE id = $1 RETURNING `+serverColumns, id, allow))
	if err != nil {
		return s, notFoundIfNoRows(err, "server "+id)
	}
	return s, nil
}

// ListServers lists the servers of an organization ("" for all).
func (db *DB) ListServers(ctx context.Context, orgID string) ([]Server, error) {
	if orgID != "" && !validUUID(orgID) {
		return nil, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `SELECT `+serverColumns+` FROM mcp_servers WHERE $1 = '' OR organization_id::text = $1 ORDER BY name, id`, orgID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Server, error) { return scanServer(r) })
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	return out, nil
}

// SyncResult tells what a tool sync changed.
type SyncResult struct {
	Added   []string `json:"added"`
	Missing []string `json:"missing"`
	Total   int      `json:"total"`
}

// SyncTools records the tools a server lists now: new ones are added,
// known ones updated, and those it no longer lists are marked missing
// (kept, so their tool-group selections survive an upstream that briefly
// lists fewer tools).
func (db *DB) SyncTools(ctx context.Context, serverID string, tools []Tool) (SyncResult, error) {
	if !validUUID(serverID) {
		return SyncResult{}, fmt.Errorf("server %q: %w", serverID, tenant.ErrNotFound)
	}
	var res SyncResult
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mcp_servers WHERE id = $1 FOR UPDATE)`, serverID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("server %s: %w", serverID, tenant.ErrNotFound)
		}
		var err error
		if res.Added, err = upsertTools(ctx, tx, serverID, tools); err != nil {
			return err
		}
		names := make([]string, len(tools))
		for i, t := range tools {
			names[i] = t.Name
		}
		rows, _ := tx.Query(ctx, `
UPDATE tools SET missing_since = now(), updated_at = now()
WHERE mcp_server_id = $1 AND missing_since IS NULL AND NOT (name = ANY($2))
RETURNING name`, serverID, names)
		res.Missing, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return res, fmt.Errorf("sync tools of server %s: %w", serverID, err)
	}
	sort.Strings(res.Added)
	sort.Strings(res.Missing)
	res.Total = len(tools)
	return res, nil
}

// upsertTools inserts or refreshes tools and returns the names it added.
func upsertTools(ctx context.Context, tx pgx.Tx, serverID string, tools []Tool) ([]string, error) {
	var added []string
	for _, t := range tools {
		if t.Name == "" {
			return nil, errors.New("a tool has no name")
		}
		var inserted bool
		err := tx.QueryRow(ctx, `
INSERT INTO tools (mcp_server_id, name, description, input_schema)
VALUES ($1, $2, $3, $4)
ON CONFLICT (mcp_server_id, name) DO UPDATE
SET description = EXCLUDED.description, input_schema = EXCLUDED.input_schema,
    missing_since = NULL, updated_at = now()
RETURNING xmax = 0`, serverID, t.Name, t.Description, nullJSON(t.InputSchema)).Scan(&inserted)
		if err != nil {
			return nil, fmt.Errorf("store tool %q: %w", t.Name, err)
		}
		if inserted {
			added = append(added, t.Name)
		}
	}
	return added, nil
}

// ListTools lists the tools of a server.
func (db *DB) ListTools(ctx context.Context, serverID string) ([]Tool, error) {
	if !validUUID(serverID) {
		return nil, fmt.Errorf("server %q: %w", serverID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `
SELECT id::text, name, description, input_schema, is_enabled, missing_since
FROM tools WHERE mcp_server_id = $1 ORDER BY name`, serverID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tool, error) {
		var t Tool
		var schema []byte
		err := r.Scan(&t.ID, &t.Name, &t.Description, &schema, &t.Enabled, &t.MissingSince)
		t.InputSchema = schema
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tools: %w", err)
	}
	return out, nil
}

// SetToolEnabled switches a tool of a server on or off for every instance.
func (db *DB) SetToolEnabled(ctx context.Context, serverID, name string, enabled bool) error {
	if !validUUID(serverID) {
		return fmt.Errorf("server %q: %w", serverID, tenant.ErrNotFound)
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE tools SET is_enabled = $3, updated_at = now() WHERE mcp_server_id = $1 AND name = $2`, serverID, name, enabled)
	if err != nil {
		return fmt.Errorf("set tool %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("tool %q of server %s: %w", name, serverID, tenant.ErrNotFound)
	}
	return nil
}

// Config is an organization's configuration of a server: its credentials.
type Config struct {
	ID             string       `json:"id"`
	OrganizationID string       `json:"organization_id"`
	ServerID       string       `json:"server_id"`
	ServerName     string       `json:"server_name"`
	Name           string       `json:"name"`
	EnvNames       []string     `json:"env_names,omitempty"`    // names only, never values
	HeaderNames    []string     `json:"header_names,omitempty"` // names only, never values
	KeyID          string       `json:"key_id,omitempty"`       // the encryption key that sealed the credentials
	OAuth          *OAuthStatus `json:"oauth,omitempty"`        // no secret
	CreatedAt      time.Time    `json:"created_at"`
}

// CreateConfig stores an organization's credentials for a server,
// encrypted under the keyring's primary key and bound to the new row's ID.
func (db *DB) CreateConfig(ctx context.Context, orgID, serverID, name string, creds tenant.Credentials) (Config, error) {
	c := Config{OrganizationID: orgID, ServerID: serverID, Name: name}
	if !validUUID(orgID) {
		return c, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	if !validUUID(serverID) {
		return c, fmt.Errorf("server %q: %w", serverID, tenant.ErrNotFound)
	}
	for h := range creds.Headers {
		if !validHeaderName(h) {
			return c, fmt.Errorf("bad header name %q", h)
		}
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var serverOrg string
		err := tx.QueryRow(ctx, `SELECT organization_id::text, name FROM mcp_servers WHERE id = $1`, serverID).Scan(&serverOrg, &c.ServerName)
		if err != nil {
			return notFoundIfNoRows(err, "server "+serverID)
		}
		if serverOrg != orgID {
			return fmt.Errorf("server %s belongs to another organization than %s", serverID, orgID)
		}
		if err := tx.QueryRow(ctx, `
INSERT INTO user_mcp_server_configs (organization_id, mcp_server_id, name) VALUES ($1, $2, $3)
RETURNING id::text, created_at`, orgID, serverID, name).Scan(&c.ID, &c.CreatedAt); err != nil {
			return err
		}
		sealed, err := db.sealCredentials(c.ID, creds)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE user_mcp_server_configs SET encrypted_credentials = $2 WHERE id = $1`, c.ID, sealed)
		return err
	})
	if err != nil {
		return c, fmt.Errorf("create config: %w", err)
	}
	c.EnvNames, c.HeaderNames = sortedKeys(creds.Env), sortedKeys(creds.Headers)
	c.KeyID = db.keys.PrimaryID()
	if len(c.EnvNames)+len(c.HeaderNames) == 0 {
		c.KeyID = ""
	}
	return c, nil
}

// ListConfigs lists the configs of an organization ("" for all) with the
// names of their credentials, decrypted to read the names.
func (db *DB) ListConfigs(ctx context.Context, orgID string) ([]Config, error) {
	if orgID != "" && !validUUID(orgID) {
		return nil, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `
SELECT c.id::text, c.organization_id::text, c.mcp_server_id::text, s.name, c.name, c.encrypted_credentials, c.created_at
FROM user_mcp_server_configs c JOIN mcp_servers s ON s.id = c.mcp_server_id
WHERE $1 = '' OR c.organization_id::text = $1 ORDER BY s.name, c.created_at, c.id`, orgID)
	type row struct {
		Config
		sealed []byte
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.ID, &x.OrganizationID, &x.ServerID, &x.ServerName, &x.Name, &x.sealed, &x.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("list configs: %w", err)
	}
	out := make([]Config, len(list))
	for i, x := range list {
		out[i] = x.Config
		if len(x.sealed) == 0 {
			continue
		}
		out[i].KeyID = keyIDOf(x.sealed)
		creds, err := db.openCredentials(x.ID, x.sealed)
		if err != nil {
			return nil, err
		}
		out[i].EnvNames, out[i].HeaderNames = sortedKeys(creds.Env), sortedKeys(creds.Headers)
		out[i].OAuth = oauthStatus(creds.OAuth)
	}
	return out, nil
}

// ReencryptConfigs seals every config's credentials again under the
// primary key, so that an old key can be dropped after a rotation. It
// returns how many configs it rewrote.
func (db *DB) ReencryptConfigs(ctx context.Context) (int, error) {
	primary := db.keys.PrimaryID()
	if primary == "" {
		return 0, errors.New("reencrypt: no encryption key configured")
	}
	n := 0
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT id::text, encrypted_credentials FROM user_mcp_server_configs WHERE encrypted_credentials IS NOT NULL FOR UPDATE`)
		type row struct {
			id     string
			sealed []byte
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.sealed)
		})
		if err != nil {
			return err
		}
		for _, x := range list {
			if keyIDOf(x.sealed) == primary {
				continue
			}
			creds, err := db.openCredentials(x.id, x.sealed)
			if err != nil {
				return err
			}
			sealed, err := db.sealCredentials(x.id, creds)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE user_mcp_server_configs SET encrypted_credentials = $2, updated_at = now() WHERE id = $1`, x.id, sealed); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reencrypt: %w", err)
	}
	return n, nil
}

// Selection names a config of an instance and the tools it exposes; no
// tools means every tool currently known for the config's server.
type Selection struct {
	ConfigID string
	Tools    []string
}

// Instance is an MCP endpoint as the admin CLI shows it.
type Instance struct {
	ID             string     `json:"id"`
	OrganizationID string     `json:"organization_id"`
	UserID         string     `json:"user_id,omitempty"`
	Name           string     `json:"name"`
	ToolGroupID    string     `json:"tool_group_id"`
	ToolsEnabled   bool       `json:"tools_enabled"`
	Tools          int        `json:"tools"`
	DeletedAt      *time.Time `json:"deleted_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
}

// CreateInstance creates an instance with its tool group. Every config
// must belong to the organization and every named tool to the config's
// server.
func (db *DB) CreateInstance(ctx context.Context, orgID, userID, name string, sel []Selection) (Instance, error) {
	inst := Instance{OrganizationID: orgID, UserID: userID, Name: strings.TrimSpace(name), ToolsEnabled: true}
	if inst.Name == "" {
		return inst, errors.New("instance name is empty")
	}
	if !validUUID(orgID) {
		return inst, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	if userID != "" && !validUUID(userID) {
		return inst, fmt.Errorf("user %q: %w", userID, tenant.ErrNotFound)
	}
	if len(sel) == 0 {
		return inst, errors.New("an instance needs at least one config")
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO user_tool_groups (organization_id, name) VALUES ($1, $2) RETURNING id::text`,
			orgID, inst.Name).Scan(&inst.ToolGroupID); err != nil {
			return notFoundIfForeignKey(err, "organization "+orgID)
		}
		if err := tx.QueryRow(ctx, `
INSERT INTO user_mcp_server_instances (organization_id, user_id, name, tool_group_id)
VALUES ($1, NULLIF($2, '')::uuid, $3, $4) RETURNING id::text, created_at`,
			orgID, userID, inst.Name, inst.ToolGroupID).Scan(&inst.ID, &inst.CreatedAt); err != nil {
			return notFoundIfForeignKey(err, "user "+userID)
		}
		for _, s := range sel {
			n, err := addSelection(ctx, tx, orgID, inst.ToolGroupID, s)
			if err != nil {
				return err
			}
			inst.Tools += n
		}
		return nil
	})
	if err != nil {
		return inst, fmt.Errorf("create instance: %w", err)
	}
	return inst, nil
}

func addSelection(ctx context.Context, tx pgx.Tx, orgID, groupID string, s Selection) (int, error) {
	if !validUUID(s.ConfigID) {
		return 0, fmt.Errorf("config %q: %w", s.ConfigID, tenant.ErrNotFound)
	}
	var configOrg, serverID string
	err := tx.QueryRow(ctx, `SELECT organization_id::text, mcp_server_id::text FROM user_mcp_server_configs WHERE id = $1`,
		s.ConfigID).Scan(&configOrg, &serverID)
	if err != nil {
		return 0, notFoundIfNoRows(err, "config "+s.ConfigID)
	}
	if configOrg != orgID {
		return 0, fmt.Errorf("config %s belongs to another organization", s.ConfigID)
	}
	rows, _ := tx.Query(ctx, `
INSERT INTO user_tool_group_tools (tool_group_id, user_mcp_server_config_id, tool_id, mcp_server_id)
SELECT $1, $2, t.id, t.mcp_server_id FROM tools t
WHERE t.mcp_server_id = $3 AND (cardinality($4::text[]) = 0 OR t.name = ANY($4))
ON CONFLICT DO NOTHING
RETURNING (SELECT name FROM tools WHERE id = tool_id)`, groupID, s.ConfigID, serverID, nonNil(s.Tools))
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	if len(s.Tools) > 0 && len(names) < len(dedupe(s.Tools)) {
		got := map[string]bool{}
		for _, n := range names {
			got[n] = true
		}
		var unknown []string
		for _, t := range dedupe(s.Tools) {
			if !got[t] {
				unknown = append(unknown, t)
			}
		}
		return 0, fmt.Errorf("config %s: server has no tool %s (run mcpadmin server sync-tools?)", s.ConfigID, strings.Join(unknown, ", "))
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("config %s: its server has no known tools (run mcpadmin server sync-tools?)", s.ConfigID)
	}
	return len(names), nil
}

const instanceColumns = `i.id::text, i.organization_id::text, COALESCE(i.user_id::text, ''), i.name, i.tool_group_id::text, g.is_enabled,
    (SELECT count(*) FROM user_tool_group_tools gt WHERE gt.tool_group_id = g.id), i.deleted_at, i.created_at`

func scanInstance(r pgx.Row) (Instance, error) {
	var i Instance
	err := r.Scan(&i.ID, &i.OrganizationID, &i.UserID, &i.Name, &i.ToolGroupID, &i.ToolsEnabled, &i.Tools, &i.DeletedAt, &i.CreatedAt)
	return i, err
}

// ListInstances lists the instances of an organization ("" for all);
// deleted ones only when asked.
func (db *DB) ListInstances(ctx context.Context, orgID string, withDeleted bool) ([]Instance, error) {
	if orgID != "" && !validUUID(orgID) {
		return nil, fmt.Errorf("organization %q: %w", orgID, tenant.ErrNotFound)
	}
	rows, _ := db.Pool.Query(ctx, `
SELECT `+instanceColumns+`
FROM user_mcp_server_instances i JOIN user_tool_groups g ON g.id = i.tool_group_id
WHERE ($1 = '' OR i.organization_id::text = $1) AND ($2 OR i.deleted_at IS NULL)
ORDER BY i.created_at, i.id`, orgID, withDeleted)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Instance, error) { return scanInstance(r) })
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return out, nil
}

// DeleteInstance soft-deletes an instance: its keys stop working at once
// (the proxy's cache forgets them within its TTL).
func (db *DB) DeleteInstance(ctx context.Context, id string) error {
	if !validUUID(id) {
		return fmt.Errorf("instance %q: %w", id, tenant.ErrNotFound)
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE user_mcp_server_instances SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("delete instance: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("live instance %s: %w", id, tenant.ErrNotFound)
	}
	return nil
}

// SetInstanceToolsEnabled switches an instance's whole tool group on or off.
func (db *DB) SetInstanceToolsEnabled(ctx context.Context, id string, enabled bool) error {
	if !validUUID(id) {
		return fmt.Errorf("instance %q: %w", id, tenant.ErrNotFound)
	}
	tag, err := db.Pool.Exec(ctx, `
UPDATE user_tool_groups g SET is_enabled = $2, updated_at = now()
FROM user_mcp_server_instances i WHERE i.tool_group_id = g.id AND i.id = $1`, id, enabled)
	if err != nil {
		return fmt.Errorf("set instance tools: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("instance %s: %w", id, tenant.ErrNotFound)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// ConfigCredentials returns the decrypted credentials of a config of the
// given server, for tool discovery by the admin CLI.
func (db *DB) ConfigCredentials(ctx context.Context, configID, serverID string) (tenant.Credentials, error) {
	if !validUUID(configID) {
		return tenant.Credentials{}, fmt.Errorf("config %q: %w", configID, tenant.ErrNotFound)
	}
	var sealed []byte
	var server string
	err := db.Pool.QueryRow(ctx, `SELECT mcp_server_id::text, encrypted_credentials FROM user_mcp_server_configs WHERE id = $1`, configID).Scan(&server, &sealed)
	if err != nil {
		return tenant.Credentials{}, notFoundIfNoRows(err, "config "+configID)
	}
	if server != serverID {
		return tenant.Credentials{}, fmt.Errorf("config %s is not a config of server %s", configID, serverID)
	}
	return db.openCredentials(configID, sealed)
}

// SetInstanceRateLimit sets an instance's rate limit, shared by all its
// keys; a zero limit removes it. The proxies follow within CONFIG_POLL
// (the change feed).
func (db *DB) SetInstanceRateLimit(ctx context.Context, instanceID string, l tenant.RateLimit) error {
	if !validUUID(instanceID) {
		return fmt.Errorf("instance %q: %w", instanceID, tenant.ErrNotFound)
	}
	perSecond, burst, err := limitColumns(l)
	if err != nil {
		return err
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE user_mcp_server_instances SET rate_limit_per_second = $2, rate_limit_burst = $3, updated_at = now() WHERE id = $1 AND deleted_at IS NULL`,
		instanceID, perSecond, burst)
	if err != nil {
		return fmt.Errorf("set the rate limit of instance %s: %w", instanceID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("live instance %s: %w", instanceID, tenant.ErrNotFound)
	}
	return nil
}
