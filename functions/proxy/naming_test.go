package proxy

import (
	"slices"
	"strings"
	"testing"

	"mcpproxy.dev/mcpproxy/shared/tenant"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		path string
		want route
		ok   bool
	}{
		{"/mcp", route{}, true},
		{"/mcp/", route{}, true},
		{"/mcp/abc", route{instanceID: "abc"}, true},
		{"/mcp/abc/github", route{instanceID: "abc", namespace: "github"}, true},
		{"/mcp/abc/github/", route{instanceID: "abc", namespace: "github"}, true},
		{"/mcpx", route{}, false},
		{"/", route{}, false},
		{"/mcp//github", route{}, false},
		{"/mcp/a/b/c", route{}, false},
		{"/other/mcp", route{}, false},
	}
	for _, tt := range tests {
		got, ok := parseRoute(tt.path)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNamespaces(t *testing.T) {
	ups := []tenant.Upstream{{Name: "GitHub"}, {Name: "github"}, {Name: "Git Hub!"}, {Name: "***"}, {Name: strings.Repeat("x", 80)}}
	for i, up := range ups[:4] {
		if got := namespaces([]tenant.Upstream{up})[0]; got != tenant.Namespace(up.Name) {
			t.Errorf("upstream %d: proxy namespace %q differs from tenant.Namespace %q", i, got, tenant.Namespace(up.Name))
		}
	}
	got := namespaces(ups)
	want := []string{"github", "github-2", "git-hub-", "---", strings.Repeat("x", tenant.MaxNamespace)}
	if !slices.Equal(got, want) {
		t.Errorf("namespaces = %q; want %q", got, want)
	}
}

func TestExposedNames(t *testing.T) {
	long := strings.Repeat("t", 200)
	got := exposedNames("ns__", []string{"search", "do/thing", "do_thing", long, long + "x"})
	// do_thing keeps its exact name although do/thing comes first.
	want := []string{"ns__search", "ns__do_thing_2", "ns__do_thing", ("ns__" + long)[:128], ("ns__" + long)[:126] + "_2"}
	if !slices.Equal(got, want) {
		t.Errorf("exposedNames = %q; want %q", got, want)
	}
	for _, n := range got {
		if len(n) < 1 || len(n) > maxToolName {
			t.Errorf("name %q has length %d", n, len(n))
		}
		for i := range len(n) {
			if !validToolChar(n[i]) {
				t.Errorf("name %q has invalid character %q", n, n[i])
			}
		}
	}
	if ns, tool, ok := splitToolName("git-hub__create__issue"); !ok || ns != "git-hub" || tool != "create__issue" {
		t.Errorf("split = %q %q %v", ns, tool, ok)
	}
	for _, bad := range []string{"nosep", "__tool", "ns__", ""} {
		if _, _, ok := splitToolName(bad); ok {
			t.Errorf("splitToolName(%q) accepted", bad)
		}
	}
}
