package proxy_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/functions/proxy"
	"mcpproxy.dev/mcpproxy/internal/demo"
	"mcpproxy.dev/mcpproxy/internal/testenv"
)

// errCode is the JSON-RPC error code err carries, 0 if none.
func errCode(err error) int64 {
	var jerr *jsonrpc.Error
	if errors.As(err, &jerr) {
		return jerr.Code
	}
	return 0
}

func promptNames(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	res, err := s.ListPrompts(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range res.Prompts {
		names = append(names, p.Name)
	}
	return names
}

// readText reads a resource and returns its first contents' text.
func readText(t *testing.T, s *mcp.ClientSession, uri string) string {
	t.Helper()
	res, err := s.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: uri})
	if err != nil {
		t.Fatalf("read %s: %v", uri, err)
	}
	if len(res.Contents) != 1 {
		t.Fatalf("read %s: %d contents", uri, len(res.Contents))
	}
	return res.Contents[0].Text
}

// TestAggregatedResourcesPrompts: on /mcp, two copies of one server
// (alpha and beta) offer their prompts prefixed and their resources once,
// read from the first in the instance's order; prompts, completions and
// templates route by prefix and template.
func TestAggregatedResourcesPrompts(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, version string) {
		e := newEnv(t, proxy.Options{})
		s := e.Client(t, "/mcp", e.Key, version, nil)
		ctx := context.Background()

		caps := s.InitializeResult().Capabilities
		if caps.Resources == nil || caps.Prompts == nil || caps.Completions == nil || caps.Logging == nil || caps.Tools == nil {
			t.Errorf("capabilities = %+v; want tools, resources, prompts, completions and logging", caps)
		}
		if caps.Resources != nil && (caps.Resources.Subscribe || caps.Resources.ListChanged) {
			t.Errorf("resources capability %+v promises notifications the proxy cannot send", caps.Resources)
		}

		if got, want := promptNames(t, s), []string{"alpha__greet", "beta__greet"}; !slices.Equal(got, want) {
			t.Errorf("prompts = %v; want %v", got, want)
		}
		prompt, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: "beta__greet", Arguments: map[string]string{"name": "Bob"}})
		if err != nil {
			t.Fatal(err)
		}
		if prompt.Description != "A greeting from beta" || prompt.Messages[0].Content.(*mcp.TextContent).Text != "Hello, Bob!" {
			t.Errorf("beta__greet = %q, %+v", prompt.Description, prompt.Messages[0].Content)
		}
		for _, name := range []string{"gamma__greet", "greet", "alpha__"} {
			if _, err := s.GetPrompt(ctx, &mcp.GetPromptParams{Name: name}); errCode(err) != jsonrpc.CodeInvalidParams {
				t.Errorf("get prompt %q: err = %v; want -32602", name, err)
			}
		}

		resources, err := s.ListResources(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(resources.Resources) != 1 || resources.Resources[0].URI != demo.ReadmeURI {
			t.Errorf("resources = %+v; want %s once", resources.Resources, demo.ReadmeURI)
		}
		templates, err := s.ListResourceTemplates(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(templates.ResourceTemplates) != 1 || templates.ResourceTemplates[0].URITemplate != demo.NotesTemplate {
			t.Errorf("templates = %+v; want %s once", templates.ResourceTemplates, demo.NotesTemplate)
		}
		if got := readText(t, s, demo.ReadmeURI); got != "This is alpha." {
			t.Errorf("readme = %q; want alpha's (first in order)", got)
		}
		if got := readText(t, s, "demo://notes/x"); got != "Note x of alpha." {
			t.Errorf("note = %q; want alpha's", got)
		}
		if _, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "other://nothing"}); errCode(err) != -32002 {
			t.Errorf("read unknown URI: err = %v; want -32002", err)
		}

		completion, err := s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "beta__greet"},
			Argument: mcp.CompleteParamsArgument{Name: "name", Value: "b"}})
		if err != nil || !slices.Equal(completion.Completion.Values, []string{"bob"}) {
			t.Errorf("complete prompt = %+v, %v; want [bob]", completion, err)
		}
		completion, err = s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: demo.NotesTemplate},
			Argument: mcp.CompleteParamsArgument{Name: "name", Value: "c"}})
		if err != nil || !slices.Equal(completion.Completion.Values, []string{"carol"}) {
			t.Errorf("complete template = %+v, %v; want [carol]", completion, err)
		}
		_, err = s.Complete(ctx, &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: "other://{x}"},
			Argument: mcp.CompleteParamsArgument{Name: "x", Value: ""}})
		if errCode(err) != jsonrpc.CodeInvalidParams {
			t.Errorf("complete unknown template: err = %v; want -32602", err)
		}
		// 2026-07-28 carries the level in each request's _meta instead.
		if version < "2026-07-28" {
			if err := s.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
				t.Errorf("setLevel: %v", err)
			}
		}

		// With alpha down, a new process lists beta's prompts alone and
		// reads what both offer from beta.
		e.Demo["alpha"].Stop()
		s2 := e.Process(t, testenv.Options{}).Client(t, "/mcp", e.Key, version, nil)
		if got, want := promptNames(t, s2), []string{"beta__greet"}; !slices.Equal(got, want) {
			t.Errorf("prompts with alpha down = %v; want %v", got, want)
		}
		if got := readText(t, s2, demo.ReadmeURI); got != "This is beta." {
			t.Errorf("readme with alpha down = %q; want beta's", got)
		}
	})
}
