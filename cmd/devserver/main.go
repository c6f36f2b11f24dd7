// Command devserver runs the three functions with the Functions Framework
// on one port, at the paths they have when deployed: the proxy's /mcp
// routes, /health and /flushlogs. It reads the same environment as the
// deployed functions and seeds nothing.
//
//	HOST=127.0.0.1 PORT=8080 devserver
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	"mcpproxy.dev/mcpproxy/functions/flushlogs"
	"mcpproxy.dev/mcpproxy/functions/health"
	"mcpproxy.dev/mcpproxy/functions/proxy"
)

func main() {
	ctx := context.Background()
	routes := []struct {
		path string
		fn   func(w http.ResponseWriter, r *http.Request)
	}{
		{"/mcp", proxy.Proxy},
		{"/mcp/", proxy.Proxy},
		{"/health", health.Health},
		{"/flushlogs", flushlogs.FlushLogs},
	}
	for _, r := range routes {
		if err := funcframework.RegisterHTTPFunctionContext(ctx, r.path, r.fn); err != nil {
			log.Fatalf("register %s: %v", r.path, err)
		}
	}
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		// A mux of its own: the profiler never shows on the functions' port.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { log.Println("devserver: pprof:", http.ListenAndServe(addr, mux)) }()
	}
	host, port := getenv("HOST", "127.0.0.1"), getenv("PORT", "8080")
	fmt.Fprintf(os.Stderr, "devserver: listening on http://%s:%s (/mcp, /health, /flushlogs)\n", host, port)
	if err := funcframework.StartHostPort(host, port); err != nil {
		log.Fatal(err)
	}
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
