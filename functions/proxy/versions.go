package proxy

import (
	"net/http"
	"slices"
	"strings"
)

// The protocol versions the proxy speaks, newest first.
const (
	version20260728 = "2026-07-28"
	version20251125 = "2025-11-25"
	version20250618 = "2025-06-18"
	version20250326 = "2025-03-26"
	latestVersion   = version20260728
)

var supportedVersions = []string{version20260728, version20251125, version20250618, version20250326}

// headerVersion reads MCP-Protocol-Version. A missing header is allowed
// (initialize carries none, and 2025-03-26 clients never send it). An
// unsupported older version is refused with 400 here; one that sorts at or
// after 2026-07-28 is refused per request with the structured -32022 error
// of that protocol.
func headerVersion(r *http.Request) (string, *rpcError) {
	v := r.Header.Get("MCP-Protocol-Version")
	if v == "" || slices.Contains(supportedVersions, v) || v >= version20260728 {
		return v, nil
	}
	return "", newError(http.StatusBadRequest, codeInvalidRequest,
		"unsupported MCP-Protocol-Version "+v+" (supported: "+strings.Join(supportedVersions, ", ")+")")
}

// negotiate answers a client's requested version: the same when the proxy
// speaks it, else the proxy's latest (the client then decides whether it
// can go on).
func negotiate(requested string) string {
	if slices.Contains(supportedVersions, requested) {
		return requested
	}
	return latestVersion
}
