// Command demo-upstream serves the demo MCP server (internal/demo) over
// Streamable HTTP, SSE or stdio, as an upstream for the proxy in demos,
// tests and benchmarks.
//
//	demo-upstream --transport http|sse|stdio [--addr HOST:PORT] [--stateless] [--name NAME]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"mcpproxy.dev/mcpproxy/internal/demo"
)

func main() {
	transport := flag.String("transport", "http", "http (Streamable HTTP), sse (2024-11-05 HTTP+SSE) or stdio")
	addr := flag.String("addr", "127.0.0.1:8090", "listen address for http and sse")
	stateless := flag.Bool("stateless", false, "http: serve without sessions, one server per request")
	jsonResponse := flag.Bool("json", false, "http: answer application/json instead of an SSE stream")
	name := flag.String("name", demo.Name, "server implementation name")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	server := demo.NewServer(*name)

	var handler http.Handler
	switch *transport {
	case "stdio":
		// Logs go to stderr: stdout carries the protocol.
		fmt.Fprintf(os.Stderr, "demo-upstream: %s on stdio, pid %d\n", *name, os.Getpid())
		if err := server.Run(ctx, &mcp.StdioTransport{}); err != nil && !errors.Is(err, context.Canceled) {
			log.Fatal(err)
		}
		return
	case "http":
		handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
			&mcp.StreamableHTTPOptions{Stateless: *stateless, JSONResponse: *jsonResponse})
	case "sse":
		handler = mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil)
	default:
		fmt.Fprintf(os.Stderr, "demo-upstream: unknown transport %q (want http, sse or stdio)\n", *transport)
		os.Exit(2)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	path := map[string]string{"http": "/mcp", "sse": "/sse"}[*transport]
	fmt.Printf("demo-upstream: %s on http://%s%s\n", *transport, ln.Addr(), path)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
