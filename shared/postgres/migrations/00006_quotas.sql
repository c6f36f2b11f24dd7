-- +goose Up
-- Quotas: calls a day and a month (UTC) per organization and per API key,
-- NULL for none. FlushLogs counts the calls it copies into
-- usage_calls, per UTC day, in the transaction that copies them, and
-- records in quota_blocks (and in the change feed) each key or
-- organization that reached a quota, until the quota's period ends. The
-- proxy refuses their calls from the next feed read on, so a quota holds
-- with the lag of one flush interval and one CONFIG_POLL.
ALTER TABLE organizations
    ADD COLUMN quota_calls_per_day bigint CHECK (quota_calls_per_day > 0),
    ADD COLUMN quota_calls_per_month bigint CHECK (quota_calls_per_month > 0);
ALTER TABLE mcp_api_keys
    ADD COLUMN quota_calls_per_day bigint CHECK (quota_calls_per_day > 0),
    ADD COLUMN quota_calls_per_month bigint CHECK (quota_calls_per_month > 0);

-- scope: 'org' (id an organization) or 'key' (id an API key).
CREATE TABLE usage_calls (
    scope text NOT NULL CHECK (scope IN ('org', 'key')),
    id    uuid NOT NULL,
    day   date NOT NULL,
    calls bigint NOT NULL,
    PRIMARY KEY (scope, id, day)
);

CREATE TABLE quota_blocks (
    scope      text NOT NULL CHECK (scope IN ('org', 'key')),
    id         uuid NOT NULL,
    period     text NOT NULL CHECK (period IN ('day', 'month')),
    quota      bigint NOT NULL,
    until      timestamptz NOT NULL,
    PRIMARY KEY (scope, id, period)
);

ALTER TABLE config_changes DROP CONSTRAINT config_changes_kind_check;
ALTER TABLE config_changes ADD CONSTRAINT config_changes_kind_check
    CHECK (kind IN ('key', 'instance', 'server', 'config', 'quota'));

ALTER TABLE mcp_server_request_logs DROP CONSTRAINT mcp_server_request_logs_response_status_check;
ALTER TABLE mcp_server_request_logs ADD CONSTRAINT mcp_server_request_logs_response_status_check
    CHECK (response_status IN ('success', 'error', 'timeout', 'rate_limited', 'quota_exceeded'));

-- +goose Down
DELETE FROM mcp_server_request_logs WHERE response_status = 'quota_exceeded';
ALTER TABLE mcp_server_request_logs DROP CONSTRAINT mcp_server_request_logs_response_status_check;
ALTER TABLE mcp_server_request_logs ADD CONSTRAINT mcp_server_request_logs_response_status_check
    CHECK (response_status IN ('success', 'error', 'timeout', 'rate_limited'));
DELETE FROM config_changes WHERE kind = 'quota';
ALTER TABLE config_changes DROP CONSTRAINT config_changes_kind_check;
ALTER TABLE config_changes ADD CONSTRAINT config_changes_kind_check
    CHECK (kind IN ('key', 'instance', 'server', 'config'));
DROP TABLE quota_blocks;
DROP TABLE usage_calls;
ALTER TABLE mcp_api_keys DROP COLUMN quota_calls_per_day, DROP COLUMN quota_calls_per_month;
ALTER TABLE organizations DROP COLUMN quota_calls_per_day, DROP COLUMN quota_calls_per_month;
