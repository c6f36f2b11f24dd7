-- +goose Up
-- OAuth grants in the change feed: the proxy caches a grant's status
-- (revoked, its bound key's) with its access tokens, and must drop it
-- when that changes, as it drops a revoked key. A grant revoked (by
-- mcpadmin, the revocation endpoint, a refresh token or code used twice),
-- moved or deleted, and every grant bound to an API key that changed,
-- append a 'grant' change naming the grant's id.
ALTER TABLE config_changes DROP CONSTRAINT config_changes_kind_check;
ALTER TABLE config_changes ADD CONSTRAINT config_changes_kind_check
    CHECK (kind IN ('key', 'instance', 'server', 'config', 'quota', 'grant'));

-- +goose StatementBegin
CREATE FUNCTION config_change_grant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('grant', OLD.id::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER config_change_grant_update AFTER UPDATE ON oauth_grants FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.api_key_id IS DISTINCT FROM NEW.api_key_id
       OR OLD.mcp_server_instance_id IS DISTINCT FROM NEW.mcp_server_instance_id OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION config_change_grant();
CREATE TRIGGER config_change_grant_delete AFTER DELETE ON oauth_grants FOR EACH ROW
    EXECUTE FUNCTION config_change_grant();

-- A key's change names the grants bound to it too: the proxy caches a
-- grant with its key's status. (A deleted key's grants are deleted with
-- it, and named by the trigger above.)
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION config_change_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('key', encode(OLD.key_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.key_hash <> OLD.key_hash THEN
        PERFORM record_config_change('key', encode(NEW.key_hash, 'hex'));
    END IF;
    PERFORM record_config_change('grant', g.id::text) FROM oauth_grants g WHERE g.api_key_id = OLD.id;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION config_change_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM record_config_change('key', encode(OLD.key_hash, 'hex'));
    IF TG_OP = 'UPDATE' AND NEW.key_hash <> OLD.key_hash THEN
        PERFORM record_config_change('key', encode(NEW.key_hash, 'hex'));
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
DROP TRIGGER config_change_grant_delete ON oauth_grants;
DROP TRIGGER config_change_grant_update ON oauth_grants;
DROP FUNCTION config_change_grant();
DELETE FROM config_changes WHERE kind = 'grant';
ALTER TABLE config_changes DROP CONSTRAINT config_changes_kind_check;
ALTER TABLE config_changes ADD CONSTRAINT config_changes_kind_check
    CHECK (kind IN ('key', 'instance', 'server', 'config', 'quota'));
