-- +goose Up
-- The proxy's OAuth 2.1 authorization server (docs/oauth.md).

-- Clients registered dynamically (RFC 7591). Clients that identify
-- themselves with a metadata document URL have no row: the document is
-- fetched and cached.
CREATE TABLE oauth_clients (
    id            text PRIMARY KEY,
    client_name   text NOT NULL DEFAULT '',
    redirect_uris text[] NOT NULL CHECK (cardinality(redirect_uris) > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- What a user allowed a client: one instance, through one resource URL.
-- A grant bound to an API key (consent by pasting a key) dies with the
-- key; its access tokens stop working once the proxy's cache sees it
-- revoked, its key inactive or its instance deleted.
CREATE TABLE oauth_grants (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id              text NOT NULL CHECK (client_id <> ''),
    client_name            text NOT NULL DEFAULT '',
    mcp_server_instance_id uuid NOT NULL REFERENCES user_mcp_server_instances (id) ON DELETE CASCADE,
    user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    api_key_id             uuid REFERENCES mcp_api_keys (id) ON DELETE CASCADE,
    resource               text NOT NULL,
    scope                  text NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now(),
    revoked_at             timestamptz
);
CREATE INDEX oauth_grants_instance_idx ON oauth_grants (mcp_server_instance_id);
CREATE INDEX oauth_grants_user_idx ON oauth_grants (user_id);
CREATE INDEX oauth_grants_key_idx ON oauth_grants (api_key_id);

-- Authorization codes and refresh tokens are kept as SHA-256 hashes only.
-- A code is used once; a refresh token is replaced at each use, and the
-- replaced one, used again, revokes its grant (reuse detection).
CREATE TABLE oauth_codes (
    code_hash      bytea PRIMARY KEY CHECK (octet_length(code_hash) = 32),
    grant_id       uuid NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    redirect_uri   text NOT NULL,
    code_challenge text NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX oauth_codes_grant_idx ON oauth_codes (grant_id);

CREATE TABLE oauth_refresh_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    grant_id   uuid NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_refresh_tokens_grant_idx ON oauth_refresh_tokens (grant_id);

-- A request made with an access token names its grant in the request log.
ALTER TABLE mcp_server_request_logs ADD COLUMN oauth_grant_id uuid;

-- +goose Down
ALTER TABLE mcp_server_request_logs DROP COLUMN oauth_grant_id;
DROP TABLE oauth_refresh_tokens;
DROP TABLE oauth_codes;
DROP TABLE oauth_grants;
DROP TABLE oauth_clients;
