package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// loadInstanceSQL returns, in one round trip, one row per upstream config
// of a live instance with the names of the tools its tool group allows
// aggregated into an array: no Cartesian duplicates to remove afterwards.
// The LEFT JOIN keeps one row (with NULL upstream columns) for an instance
// that exposes nothing, so "no such instance" and "no tools" differ. A
// disabled tool group, a tool switched off and a tool the upstream no
// longer lists contribute nothing.
const loadInstanceSQL = `
SELECT i.id::text, i.name, i.organization_id::text,
       COALESCE(i.rate_limit_per_second, 0), COALESCE(i.rate_limit_burst, 0),
       u.config_id, u.server_id, u.server_name, u.transport_type, u.url, u.allow_http,
       u.command, u.args, u.header_names, u.auth_type, u.encrypted_credentials, u.tools
FROM user_mcp_server_instances i
JOIN user_tool_groups g ON g.id = i.tool_group_id
LEFT JOIN LATERAL (
    SELECT c.id::text AS config_id, s.id::text AS server_id, s.name AS server_name,
           s.transport_type, s.url, s.allow_http, s.command, s.args, s.header_names, s.auth_type,
           c.encrypted_credentials,
           array_agg(t.name ORDER BY t.name) AS tools
    FROM user_tool_group_tools gt
    JOIN user_mcp_server_configs c ON c.id = gt.user_mcp_server_config_id
    JOIN mcp_servers s ON s.id = c.mcp_server_id
    JOIN tools t ON t.id = gt.tool_id
    WHERE gt.tool_group_id = g.id AND g.is_enabled
      AND t.is_enabled AND t.missing_since IS NULL
    GROUP BY c.id, s.id
) u ON true
WHERE i.id = $1 AND i.deleted_at IS NULL
ORDER BY u.server_name, u.config_id`

// LoadInstanceConfig returns a live instance with every upstream once, the
// tools its tool group allows and decrypted credentials. A deleted or
// unknown instance is tenant.ErrNotFound.
func (db *DB) LoadInstanceConfig(ctx context.Context, instanceID string) (*tenant.Instance, error) {
	if !validUUID(instanceID) {
		return nil, fmt.Errorf("instance %q: %w", instanceID, tenant.ErrNotFound)
	}
	rows, err := db.Pool.Query(ctx, loadInstanceSQL, instanceID)
	if err != nil {
		return nil, fmt.Errorf("load instance %s: %w", instanceID, err)
	}
	defer rows.Close()
	var inst *tenant.Instance
	for rows.Next() {
		var (
			id, name, orgID string
			configID        *string
			up              tenant.Upstream
			serverID, sname *string
			transport, auth *string
			url, command    *string
			allowHTTP       *bool
			sealed          []byte
			limit           tenant.RateLimit
		)
		if err := rows.Scan(&id, &name, &orgID, &limit.PerSecond, &limit.Burst, &configID, &serverID, &sname, &transport, &url, &allowHTTP,
			&command, &up.Args, &up.HeaderNames, &auth, &sealed, &up.Tools); err != nil {
			return nil, fmt.Errorf("load instance %s: %w", instanceID, err)
		}
		if inst == nil {
			inst = &tenant.Instance{ID: id, Name: name, OrganizationID: orgID, RateLimit: limit}
		}
		if configID == nil {
			continue // the instance exposes nothing
		}
		up.ConfigID, up.ServerID, up.Name = *configID, *serverID, *sname
		up.Transport, up.AuthType = tenant.Transport(*transport), tenant.AuthType(*auth)
		up.URL, up.Command, up.AllowHTTP = deref(url), deref(command), *allowHTTP
		if up.Credentials, err = db.openCredentials(up.ConfigID, sealed); err != nil {
			return nil, err
		}
		inst.Upstreams = append(inst.Upstreams, up)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load instance %s: %w", instanceID, err)
	}
	if inst == nil {
		return nil, fmt.Errorf("instance %s: %w", instanceID, tenant.ErrNotFound)
	}
	return inst, nil
}

// sealCredentials encrypts a config's credentials bound to its ID.
func (db *DB) sealCredentials(configID string, c tenant.Credentials) ([]byte, error) {
	if len(c.Env) == 0 && len(c.Headers) == 0 && c.OAuth == nil {
		return nil, nil
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	sealed, err := db.keys.Seal(plain, []byte(configID))
	if err != nil {
		return nil, fmt.Errorf("encrypt credentials of config %s: %w", configID, err)
	}
	return sealed, nil
}

func (db *DB) openCredentials(configID string, sealed []byte) (tenant.Credentials, error) {
	var c tenant.Credentials
	if len(sealed) == 0 {
		return c, nil
	}
	plain, err := db.keys.Open(sealed, []byte(configID))
	if err != nil {
		return c, fmt.Errorf("decrypt credentials of config %s: %w", configID, err)
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, fmt.Errorf("decrypt credentials of config %s: %w", configID, err)
	}
	return c, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
