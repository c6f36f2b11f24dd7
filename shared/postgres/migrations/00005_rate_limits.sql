-- +goose Up
-- Rate limits per API key and per instance: requests per second with a
-- burst, NULL for none. The proxy reads them with the key and the
-- instance it caches, and enforces them in the process.
ALTER TABLE mcp_api_keys
    ADD COLUMN rate_limit_per_second double precision CHECK (rate_limit_per_second > 0),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst > 0);
ALTER TABLE user_mcp_server_instances
    ADD COLUMN rate_limit_per_second double precision CHECK (rate_limit_per_second > 0),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst > 0);

-- A request refused over a limit is logged as rate_limited.
ALTER TABLE mcp_server_request_logs DROP CONSTRAINT mcp_server_request_logs_response_status_check;
ALTER TABLE mcp_server_request_logs ADD CONSTRAINT mcp_server_request_logs_response_status_check
    CHECK (response_status IN ('success', 'error', 'timeout', 'rate_limited'));

-- A limit changed is a change the proxies must see (the change feed).
DROP TRIGGER config_change_key_update ON mcp_api_keys;
CREATE TRIGGER config_change_key_update AFTER UPDATE ON mcp_api_keys FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
       OR OLD.key_hash IS DISTINCT FROM NEW.key_hash OR OLD.mcp_server_instance_id IS DISTINCT FROM NEW.mcp_server_instance_id
       OR OLD.user_id IS DISTINCT FROM NEW.user_id
       OR OLD.rate_limit_per_second IS DISTINCT FROM NEW.rate_limit_per_second OR OLD.rate_limit_burst IS DISTINCT FROM NEW.rate_limit_burst)
    EXECUTE FUNCTION config_change_key();
DROP TRIGGER config_change_instance_update ON user_mcp_server_instances;
CREATE TRIGGER config_change_instance_update AFTER UPDATE ON user_mcp_server_instances FOR EACH ROW
    WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.tool_group_id IS DISTINCT FROM NEW.tool_group_id OR OLD.organization_id IS DISTINCT FROM NEW.organization_id
       OR OLD.rate_limit_per_second IS DISTINCT FROM NEW.rate_limit_per_second OR OLD.rate_limit_burst IS DISTINCT FROM NEW.rate_limit_burst)
    EXECUTE FUNCTION config_change_instance();

-- +goose Down
DROP TRIGGER config_change_instance_update ON user_mcp_server_instances;
CREATE TRIGGER config_change_instance_update AFTER UPDATE ON user_mcp_server_instances FOR EACH ROW
    WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.tool_group_id IS DISTINCT FROM NEW.tool_group_id OR OLD.organization_id IS DISTINCT FROM NEW.organization_id)
    EXECUTE FUNCTION config_change_instance();
DROP TRIGGER config_change_key_update ON mcp_api_keys;
CREATE TRIGGER config_change_key_update AFTER UPDATE ON mcp_api_keys FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
       OR OLD.key_hash IS DISTINCT FROM NEW.key_hash OR OLD.mcp_server_instance_id IS DISTINCT FROM NEW.mcp_server_instance_id
       OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION config_change_key();
DELETE FROM mcp_server_request_logs WHERE response_status = 'rate_limited';
ALTER TABLE mcp_server_request_logs DROP CONSTRAINT mcp_server_request_logs_response_status_check;
ALTER TABLE mcp_server_request_logs ADD CONSTRAINT mcp_server_request_logs_response_status_check
    CHECK (response_status IN ('success', 'error', 'timeout'));
ALTER TABLE user_mcp_server_instances DROP COLUMN rate_limit_per_second, DROP COLUMN rate_limit_burst;
ALTER TABLE mcp_api_keys DROP COLUMN rate_limit_per_second, DROP COLUMN rate_limit_burst;
