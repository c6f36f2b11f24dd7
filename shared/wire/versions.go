package wire

// The MCP protocol versions the project speaks, newest first. Each is
// named here once.
const (
	// V20260728 is the first version without sessions: every request
	// carries its version and the client's capabilities in params._meta,
	// and a closed connection cancels it.
	V20260728 = "2026-07-28"
	V20251125 = "2025-11-25"
	V20250618 = "2025-06-18"
	// V20250326 is the oldest, and the only one with JSON-RPC batches.
	V20250326 = "2025-03-26"
)

// Versions are the protocol versions the project speaks, newest first.
var Versions = []string{V20260728, V20251125, V20250618, V20250326}

// Stateless reports whether version v has no sessions: 2026-07-28 or
// later (dates sort as strings).
func Stateless(v string) bool { return v >= V20260728 }
