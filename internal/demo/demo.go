// Package demo is a small MCP server built with the official SDK, with tools
// that exercise a proxy: echo, add, a slow tool that reports progress, a
// failing tool, a large result, an image, log messages, and the serving
// process's ID and DEMO_* environment; a resource, a resource template, a
// prompt and completions for both. cmd/demo-upstream serves it over
// Streamable HTTP, SSE or stdio; tests run it in process.
package demo

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Name is the server's implementation name.
const Name = "demo-upstream"

// ToolNames are the tools NewServer registers, sorted.
var ToolNames = []string{"add", "echo", "env", "fail", "image", "large", "log", "pid", "slow"}

// The resource, template and prompt NewServer registers.
const (
	ReadmeURI     = "demo://readme"
	NotesTemplate = "demo://notes/{name}"
	GreetPrompt   = "greet"
)

// Names are what the completions of the greet prompt's and the notes
// template's name argument offer.
var Names = []string{"alice", "bob", "carol"}

type echoIn struct {
	Text string `json:"text" jsonschema:"the text to send back"`
}
type echoOut struct {
	Text string `json:"text"`
}

type addIn struct {
	A float64 `json:"a" jsonschema:"first addend"`
	B float64 `json:"b" jsonschema:"second addend"`
}
type addOut struct {
	Sum float64 `json:"sum"`
}

type slowIn struct {
	Milliseconds int `json:"ms" jsonschema:"how long to take, in milliseconds (at most 600000)"`
	Steps        int `json:"steps,omitempty" jsonschema:"progress notifications to send along the way (default 1)"`
}

type failIn struct {
	Message string `json:"message,omitempty" jsonschema:"the error message to return"`
}

type largeIn struct {
	KiB int `json:"kib" jsonschema:"size of the text result in KiB (at most 65536)"`
}

type emptyIn struct{}

type logIn struct {
	Level string `json:"level" jsonschema:"the level of the message: debug, info, notice, warning, error, ..."`
	Text  string `json:"text" jsonschema:"the message"`
}

type envIn struct {
	Name string `json:"name" jsonschema:"a variable whose name starts with DEMO_"`
}

// NewServer returns the demo MCP server. name is its implementation name
// ("" for Name), so tests can tell two instances apart.
func NewServer(name string) *mcp.Server {
	if name == "" {
		name = Name
	}
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1.0.0"}, &mcp.ServerOptions{
		Capabilities:      &mcp.ServerCapabilities{Logging: &mcp.LoggingCapabilities{}},
		CompletionHandler: complete,
	})
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Returns the text it is given."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, echoOut, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, echoOut(in), nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Adds two numbers."},
		func(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, addOut, error) {
			return nil, addOut{Sum: in.A + in.B}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "slow", Description: "Waits the given time, reporting progress; stops when cancelled."}, slow)
	mcp.AddTool(s, &mcp.Tool{Name: "fail", Description: "Always fails, as a tool error (isError)."},
		func(_ context.Context, _ *mcp.CallToolRequest, in failIn) (*mcp.CallToolResult, any, error) {
			msg := in.Message
			if msg == "" {
				msg = "the fail tool failed, as asked"
			}
			return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "large", Description: "Returns a text result of the given size."},
		func(_ context.Context, _ *mcp.CallToolRequest, in largeIn) (*mcp.CallToolResult, any, error) {
			if in.KiB < 0 || in.KiB > 65536 {
				return nil, nil, fmt.Errorf("kib must be between 0 and 65536")
			}
			text := strings.Repeat("0123456789abcdef", in.KiB*64)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "image", Description: "Returns a small PNG image."},
		func(context.Context, *mcp.CallToolRequest, emptyIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.ImageContent{Data: PNG, MIMEType: "image/png"}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "log", Description: "Sends a log message at the given level (if the client's level lets it through)."},
		func(ctx context.Context, req *mcp.CallToolRequest, in logIn) (*mcp.CallToolResult, any, error) {
			err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: mcp.LoggingLevel(in.Level), Logger: name, Data: in.Text})
			if err != nil {
				return nil, nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "logged"}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "pid", Description: "Returns the ID of the process serving the call."},
		func(context.Context, *mcp.CallToolRequest, emptyIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint(os.Getpid())}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "env", Description: "Returns the value of an environment variable named DEMO_*."},
		func(_ context.Context, _ *mcp.CallToolRequest, in envIn) (*mcp.CallToolResult, any, error) {
			if !strings.HasPrefix(in.Name, "DEMO_") {
				return nil, nil, fmt.Errorf("only variables named DEMO_* can be read")
			}
			v, ok := os.LookupEnv(in.Name)
			if !ok {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: in.Name + " is not set"}}}, nil, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: v}}}, nil, nil
		})
	s.AddResource(&mcp.Resource{URI: ReadmeURI, Name: "readme", Description: "What this server is.", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "This is " + name + "."}}}, nil
		})
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: NotesTemplate, Name: "notes", Description: "A note by name.", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			note := strings.TrimPrefix(req.Params.URI, "demo://notes/")
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "Note " + note + " of " + name + "."}}}, nil
		})
	s.AddPrompt(&mcp.Prompt{Name: GreetPrompt, Description: "Greets someone.", Arguments: []*mcp.PromptArgument{{Name: "name", Required: true}}},
		func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Description: "A greeting from " + name, Messages: []*mcp.PromptMessage{
				{Role: "user", Content: &mcp.TextContent{Text: "Hello, " + req.Params.Arguments["name"] + "!"}},
			}}, nil
		})
	return s
}

// complete offers the Names that start with what was typed, for the
// name argument of the greet prompt and of the notes template.
func complete(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	ref := req.Params.Ref
	known := ref.Type == "ref/prompt" && ref.Name == GreetPrompt || ref.Type == "ref/resource" && ref.URI == NotesTemplate
	if !known || req.Params.Argument.Name != "name" {
		return nil, fmt.Errorf("nothing to complete for %s %s%s", ref.Type, ref.Name, ref.URI)
	}
	values := []string{}
	for _, n := range Names {
		if strings.HasPrefix(n, req.Params.Argument.Value) {
			values = append(values, n)
		}
	}
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: values, Total: len(values)}}, nil
}

func slow(ctx context.Context, req *mcp.CallToolRequest, in slowIn) (*mcp.CallToolResult, any, error) {
	if in.Milliseconds < 0 || in.Milliseconds > 600000 {
		return nil, nil, fmt.Errorf("ms must be between 0 and 600000")
	}
	steps := max(in.Steps, 1)
	token := req.Params.GetProgressToken()
	step := time.Duration(in.Milliseconds) * time.Millisecond / time.Duration(steps)
	for i := 1; i <= steps; i++ {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(step):
		}
		if token != nil {
			req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: token, Progress: float64(i), Total: float64(steps),
				Message: fmt.Sprintf("step %d of %d", i, steps),
			})
		}
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("waited %d ms", in.Milliseconds)}}}, nil, nil
}

// PNG is the image the image tool returns: a 16×16 gradient.
var PNG = func() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			img.Set(x, y, color.RGBA{R: uint8(x * 16), G: uint8(y * 16), B: 128, A: 255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}()
