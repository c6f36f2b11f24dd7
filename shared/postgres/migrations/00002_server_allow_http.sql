-- +goose Up
-- An operator's opt-out of https for a server whose URL is plain http and
-- not a loopback address: without it the proxy refuses to send the
-- server's credentials and calls there unencrypted.
ALTER TABLE mcp_servers ADD COLUMN allow_http boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE mcp_servers DROP COLUMN allow_http;
