// Package demo is a small MCP server built with the official SDK, with tools
// that exercise a proxy: echo, add, a slow tool that reports progress, a
// failing tool, a large result and an image. cmd/demo-upstream serves it
// over Streamable HTTP, SSE or stdio; tests run it in process.
package demo

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Name is the server's implementation name.
const Name = "demo-upstream"

// ToolNames are the tools NewServer registers, sorted.
var ToolNames = []string{"add", "echo", "fail", "image", "large", "slow"}

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

// NewServer returns the demo MCP server. name is its implementation name
// ("" for Name), so tests can tell two instances apart.
func NewServer(name string) *mcp.Server {
	if name == "" {
		name = Name
	}
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1.0.0"}, nil)
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
	return s
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
