package proxy

import "strings"

// route is what a request path names: the key's own instance (/mcp), an
// instance that must be the key's (/mcp/{instanceId}), or one upstream of
// it with unprefixed tool names (/mcp/{instanceId}/{namespace}).
type route struct {
	instanceID string // "" for the key's instance
	namespace  string // "" for all upstreams
}

// parseRoute reads a path below the function URL. A trailing slash is
// tolerated; anything else is not a route.
func parseRoute(path string) (route, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSuffix(path, "/"), "/mcp")
	if !ok {
		return route{}, false
	}
	if rest == "" {
		return route{}, true
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	if rest[0] != '/' || len(parts) > 2 || parts[0] == "" {
		return route{}, false
	}
	r := route{instanceID: parts[0]}
	if len(parts) == 2 {
		if parts[1] == "" {
			return route{}, false
		}
		r.namespace = parts[1]
	}
	return r, true
}
