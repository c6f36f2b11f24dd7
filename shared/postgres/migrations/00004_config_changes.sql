-- +goose Up
-- The change feed: every change an operator makes that a proxy process may
-- hold in its warm cache is recorded here, by triggers, in the same
-- transaction as the change itself, so no writer (mcpadmin, a later
-- console, a hand-written UPDATE) can forget it. Proxy processes read the
-- rows after the last id they saw (ChangesSince) and drop exactly the
-- cache entries named.
--
-- kind says what ref is:
--   key      the SHA-256 hash of an API key, hex (revoked, expiry moved,
--            deleted, moved to another instance)
--   instance an instance id (deleted, renamed, its tool group or its
--            selection of tools changed)
--   server   a server id (URL, transport, headers changed; a tool of it
--            switched off, missing, back)
--   config   a config id (credentials re-sealed, deleted)
CREATE TABLE config_changes (
    id   bigserial PRIMARY KEY,
    at   timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('key', 'instance', 'server', 'config')),
    ref  text NOT NULL
);
CREATE INDEX config_changes_at ON config_changes (at);

-- record_config_change appends one change. The transaction-scoped
-- advisory lock makes writers of changes take their ids one transaction
-- at a time, held until commit: a reader that sees id n committed has
-- every smaller id committed (or rolled back) too, so "id > last seen"
-- never skips a change that commits late. Operator changes are rare;
-- serializing them costs nothing the proxy's requests see.
-- +goose StatementBegin
CREATE FUNCTION record_config_change(change_kind text, change_ref text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF change_ref IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7305019);
    INSERT INTO config_changes (kind, ref) VALUES (change_kind, change_ref);
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION config_change_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('key', encode(OLD.key_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.key_hash <> OLD.key_hash THEN
        PERFORM record_config_change('key', encode(NEW.key_hash, 'hex'));
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- last_used_at and updated_at alone change nothing the proxy caches.
CREATE TRIGGER config_change_key_update AFTER UPDATE ON mcp_api_keys FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
       OR OLD.key_hash IS DISTINCT FROM NEW.key_hash OR OLD.mcp_server_instance_id IS DISTINCT FROM NEW.mcp_server_instance_id
       OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION config_change_key();
CREATE TRIGGER config_change_key_delete AFTER DELETE ON mcp_api_keys FOR EACH ROW
    EXECUTE FUNCTION config_change_key();

-- +goose StatementBegin
CREATE FUNCTION config_change_instance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('instance', OLD.id::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_instance_update AFTER UPDATE ON user_mcp_server_instances FOR EACH ROW
    WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.tool_group_id IS DISTINCT FROM NEW.tool_group_id OR OLD.organization_id IS DISTINCT FROM NEW.organization_id)
    EXECUTE FUNCTION config_change_instance();
CREATE TRIGGER config_change_instance_delete AFTER DELETE ON user_mcp_server_instances FOR EACH ROW
    EXECUTE FUNCTION config_change_instance();

-- A tool group belongs to one instance (tool_group_id is UNIQUE there).
-- +goose StatementBegin
CREATE FUNCTION config_change_tool_group() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('instance', i.id::text)
    FROM user_mcp_server_instances i WHERE i.tool_group_id = OLD.id;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_tool_group_update AFTER UPDATE ON user_tool_groups FOR EACH ROW
    WHEN (OLD.is_enabled IS DISTINCT FROM NEW.is_enabled)
    EXECUTE FUNCTION config_change_tool_group();

-- A group's selection changed: one change per statement and instance,
-- however many tools the statement selected.
-- +goose StatementBegin
CREATE FUNCTION config_change_selection() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM record_config_change('instance', i.id::text)
        FROM user_mcp_server_instances i WHERE i.tool_group_id IN (SELECT DISTINCT tool_group_id FROM old_rows);
    ELSE
        PERFORM record_config_change('instance', i.id::text)
        FROM user_mcp_server_instances i WHERE i.tool_group_id IN (SELECT DISTINCT tool_group_id FROM new_rows);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_selection_insert AFTER INSERT ON user_tool_group_tools
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION config_change_selection();
CREATE TRIGGER config_change_selection_delete AFTER DELETE ON user_tool_group_tools
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION config_change_selection();

-- +goose StatementBegin
CREATE FUNCTION config_change_server() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('server', OLD.id::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_server_update AFTER UPDATE ON mcp_servers FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION config_change_server();
CREATE TRIGGER config_change_server_delete AFTER DELETE ON mcp_servers FOR EACH ROW
    EXECUTE FUNCTION config_change_server();

-- A tool changes what instances expose only when it is switched on or
-- off, goes missing or comes back: one change per statement and server.
-- +goose StatementBegin
CREATE FUNCTION config_change_tools() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM record_config_change('server', s.mcp_server_id::text)
        FROM (SELECT DISTINCT mcp_server_id FROM old_rows) s;
    ELSE
        PERFORM record_config_change('server', s.mcp_server_id::text)
        FROM (SELECT DISTINCT n.mcp_server_id FROM new_rows n JOIN old_rows o ON o.id = n.id
              WHERE n.is_enabled IS DISTINCT FROM o.is_enabled OR n.missing_since IS DISTINCT FROM o.missing_since
                 OR n.name IS DISTINCT FROM o.name) s;
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_tools_update AFTER UPDATE ON tools
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION config_change_tools();
CREATE TRIGGER config_change_tools_delete AFTER DELETE ON tools
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION config_change_tools();

-- +goose StatementBegin
CREATE FUNCTION config_change_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('config', OLD.id::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_config_update AFTER UPDATE ON user_mcp_server_configs FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION config_change_config();
CREATE TRIGGER config_change_config_delete AFTER DELETE ON user_mcp_server_configs FOR EACH ROW
    EXECUTE FUNCTION config_change_config();

-- +goose Down
DROP TRIGGER config_change_config_delete ON user_mcp_server_configs;
DROP TRIGGER config_change_config_update ON user_mcp_server_configs;
DROP FUNCTION config_change_config();
DROP TRIGGER config_change_tools_delete ON tools;
DROP TRIGGER config_change_tools_update ON tools;
DROP FUNCTION config_change_tools();
DROP TRIGGER config_change_server_delete ON mcp_servers;
DROP TRIGGER config_change_server_update ON mcp_servers;
DROP FUNCTION config_change_server();
DROP TRIGGER config_change_selection_delete ON user_tool_group_tools;
DROP TRIGGER config_change_selection_insert ON user_tool_group_tools;
DROP FUNCTION config_change_selection();
DROP TRIGGER config_change_tool_group_update ON user_tool_groups;
DROP FUNCTION config_change_tool_group();
DROP TRIGGER config_change_instance_delete ON user_mcp_server_instances;
DROP TRIGGER config_change_instance_update ON user_mcp_server_instances;
DROP FUNCTION config_change_instance();
DROP TRIGGER config_change_key_delete ON mcp_api_keys;
DROP TRIGGER config_change_key_update ON mcp_api_keys;
DROP FUNCTION config_change_key();
DROP FUNCTION record_config_change(text, text);
DROP TABLE config_changes;
