package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// UsageRow is one line of an instance's usage, from the hourly aggregates.
type UsageRow struct {
	Hour          *time.Time `json:"hour,omitempty"`   // by hour
	Tool          string     `json:"tool,omitempty"`   // by tool
	Method        string     `json:"method,omitempty"` // by tool
	Requests      int64      `json:"requests"`
	Errors        int64      `json:"errors"`
	AvgDurationMs float64    `json:"avg_duration_ms"`
	MaxDurationMs int64      `json:"max_duration_ms"`
	InputBytes    int64      `json:"input_bytes"`
	OutputBytes   int64      `json:"output_bytes"`
}

// Usage groupings.
const (
	UsageByTool = "tool"
	UsageByHour = "hour"
)

// Usage sums an instance's hourly aggregates from the hour holding since,
// by tool (and method), or by hour. It sees what the flush has copied.
func (db *DB) Usage(ctx context.Context, instanceID string, since time.Time, by string) ([]UsageRow, error) {
	var group, order string
	switch by {
	case UsageByTool:
		group, order = "tool_name, method", "sum(request_count) DESC, tool_name, method"
	case UsageByHour:
		group, order = "hour", "hour"
	default:
		return nil, fmt.Errorf("usage: unknown grouping %q (want tool or hour)", by)
	}
	if !validUUID(instanceID) {
		return nil, fmt.Errorf("instance %s: %w", instanceID, tenant.ErrNotFound)
	}
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM user_mcp_server_instances WHERE id = $1)`, instanceID).Scan(&exists); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	if !exists {
		return nil, fmt.Errorf("instance %s: %w", instanceID, tenant.ErrNotFound)
	}
	rows, err := db.Pool.Query(ctx, `
SELECT `+group+`, sum(request_count), sum(error_count),
       sum(total_duration_ms)::float8 / greatest(sum(request_count), 1), max(max_duration_ms),
       sum(input_bytes), sum(output_bytes)
FROM mcp_server_request_hourly
WHERE mcp_server_instance_id = $1 AND hour >= date_trunc('hour', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY `+group+`
ORDER BY `+order, instanceID, since)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (UsageRow, error) {
		var u UsageRow
		var err error
		if by == UsageByHour {
			var h time.Time
			err = r.Scan(&h, &u.Requests, &u.Errors, &u.AvgDurationMs, &u.MaxDurationMs, &u.InputBytes, &u.OutputBytes)
			u.Hour = &h
		} else {
			err = r.Scan(&u.Tool, &u.Method, &u.Requests, &u.Errors, &u.AvgDurationMs, &u.MaxDurationMs, &u.InputBytes, &u.OutputBytes)
		}
		return u, err
	})
}
