package upstream

import (
	"context"
	"iter"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// An upstream's lists are hostile input like any of its answers: an entry
// may be null, or lack the one field that names it. Such an entry is
// dropped where a list leaves the SDK, so that no code after it has to
// guard every dereference (a null resource template once took a whole
// process down) and no client is handed an entry it cannot use.

func namedTool(t *mcp.Tool) bool                 { return t.Name != "" }
func namedPrompt(p *mcp.Prompt) bool             { return p.Name != "" }
func namedResource(r *mcp.Resource) bool         { return r.URI != "" }
func namedTemplate(t *mcp.ResourceTemplate) bool { return t.URITemplate != "" }

// ValidEntries drops the entries of a list result that are null or
// unnamed: tools and prompts without a name, resources without a URI,
// templates without a URI template. Other results are left as they are.
func ValidEntries(result any) {
	switch r := result.(type) {
	case *mcp.ListToolsResult:
		if r != nil {
			r.Tools = valid(r.Tools, namedTool)
		}
	case *mcp.ListPromptsResult:
		if r != nil {
			r.Prompts = valid(r.Prompts, namedPrompt)
		}
	case *mcp.ListResourcesResult:
		if r != nil {
			r.Resources = valid(r.Resources, namedResource)
		}
	case *mcp.ListResourceTemplatesResult:
		if r != nil {
			r.ResourceTemplates = valid(r.ResourceTemplates, namedTemplate)
		}
	}
}

// valid keeps the entries that are not nil and pass ok, in place.
func valid[T any](items []*T, ok func(*T) bool) []*T {
	out := items[:0]
	for _, it := range items {
		if it != nil && ok(it) {
			out = append(out, it)
		}
	}
	return out
}

// collect follows a list's pagination and keeps its valid entries.
func collect[T any](pages iter.Seq2[*T, error], ok func(*T) bool) ([]*T, error) {
	var out []*T
	for it, err := range pages {
		if err != nil {
			return nil, err
		}
		if it != nil && ok(it) {
			out = append(out, it)
		}
	}
	return out, nil
}

// ListTools asks a session for all its valid tools.
func ListTools(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Tool, error) {
	return collect(s.Tools(ctx, nil), namedTool)
}

// ListPrompts asks a session for all its valid prompts.
func ListPrompts(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Prompt, error) {
	return collect(s.Prompts(ctx, nil), namedPrompt)
}

// ListResources asks a session for all its valid resources.
func ListResources(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Resource, error) {
	return collect(s.Resources(ctx, nil), namedResource)
}

// ListResourceTemplates asks a session for all its valid resource
// templates.
func ListResourceTemplates(ctx context.Context, s *mcp.ClientSession) ([]*mcp.ResourceTemplate, error) {
	return collect(s.ResourceTemplates(ctx, nil), namedTemplate)
}
