package upstream

import (
	"context"
	"fmt"

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

// maxListPages and maxListEntries bound what the proxy follows of an
// upstream's list: ending the pagination is the upstream's to do, and one
// that never does (the same cursor again, or empty pages without end)
// would hold the loader and grow its list without bound.
const (
	maxListPages   = 100
	maxListEntries = 10000
)

// collect follows a list's pagination, page by page with list, and keeps
// its valid entries, within maxListPages and maxListEntries.
func collect[T any](ctx context.Context, list func(ctx context.Context, cursor string) ([]*T, string, error), ok func(*T) bool) ([]*T, error) {
	var out []*T
	cursor := ""
	for range maxListPages {
		items, next, err := list(ctx, cursor)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if it != nil && ok(it) {
				out = append(out, it)
			}
		}
		if len(out) > maxListEntries {
			return nil, fmt.Errorf("the upstream lists more than %d entries", maxListEntries)
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
	return nil, fmt.Errorf("the upstream's list goes on past %d pages", maxListPages)
}

// ListTools asks a session for all its valid tools.
func ListTools(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Tool, error) {
	return collect(ctx, func(ctx context.Context, cursor string) ([]*mcp.Tool, string, error) {
		r, err := s.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return r.Tools, r.NextCursor, nil
	}, namedTool)
}

// ListPrompts asks a session for all its valid prompts.
func ListPrompts(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Prompt, error) {
	return collect(ctx, func(ctx context.Context, cursor string) ([]*mcp.Prompt, string, error) {
		r, err := s.ListPrompts(ctx, &mcp.ListPromptsParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return r.Prompts, r.NextCursor, nil
	}, namedPrompt)
}

// ListResources asks a session for all its valid resources.
func ListResources(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Resource, error) {
	return collect(ctx, func(ctx context.Context, cursor string) ([]*mcp.Resource, string, error) {
		r, err := s.ListResources(ctx, &mcp.ListResourcesParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return r.Resources, r.NextCursor, nil
	}, namedResource)
}

// ListResourceTemplates asks a session for all its valid resource
// templates.
func ListResourceTemplates(ctx context.Context, s *mcp.ClientSession) ([]*mcp.ResourceTemplate, error) {
	return collect(ctx, func(ctx context.Context, cursor string) ([]*mcp.ResourceTemplate, string, error) {
		r, err := s.ListResourceTemplates(ctx, &mcp.ListResourceTemplatesParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return r.ResourceTemplates, r.NextCursor, nil
	}, namedTemplate)
}
