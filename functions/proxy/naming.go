package proxy

import (
	"fmt"
	"strings"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

// Tool names exposed by the proxy are "{namespace}__{tool}". Namespaces
// hold only [a-z0-9-], so the first "__" always ends the namespace.
const separator = "__"

// maxToolName is the longest tool name the 2025-11-25 specification
// allows; names are 1 to 128 characters of [A-Za-z0-9_.-].
const maxToolName = 128

func validToolChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// sanitizeToolName replaces characters outside [A-Za-z0-9_.-] with '_'
// and cuts the name to max bytes.
func sanitizeToolName(name string, max int) string {
	b := []byte(name)
	for i, c := range b {
		if !validToolChar(c) {
			b[i] = '_'
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}

// splitToolName splits an exposed name into namespace and the rest.
func splitToolName(name string) (namespace, tool string, ok bool) {
	namespace, tool, ok = strings.Cut(name, separator)
	return namespace, tool, ok && namespace != "" && tool != ""
}

// namespaces gives every upstream of an instance a distinct namespace
// (tenant.Namespace of its server name, as mcpadmin shows it), in the
// instance's order (server name, then config ID): the first upstream named
// "GitHub" gets "github", a second one "github-2". Stored names are never
// empty nor longer than tenant.MaxNamespace; the guards keep a bad row
// from producing an unroutable name.
func namespaces(ups []tenant.Upstream) []string {
	out := make([]string, len(ups))
	taken := map[string]bool{}
	for i, up := range ups {
		base := tenant.Namespace(up.Name)
		if base == "" {
			base = "server"
		}
		if len(base) > tenant.MaxNamespace {
			base = base[:tenant.MaxNamespace]
		}
		ns := base
		for n := 2; taken[ns]; n++ {
			ns = fmt.Sprintf("%s-%d", base, n)
		}
		taken[ns] = true
		out[i] = ns
	}
	return out
}

// exposedNames names the tools of one upstream as the proxy lists them:
// prefix+tool when that is a valid name, else a sanitized, shortened form
// that avoids every name already taken ("_2", "_3"...). Valid names are
// placed first, so a tool whose name is valid is always exposed as exactly
// prefix+tool and can be called without listing first. The result is
// deterministic for a given order of tools. prefix is "" on a
// single-upstream route.
func exposedNames(prefix string, tools []string) []string {
	out := make([]string, len(tools))
	taken := map[string]bool{}
	for i, t := range tools {
		if name := prefix + t; t != "" && validToolName(name) && !taken[name] {
			out[i] = name
			taken[name] = true
		}
	}
	for i, t := range tools {
		if out[i] != "" {
			continue
		}
		if t == "" {
			t = "tool"
		}
		name := sanitizeToolName(prefix+t, maxToolName)
		base := name
		for n := 2; taken[name]; n++ {
			suffix := fmt.Sprintf("_%d", n)
			name = base[:min(len(base), maxToolName-len(suffix))] + suffix
		}
		taken[name] = true
		out[i] = name
	}
	return out
}

// validToolName reports whether name is 1 to 128 characters of
// [A-Za-z0-9_.-].
func validToolName(name string) bool {
	if name == "" || len(name) > maxToolName {
		return false
	}
	for i := range len(name) {
		if !validToolChar(name[i]) {
			return false
		}
	}
	return true
}
