// Package mcpproxy is the module root that the Cloud Functions Go buildpack
// imports. It only links in the three functions, each of which registers
// its entry point (Proxy, Health, FlushLogs) in init; every deploy uses this
// same source with its own --entry-point.
package mcpproxy

import (
	_ "mcpproxy.dev/mcpproxy/functions/flushlogs"
	_ "mcpproxy.dev/mcpproxy/functions/health"
	_ "mcpproxy.dev/mcpproxy/functions/proxy"
)
